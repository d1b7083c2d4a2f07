"""Feature selection: `select`, and its figures `plot importance` and `plot oob`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemstore.enums import SelectionPreset

from .common import DbOption, GroupName, app, open_store, plot_app, user_errors

RunOption = Annotated[
    int | None, typer.Option("--run", help="Selection run id (default: the group's latest).")
]
OutputOption = Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")]


@app.command()
@user_errors
def select(
    group: GroupName,
    preset: Annotated[
        SelectionPreset, typer.Option(help="paper (50 forests × 2000 trees) or fast.")
    ] = SelectionPreset.FAST,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same result.")] = 0,
    trees: Annotated[
        int | None, typer.Option(help="Trees per thresholding forest (overrides the preset).")
    ] = None,
    forests: Annotated[int | None, typer.Option(help="Thresholding forests (overrides the preset).")] = None,
    jobs: Annotated[int | None, typer.Option(help="Parallel jobs (-1: all cores).")] = -1,
    max_interp_features: Annotated[
        int | None,
        typer.Option(
            help="Cap on the thresholded features the nested (interpretation) step walks through "
            "(VSURF has none); none by default."
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Grow the forests on the Dask cluster at ADDRESS (e.g. tcp://scheduler:8786) "
            "instead of local cores; same result as a local run for the same seed.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Find the features stem processing changes most consistently (raw vs stem random
    forests; docs/method.md, section 4) and store importances, curves, f_p1, f_p2 and f_pred.

    Example: `stemstore select --group vocal --preset paper --seed 1`, or
    `stemstore select --group vocal --preset paper --dask tcp://10.0.0.5:8786`
    """
    from stemstore.analysis.selection_runs import select as run_select
    from stemstore.analysis.selection_runs import selection_summary

    overrides = {
        k: v
        for k, v in {
            "n_trees": trees,
            "n_forests": forests,
            "max_interp_features": max_interp_features,
        }.items()
        if v is not None
    }
    with open_store(db) as store:
        run_id = run_select(
            store,
            group,
            preset=preset.value,
            seed=seed,
            n_jobs=jobs,
            dask_address=dask,
            progress=lambda msg: typer.echo(msg, err=True),
            **overrides,
        )
        summary = selection_summary(store, run_id)
    typer.echo(summary.describe())


@plot_app.command("importance")
@user_errors
def plot_importance(
    group: GroupName, output: OutputOption, run: RunOption = None, top: int = 50, db: DbOption = None
) -> None:
    """Fig. 2: mean importance of the most important features, with sd.

    Example: `stemstore plot importance --group bass -o fig2-bass.png`
    """
    from stemstore.analysis.selection_runs import importance_figure

    from stemstore.analysis.plots import check_figure_path

    check_figure_path(output)  # before any work: a bad path is one line at once
    with open_store(db, writer=False) as store:
        importance_figure(store, group, output, run_id=run, top=top)
    typer.echo(f"wrote {output}")


@plot_app.command("oob")
@user_errors
def plot_oob(group: GroupName, output: OutputOption, run: RunOption = None, db: DbOption = None) -> None:
    """Fig. 3: OOB error curves of the nested (interpretation) and ascending (prediction) forests.

    Example: `stemstore plot oob --group bass -o fig3-bass.png`
    """
    from stemstore.analysis.selection_runs import oob_figure

    from stemstore.analysis.plots import check_figure_path

    check_figure_path(output)  # before any work: a bad path is one line at once
    with open_store(db, writer=False) as store:
        oob_figure(store, group, output, run_id=run)
    typer.echo(f"wrote {output}")
