"""The whole study for a group, and the demo: every stage in order, skipping what is current.

``run_study`` does segment → extract → select → regress for one group on any ingested
corpus. A stage is skipped when the store already holds a finished, non-stale run with the
same parameters over the same segments; so a rerun reuses everything and only new sessions
cost time. ``run_demo`` adds a synthetic corpus, the ingest, the reports and the figures.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import pandas as pd

from stemstore.curation import excluded_segments
from stemstore.errors import StemstoreError
from stemstore.store.bulk import segment_table
from stemstore.store.connection import Store
from stemstore.enums import Role, RunKind

Say = Callable[[str], None]
DEFAULT_GROUPS = ("bass", "guitar", "vocal", "keys")
#: The study's reports, in the order the paper prints them.
STUDY_TABLES = ("table2", "table4", "table5", "table6", "table7")


def _quiet(_: str) -> None:
    pass


@dataclass
class StudyResult:
    group: str
    selection_run: int | None = None
    regression_run: int | None = None
    reused: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the group could not be analysed


def _current_run(store: Store, kind: str, group: str, params: dict, segment_ids: set[int]) -> int | None:
    """The latest finished, non-stale run of ``kind`` for ``group`` with these parameters
    whose segment snapshot is exactly ``segment_ids``, if any."""
    runs = store.read_sql(
        "SELECT id, params FROM runs WHERE kind = :k AND group_name = :g AND status = 'done' "
        "AND NOT stale ORDER BY id DESC",
        {"k": kind, "g": group},
    )
    for run_id, run_params in zip(runs["id"], runs["params"]):
        stored = json.loads(run_params) if isinstance(run_params, str) else run_params
        if any(stored.get(k) != v for k, v in params.items()):
            continue
        snapshot = store.read_sql("SELECT segment_id FROM run_segments WHERE run_id = :r", {"r": int(run_id)})
        if set(snapshot["segment_id"].astype(int)) == segment_ids:
            return int(run_id)
    return None


def run_study(
    store: Store,
    group: str,
    *,
    select_preset: str = "fast",
    regress_preset: str = "tuned",
    seed: int = 0,
    workers: int = 1,
    window: float = 10.0,
    n_jobs: int | None = -1,
    say: Say = _quiet,
    progress_factory=None,
) -> StudyResult:
    """Run segment → extract → select → regress for ``group``, reusing current results.

    Parameters
    ----------
    store : Store
        The store with the ingested corpus.
    group : str
        The instrument group.
    select_preset : {"fast", "paper"}, default="fast"
        The selection preset.
    regress_preset : {"tuned", "paper"}, default="tuned"
        The regression preset.
    seed : int, default=0
        Seed of selection and regression.
    workers : int, default=1
        Local processes for feature extraction.
    window : float, default=10.0
        Segment length in seconds.
    n_jobs : int or None, default=-1
        Parallel jobs of selection and regression (-1: all cores).
    say : callable, optional
        Receives a line of text for each step.
    progress_factory : callable, optional
        ``progress_factory(label)`` gives a context manager yielding a ``progress(done, total)``
        callback (the CLI's progress bars); None runs silently.

    Returns
    -------
    StudyResult
        The selection and regression runs made or reused, which runs were reused, and, when
        selection or regression could not be done, why (``skipped``).

    Raises
    ------
    StemstoreError
        For an unknown group, or when segmenting or extracting fails.
    """
    from stemstore.features.extraction import extract
    from stemstore.analysis.regression_runs import regress
    from stemstore.segments import segment
    from stemstore.analysis.selection_runs import select

    store.group_instruments(group)  # unknown group: a clear error before any work
    result = StudyResult(group)
    _with_progress(
        progress_factory,
        f"segmenting {group}",
        lambda p: segment(store, groups=[group], window=window, progress=p),
    )
    _with_progress(
        progress_factory, "extracting features", lambda p: extract(store, workers=workers, progress=p)
    )

    segments = segment_table(store, group=group)
    left_out, _ = excluded_segments(store, segments["segment_id"])  # select and regress leave them out
    segments = segments[~segments["segment_id"].isin(list(left_out))]
    n_raw, n_stem = int((segments["role"] == Role.RAW).sum()), int((segments["role"] == Role.STEM).sum())
    ids = set(segments["segment_id"].astype(int))
    select_params = {"preset": select_preset, "random_state": seed}
    result.selection_run = _current_or_new(
        store,
        result,
        RunKind.SELECTION,
        select_params,
        ids,
        say,
        f"selecting features ({n_raw} raw and {n_stem} stem segments, {select_preset} preset)",
        lambda: select(store, group, preset=select_preset, seed=seed, n_jobs=n_jobs),
    )
    if result.selection_run is None:
        return result

    regress_params = {"preset": regress_preset, "seed": seed, "selection_run": result.selection_run}
    paired = set(segments.loc[segments["pair"].notna(), "segment_id"].astype(int))
    result.regression_run = _current_or_new(
        store,
        result,
        RunKind.REGRESSION,
        regress_params,
        paired,
        say,
        f"regression ({regress_preset} preset)",
        lambda: regress(
            store, group, selection_run=result.selection_run, preset=regress_preset, seed=seed, n_jobs=n_jobs
        ),
    )
    return result


def _current_or_new(
    store: Store,
    result: StudyResult,
    kind: str,
    params: dict,
    segment_ids: set[int],
    say: Say,
    doing: str,
    run,
) -> int | None:
    """The current run of ``kind`` if there is one, else the id ``run()`` makes; None (and the
    reason in ``result.skipped``) when the group cannot be analysed."""
    run_id = _current_run(store, kind, result.group, params, segment_ids)
    if run_id is not None:
        result.reused.append(f"{kind} run {run_id}")
        return run_id
    try:
        say(f"{result.group}: {doing}")
        return run()
    except StemstoreError as exc:
        result.skipped = str(exc)
        return None


def _with_progress(factory, label: str, work):
    if factory is None:
        return work(None)
    with factory(label) as progress:
        return work(progress)


@dataclass
class DemoResult:
    directory: Path
    store_url: str
    studies: list[StudyResult]
    tables: dict[str, pd.DataFrame]
    figures: list[Path]
    store_db: str = ""  # the --db that opens the demo store

    @property
    def serve_command(self) -> str:
        """The command that opens the demo store in the browser (``stemstore serve``)."""
        return f"stemstore serve --db {shlex.quote(self.store_db)}"


def run_demo(
    directory: Path,
    *,
    db: str | None = None,
    multitracks: int = 20,
    seconds: float = 30.0,
    seed: int = 0,
    workers: int = 2,
    window: float = 10.0,
    regress_preset: str = "paper",
    groups: tuple[str, ...] = DEFAULT_GROUPS,
    say: Say = _quiet,
    progress_factory=None,
) -> DemoResult:
    """The main job: synthesise a corpus, ingest, segment, extract, select (fast preset),
    regress, then the study's tables and figures. Everything goes under ``directory``
    (the store too, unless ``db`` names one); a rerun reuses all of it."""
    from stemstore.corpus.ingest import ingest
    from stemstore.reports import report
    from stemstore.synth.corpus import synthesize_corpus

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StemstoreError(f"cannot make the demo folder {directory}: {exc.strerror}") from exc
    corpus = directory / "corpus"
    marker = corpus / "SYNTH.json"
    wanted = {"multitracks": multitracks, "seconds": seconds, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        say(f"corpus: reusing {corpus}")
    else:
        if corpus.exists() and any(corpus.iterdir()):
            raise StemstoreError(f"{corpus} holds another corpus: remove it or choose another --dir")
        say(f"corpus: synthesising {multitracks} multitracks × {seconds:g} s into {corpus}")
        _with_progress(
            progress_factory,
            "synthesising",
            lambda p: synthesize_corpus(
                corpus, n_multitracks=multitracks, seconds=seconds, seed=seed, progress=p
            ),
        )
        marker.write_text(json.dumps(wanted))

    store_db = db or str(directory / "stemstore.duckdb")
    store = Store.open(store_db, create=True, check_schema=False)
    with store:
        store.init()
        summary = _with_progress(progress_factory, "ingesting", lambda p: ingest(store, corpus, progress=p))
        say(f"ingest: {summary.describe()}")
        studies = []
        for group in groups:
            study = run_study(
                store,
                group,
                select_preset="fast",
                regress_preset=regress_preset,
                seed=seed,
                workers=workers,
                window=window,
                say=say,
                progress_factory=progress_factory,
            )
            if study.skipped:
                say(f"{group}: not analysed: {study.skipped}")
            elif study.reused:
                say(f"{group}: reused {', '.join(study.reused)}")
            studies.append(study)
        analysed = [s.group for s in studies if not s.skipped]
        tables = {
            name: report(store, name, groups=list(groups) if name == "table2" else analysed)
            for name in STUDY_TABLES
        }
        figures = _write_figures(store, directory / "figures", [s for s in studies if not s.skipped])
        return DemoResult(directory, store.label, studies, tables, figures, store_db)


def _write_figures(store: Store, folder: Path, studies: list[StudyResult]) -> list[Path]:
    """Figs. 2, 3 and 4 of every analysed group."""
    from stemstore.analysis.regression_runs import pca_figure
    from stemstore.analysis.selection_runs import importance_figure, oob_figure

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for study in studies:
        for name, draw in (("fig2-importance", importance_figure), ("fig3-oob", oob_figure)):
            path = folder / f"{name}-{study.group}.png"
            draw(store, study.group, path, run_id=study.selection_run)
            written.append(path)
        if study.regression_run is not None:
            path = folder / f"fig4-pca-{study.group}.png"
            pca_figure(store, study.group, path)
            written.append(path)
    return written
