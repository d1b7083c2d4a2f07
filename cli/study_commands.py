"""The whole study in one command: `study` for one group, `demo` for the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemstore.enums import RegressionPreset, SelectionPreset
from stemstore.errors import StemstoreError
from stemstore.store.views import report_title

from .common import DbOption, GroupName, app, open_store, user_errors
from .progress import progress_reporter
from .render import Format, render


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
@user_errors
def study(
    group: GroupName,
    select_preset: Annotated[
        SelectionPreset, typer.Option("--select-preset", help="Selection preset: fast or paper.")
    ] = SelectionPreset.FAST,
    preset: Annotated[
        RegressionPreset, typer.Option("--preset", help="Regression preset: tuned or paper.")
    ] = RegressionPreset.TUNED,
    seed: Annotated[int, typer.Option(help="Random seed of selection and regression.")] = 0,
    workers: Annotated[int, typer.Option(help="Local processes for feature extraction.")] = 1,
    window: Annotated[float, typer.Option(help="Segment length in seconds.")] = 10.0,
    db: DbOption = None,
) -> None:
    """Run segment → extract → select → regress for one group on the ingested corpus,
    skipping every stage whose results are current, then print Tables 4–7 for it.

    Example: `stemstore groups set my-guitars "acoustic guitar" banjo && stemstore study --group my-guitars`
    """
    from stemstore.reports import report
    from stemstore.study import run_study

    with open_store(db) as store:
        result = run_study(
            store,
            group,
            select_preset=select_preset.value,
            regress_preset=preset.value,
            seed=seed,
            workers=workers,
            window=window,
            say=_say,
            progress_factory=progress_reporter,
        )
        if result.reused:
            _say(f"reused: {', '.join(result.reused)}")
        if result.skipped:
            raise StemstoreError(f"group {group!r} could not be analysed: {result.skipped}")
        for name in ("table4", "table5", "table6", "table7"):
            render(report(store, name, groups=[group]), Format.table, title=report_title(name))


@app.command()
@user_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the corpus, store and figures go.")] = Path(
        "demo-output"
    ),
    multitracks: Annotated[int, typer.Option(help="Synthetic multitracks.")] = 24,
    seconds: Annotated[float, typer.Option(help="Length of each multitrack.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seed of the corpus and of the analyses.")] = 1,
    workers: Annotated[int, typer.Option(help="Local processes for feature extraction.")] = 2,
    window: Annotated[float, typer.Option(help="Segment length in seconds.")] = 10.0,
    preset: Annotated[
        RegressionPreset, typer.Option("--preset", help="Regression preset: paper or tuned.")
    ] = RegressionPreset.PAPER,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            help="Analyse only these groups (repeatable; default: bass, guitar, vocal, keys).",
        ),
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store (default: DIR/stemstore.duckdb).")] = None,
) -> None:
    """The main job: synthesise a corpus, ingest, segment, extract, select (fast preset),
    regress; print Tables 2, 4, 5, 6 and 7 and write Figs. 2, 3 and 4 as PNG files.
    A rerun reuses everything stored.

    Example: `stemstore demo --dir demo-output`
    """
    from stemstore.study import DEFAULT_GROUPS, run_demo

    result = run_demo(
        directory,
        db=db,
        multitracks=multitracks,
        seconds=seconds,
        seed=seed,
        workers=workers,
        window=window,
        regress_preset=preset,
        groups=tuple(group or DEFAULT_GROUPS),
        say=_say,
        progress_factory=progress_reporter,
    )
    for name, table in result.tables.items():
        typer.echo("")
        render(table, Format.table, title=report_title(name))
    typer.echo("")
    typer.echo(f"store: {result.store_url}")
    typer.echo(f"figures ({len(result.figures)}) in {directory / 'figures'}:")
    for path in result.figures:
        typer.echo(f"  {path}")
    typer.echo("")
    typer.echo(f"listen to the pairs and curate the corpus in a browser: {result.serve_command}")
