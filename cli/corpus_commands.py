"""Commands on the corpus: ingest, status, synth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemstore.enums import IngestFormat

from .common import DbOption, app, open_store, user_errors
from .progress import progress_reporter
from .render import Format, render

corpus_app = typer.Typer(help="Corpora the store has ingested.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


@app.command()
@user_errors
def ingest(
    path: Annotated[Path, typer.Argument(help="Corpus directory (MedleyDB layout or session folders).")],
    format: Annotated[IngestFormat, typer.Option("--format", help="Corpus layout.")] = IngestFormat.MEDLEYDB,
    metadata: Annotated[
        Path | None,
        typer.Option(
            "--metadata",
            help="Directory of `<Artist>_<Title>_METADATA.yaml` files, when they live apart "
            "from the audio (MedleyDB ships them so).",
        ),
    ] = None,
    metadata_only: Annotated[
        bool, typer.Option("--metadata-only", help="Record what the metadata says without reading audio.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Ingest a multitrack corpus, incrementally: new multitracks are added, unchanged ones are
    skipped, changed files mark what was derived from them stale, missing files are reported.

    Layouts: `medleydb` (`<Artist>_<Title>/` with its METADATA.yaml, stem and raw folders and
    mix) and `folder` (`<session>/stems/<instrument>/<file>.wav`, `<session>/raw/<instrument>/`,
    optional `session.yaml` saying which raws made which stem).

    Exits 1 after the summary if a metadata file or multitrack was rejected or audio is
    unreadable; everything else was ingested.

    Examples: `stemstore ingest ~/MedleyDB/Audio --metadata ~/medleydb/metadata`,
    `stemstore ingest ~/medleydb/metadata --metadata-only`,
    `stemstore ingest ~/sessions --format folder`
    """
    from stemstore.corpus.ingest import ingest as run_ingest

    with open_store(db) as store, progress_reporter("ingest") as progress:
        summary = run_ingest(
            store,
            path,
            format=format.value,
            metadata_dir=metadata,
            metadata_only=metadata_only,
            progress=progress,
        )
    for line in summary.details():
        typer.echo(line, err=True)
    typer.echo(summary.describe())
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def status(
    db: DbOption = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    problems: Annotated[int, typer.Option(help="List at most this many missing/unreadable files.")] = 20,
) -> None:
    """Show the corpus: counts per instrument and per group, missing and unreadable audio,
    stale items, and pending work (stems to segment, segments to extract).

    Example: `stemstore status`, or `stemstore status --format markdown --problems 100`
    """
    from stemstore.reports import status as run_status

    with open_store(db, writer=False) as store:
        frames = run_status(store)
    listed = frames["problems"]
    titles = {
        "instruments": "per instrument",
        "groups": "per group",
        "audio": "audio files",
        "problems": f"missing or unreadable files (first {min(problems, len(listed))} of {len(listed)})",
        "stale": "stale",
        "pending": "pending work",
        "runs": "unfinished runs (interrupted: no live process holds them)",
    }
    for key, title in titles.items():
        frame = frames[key].head(problems) if key == "problems" else frames[key]
        if key in ("problems", "runs") and frame.empty:
            continue
        render(frame, fmt, title=title)


@app.command()
@user_errors
def synth(
    directory: Annotated[Path, typer.Argument(help="Where to write the corpus (created if needed).")],
    multitracks: Annotated[
        int, typer.Option("--multitracks", "-n", min=1, help="How many multitracks.")
    ] = 20,
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of each multitrack in seconds.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
) -> None:
    """Write a synthetic MedleyDB-layout corpus with known mixing (METADATA.yaml, WAV files
    and each stem's effect chain in `<name>_MIXING.json`), for tests and trials.

    Example: `stemstore synth /tmp/corpus --multitracks 5 --seconds 10 && stemstore ingest /tmp/corpus`
    """
    from stemstore.errors import StemstoreError
    from stemstore.synth.corpus import synthesize_corpus

    if directory.exists() and not directory.is_dir():
        raise StemstoreError(f"{directory} exists and is not a directory")
    with progress_reporter("synth") as progress:
        try:
            made = synthesize_corpus(
                directory, n_multitracks=multitracks, seconds=seconds, seed=seed, progress=progress
            )
        except OSError as exc:
            raise StemstoreError(f"cannot write the corpus in {directory}: {exc.strerror or exc}") from exc
    typer.echo(
        f"wrote {len(made.multitracks)} multitracks ({made.n_stems} stems, {made.n_raws} raw "
        f"tracks, {seconds:g} s each, seed {seed}) to {directory} in {made.elapsed_s:.1f} s"
    )


@corpus_app.command("relocate")
@user_errors
def relocate(
    old: Annotated[str, typer.Argument(help="Where the corpus was ingested from (it may be gone).")],
    new: Annotated[Path, typer.Argument(help="Where the same corpus is now.")],
    db: DbOption = None,
) -> None:
    """Record that a corpus moved: NEW must hold the same files (every stored file is looked
    for there and a few are hashed). One transaction; nothing derived becomes stale.

    Re-ingesting a moved MedleyDB corpus from its new place relocates it too.

    Example: `stemstore corpus relocate /old/disk/MedleyDB /new/disk/MedleyDB`
    """
    from stemstore.corpus.relocate import relocate as run_relocate

    with open_store(db) as store:
        typer.echo(run_relocate(store, old, new).describe())
