"""Feature extraction: all 1812 catalog features of every pending segment (docs/method.md, section 3).

For one segment (:func:`compute_segment`, a pure function of the segment's description)::

    audio = load_mono(path)[start_sample:start_sample + window_samples]
    audio, _ = preprocess(audio, normalise=params["normalise"])   # ReplayGain + EqualLoudness
    values = FeatureExtractor().extract(audio)                    # 1812 float64, catalog order

:func:`extract` runs that over every pending segment, inline, in local worker processes or on
a Dask cluster, and writes each result from this process:

* **One transaction per segment.** The segment's 1812 values are inserted (one bulk insert)
  in the same transaction that moves its status from ``pending`` to ``extracted``; the update
  only succeeds while the segment is still pending, so a kill at any moment leaves each
  segment either untouched (pending, no values) or complete, and a rerun (or a second
  extractor running at the same time) never writes a segment twice. The ``feature_values``
  primary key (segment_id, feature_id) would refuse a duplicate anyway.
* **Curators' exclusions are honoured.** Segments whose pair or multitrack is actively
  excluded (:mod:`stemstore.curation`) are left pending and not computed; the run records the
  exclusions it applied. Including them again makes the next run extract them.
* **Failures do not stop the run.** A segment whose audio cannot be loaded or makes Essentia
  fail is marked ``failed`` with the error; the others go on.
* **Non-finite values are stored as computed** (NaN, +/-inf) and counted on the run. They are
  replaced when a matrix is read for analysis (:func:`stemstore.analysis.matrix.analysis_matrix`): NaN by the feature's
  mean over the segments analysed, +/-inf by its largest/smallest finite value.

Workers never touch the database: they get (path, start, length, normalise) and return the
values. Dask workers must see the corpus files at the same paths as this process (a shared
filesystem).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import sqlalchemy as sa

from stemstore.curation import excluded_segments
from stemstore.errors import StemstoreError
from stemstore.features import EXTRACTOR_VERSION
from stemstore.enums import RunKind, SegmentStatus

if TYPE_CHECKING:  # workers import this module: keep the database layer out of their imports
    from stemstore.features.extractor import FeatureExtractor
    from stemstore.store.connection import Store

ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# One segment (runs in a worker)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentTask:
    """Everything a worker needs to compute one segment's features (no database access)."""

    segment_id: int
    path: str
    start_sample: int
    n_samples: int
    normalise: bool


@dataclass
class SegmentResult:
    segment_id: int
    values: np.ndarray | None  # 1812 float64 in catalog order, or None when it failed
    error: str | None = None


_local = threading.local()


# Essentia (under stemstore.audio and the extractor) is imported only where segments are
# computed: counting the work left for `stemstore status` should not pay its ~1 s import.
def _extractor() -> FeatureExtractor:
    """This worker's (thread's) FeatureExtractor, built once and reused for every segment."""
    extractor = getattr(_local, "extractor", None)
    if extractor is None:
        import essentia

        from stemstore.features.extractor import FeatureExtractor

        essentia.log.warningActive = False  # Essentia warns on teardown of its networks
        extractor = _local.extractor = FeatureExtractor()
    return extractor


def segment_audio(task: SegmentTask) -> np.ndarray:
    """The pre-processed audio of a segment, recomputed from its file (see module docstring)."""
    from stemstore.audio import SAMPLE_RATE, AudioError, load_mono, preprocess

    audio = load_mono(task.path)
    end = task.start_sample + task.n_samples
    if audio.size < end:
        raise AudioError(
            f"{task.path} is {audio.size / SAMPLE_RATE:.2f} s long, shorter than the "
            f"segment's end at {end / SAMPLE_RATE:.2f} s (did the file change?)"
        )
    return preprocess(audio[task.start_sample : end], normalise=task.normalise)[0]


def compute_segment(task: SegmentTask) -> SegmentResult:
    """Compute one segment's 1812 values; any error becomes the result's ``error``."""
    try:
        values = _extractor().extract(segment_audio(task))
        return SegmentResult(task.segment_id, np.asarray(values, dtype=np.float64))
    except Exception as exc:  # Essentia raises RuntimeError; audio problems AudioError/ValueError
        message = str(exc).strip().replace("\n", " ") or type(exc).__name__
        return SegmentResult(task.segment_id, None, f"{type(exc).__name__}: {message}"[:1000])


# --------------------------------------------------------------------------------------------
# Where segments are computed: inline, local processes, a Dask cluster
# --------------------------------------------------------------------------------------------


def _inline(tasks: list[SegmentTask]) -> Iterator[SegmentResult]:
    for task in tasks:
        yield compute_segment(task)


def _process_context():
    """How worker processes start: forked where the platform can, so they inherit the modules
    already imported here (Essentia alone takes seconds to import) and start in well under a
    second. Forked workers only compute: they never use the database connections they inherit.
    Elsewhere (Windows, macOS defaults) they are spawned and import what they need."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _local_processes(tasks: list[SegmentTask], workers: int) -> Iterator[SegmentResult]:
    """Results in completion order from ``workers`` processes, each reusing one
    FeatureExtractor. At most two tasks per worker are in flight."""
    import stemstore.features.extractor  # noqa: F401  (loaded before forking: the workers inherit it)

    pending_tasks = iter(tasks)
    context = _process_context()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        in_flight = set()

        def top_up() -> None:
            while len(in_flight) < 2 * workers:
                task = next(pending_tasks, None)
                if task is None:
                    return
                in_flight.add(pool.submit(compute_segment, task))

        top_up()
        try:
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    in_flight.remove(future)
                    yield future.result()
                top_up()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _dask(tasks: list[SegmentTask], address: str) -> Iterator[SegmentResult]:
    """Results in completion order from the Dask cluster at ``address``. Tasks are submitted
    a few per worker thread at a time, so a huge backlog never sits in the scheduler."""
    from distributed import as_completed

    from stemstore.cluster import connect

    client = connect(address)
    try:
        threads = max(1, sum(client.nthreads().values()))
        pending_tasks = iter(tasks)

        def submit(task: SegmentTask):
            return client.submit(
                compute_segment, task, key=f"stemstore-segment-{task.segment_id}-{time.time_ns()}", pure=False
            )

        first = [submit(t) for t in (next(pending_tasks, None) for _ in range(2 * threads)) if t is not None]
        queue = as_completed(first)
        for future in queue:
            result = future.result()
            future.release()
            task = next(pending_tasks, None)
            if task is not None:
                queue.add(submit(task))
            yield result
    finally:
        client.close()


def compute_segments(
    tasks: list[SegmentTask], workers: int = 1, dask_address: str | None = None
) -> Iterator[SegmentResult]:
    """Compute ``tasks`` inline (one worker), in ``workers`` local processes, or on the Dask
    cluster at ``dask_address``; yields results in completion order. No database access."""
    if dask_address:
        return _dask(tasks, dask_address)
    if workers > 1:
        return _local_processes(tasks, min(workers, len(tasks)))
    return _inline(tasks)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


@dataclass
class ExtractSummary:
    """What one ``extract`` call did."""

    run_id: int | None
    pending: int = 0  # segments to compute when the run started (new + outdated)
    outdated: int = 0  # of those, segments whose values an older extractor computed
    excluded: int = 0  # pending or outdated segments left alone because a curator excluded them
    extracted: int = 0
    replaced: int = 0  # outdated segments whose values were replaced
    stale_runs: int = 0  # runs marked stale because values they used were replaced
    failed: int = 0
    non_finite: int = 0  # NaN/inf values among those written
    already_done: int = 0  # written meanwhile by another extractor (not written again)
    seconds: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (segment id, error), first few

    def describe(self) -> str:
        if self.pending == 0 and self.excluded:
            return (
                f"nothing to do: the {self.excluded} pending or outdated segments are all excluded "
                "by a curator (see 'stemstore exclusions')"
            )
        if self.pending == 0:
            return "nothing to do: no pending or outdated segments (run 'stemstore segment' first?)"
        rate = self.extracted / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"extracted {self.extracted} of {self.pending} pending segments in {self.seconds:.1f} s "
            f"({rate:.2f} segments/s); {self.failed} failed; {self.non_finite} non-finite values stored "
            "(replaced when analysed)"
        )
        if self.outdated:
            text += (
                f"; {self.replaced} of {self.outdated} outdated segments recomputed with extractor "
                f"version {EXTRACTOR_VERSION}, {self.stale_runs} runs that used them marked stale"
            )
        if self.excluded:
            text += f"; {self.excluded} left out (excluded)"
        if self.already_done:
            text += f"; {self.already_done} already done by another run"
        for segment_id, error in self.failures[:5]:
            text += f"\n  segment {segment_id} failed: {error}"
        if self.failed > 5:
            text += f"\n  ... and {self.failed - 5} more (see segments.reason)"
        return text


_PENDING_SQL = """
SELECT s.id AS segment_id, s.start, s.duration, s.params, t.path, c.root,
       s.status = 'extracted' AS outdated
FROM segments s
JOIN tracks t ON t.id = s.track_id
JOIN multitracks m ON m.id = t.multitrack_id
JOIN corpora c ON c.id = m.corpus_id
LEFT JOIN segment_extractions x ON x.segment_id = s.id
WHERE NOT s.stale AND s.source = 'audio'
  AND (s.status = 'pending'
       OR (s.status = 'extracted' AND (x.extractor_version IS NULL OR x.extractor_version <> :version)))
ORDER BY s.id
"""

#: Extracted audio segments whose values an older extractor version computed.
OUTDATED_SQL = """
SELECT COUNT(*) AS outdated FROM segments s
LEFT JOIN segment_extractions x ON x.segment_id = s.id
WHERE s.status = 'extracted' AND s.source = 'audio' AND NOT s.stale
  AND (x.extractor_version IS NULL OR x.extractor_version <> :version)
"""


def count_outdated(store: Store) -> int:
    """How many extracted segments carry values of an older extractor version."""
    return int(store.read_sql(OUTDATED_SQL, {"version": EXTRACTOR_VERSION})["outdated"].iloc[0])


def _tasks(store: Store, limit: int | None = None) -> tuple[list[SegmentTask], set[int], set[int], list[int]]:
    """The segments to compute as worker tasks, oldest first: pending ones, and extracted ones
    whose values an older extractor version computed; none that a curator excluded.

    Returns (tasks, the outdated among them, the segments left out because they are excluded,
    the ids of the exclusions that left them out)."""
    from stemstore.audio import SAMPLE_RATE

    rows = store.read_sql(_PENDING_SQL, {"version": EXTRACTOR_VERSION})
    left_out, exclusion_ids = excluded_segments(store, rows["segment_id"])
    rows = rows[~rows["segment_id"].isin(left_out)]
    if limit is not None:
        rows = rows.head(limit)
    outdated = {int(r.segment_id) for r in rows.itertuples(index=False) if bool(r.outdated)}
    tasks = []
    for row in rows.itertuples(index=False):
        params = json.loads(row.params) if isinstance(row.params, str) else (row.params or {})
        path = str(Path(row.root) / row.path) if row.root and row.path else (row.path or "")
        start = params.get("start_sample")
        if start is None:
            start = int(round(row.start * SAMPLE_RATE))
        n_samples = params.get("window_samples") or int(round(row.duration * SAMPLE_RATE))
        tasks.append(
            SegmentTask(
                int(row.segment_id), path, int(start), int(n_samples), bool(params.get("normalise", True))
            )
        )
    return tasks, outdated, left_out, exclusion_ids


def _record_version(conn, segment_id: int) -> None:
    conn.execute(sa.text("DELETE FROM segment_extractions WHERE segment_id = :id"), {"id": segment_id})
    conn.execute(
        sa.text(
            "INSERT INTO segment_extractions (segment_id, extractor_version, extracted_at) "
            "VALUES (:id, :version, CURRENT_TIMESTAMP)"
        ),
        {"id": segment_id, "version": EXTRACTOR_VERSION},
    )


def _values_frame(segment_id: int, values: np.ndarray, feature_ids: np.ndarray) -> pd.DataFrame:
    if len(values) != len(feature_ids):
        raise StemstoreError(
            f"segment {segment_id}: {len(values)} values for {len(feature_ids)} catalog features"
        )
    return pd.DataFrame(
        {
            "segment_id": np.full(len(feature_ids), segment_id, dtype=np.int64),
            "feature_id": feature_ids,
            "value": np.asarray(values, dtype=np.float64),
        }
    )


def _replace_outdated(store: Store, result: SegmentResult, feature_ids: np.ndarray) -> int | None:
    """Replace an outdated segment's values in one transaction: the old values stay until the
    new ones are written with them, and the runs that used the segment become stale. Returns
    how many runs were newly marked stale, or None if the segment was no longer outdated."""
    frame = _values_frame(result.segment_id, result.values, feature_ids)
    with store.engine.begin() as conn:
        current = conn.execute(
            sa.text(
                "SELECT s.status, s.stale, x.extractor_version FROM segments s "
                "LEFT JOIN segment_extractions x ON x.segment_id = s.id WHERE s.id = :id"
            ),
            {"id": result.segment_id},
        ).first()
        if (
            current is None
            or current.status != SegmentStatus.EXTRACTED
            or current.stale
            or current.extractor_version == EXTRACTOR_VERSION
        ):
            return None
        conn.execute(sa.text("DELETE FROM feature_values WHERE segment_id = :id"), {"id": result.segment_id})
        store.bulk_insert(conn, "feature_values", frame)
        _record_version(conn, result.segment_id)
        runs = [
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT id FROM runs WHERE NOT stale AND id IN "
                    "(SELECT run_id FROM run_segments WHERE segment_id = :id)"
                ),
                {"id": result.segment_id},
            )
        ]
        if runs:
            conn.execute(
                sa.text(
                    "UPDATE runs SET stale = TRUE WHERE id IN (" + ", ".join(str(int(r)) for r in runs) + ")"
                )
            )
        return len(runs)


def _write_result(store: Store, result: SegmentResult, feature_ids: np.ndarray) -> bool:
    """Write one segment's outcome in one transaction; False if it was no longer pending."""
    with store.engine.begin() as conn:
        if result.values is None:
            changed = conn.execute(
                sa.text(
                    "UPDATE segments SET status = 'failed', reason = :reason "
                    "WHERE id = :id AND status = 'pending' RETURNING id"
                ),
                {"id": result.segment_id, "reason": result.error},
            ).fetchall()
            return bool(changed)
        frame = _values_frame(result.segment_id, result.values, feature_ids)
        changed = conn.execute(
            sa.text(
                "UPDATE segments SET status = 'extracted', reason = NULL "
                "WHERE id = :id AND status = 'pending' AND NOT stale RETURNING id"
            ),
            {"id": result.segment_id},
        ).fetchall()
        if not changed:
            return False
        store.bulk_insert(conn, "feature_values", frame)
        _record_version(conn, result.segment_id)
        return True


def _software(dask_address: str | None) -> dict:
    if dask_address is None:
        return {}
    from importlib import metadata

    return {name: metadata.version(name) for name in ("dask", "distributed")}


def extract(
    store: Store,
    workers: int = 1,
    dask_address: str | None = None,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
) -> ExtractSummary:
    """Compute and store the features of every pending or outdated segment.

    Results are written by this process, one transaction per segment, so an interrupted run
    resumes where it stopped. Records an ``extraction`` run with the counts.

    Parameters
    ----------
    store : Store
        The store whose pending segments to extract.
    workers : int, default=1
        More than 1 runs that many local processes.
    dask_address : str, optional
        A Dask scheduler (e.g. ``tcp://scheduler:8786``) to run the work on instead.
    progress : callable, optional
        ``progress(done, total)``, called after each segment.
    limit : int, optional
        Extract at most this many segments.

    Returns
    -------
    ExtractSummary
        Segments extracted, failed and replaced (outdated), non-finite values, and the run's id
        (None when no segment was pending).

    Raises
    ------
    StemstoreError
        For ``workers`` below 1 or a negative ``limit``.
    """
    if workers < 1:
        raise StemstoreError(f"--workers must be at least 1 (got {workers})")
    if limit is not None and limit < 0:
        raise StemstoreError(f"limit must not be negative (got {limit})")
    feature_ids = store.features["id"].to_numpy(dtype=np.int64)  # catalog order
    tasks, outdated, left_out, exclusion_ids = _tasks(store, limit)
    summary = ExtractSummary(run_id=None, pending=len(tasks), outdated=len(outdated), excluded=len(left_out))
    if not tasks:
        return summary

    mode = "dask" if dask_address else ("processes" if workers > 1 else "inline")
    with store.run(
        RunKind.EXTRACTION,
        params={
            "mode": mode,
            "workers": workers if not dask_address else None,
            "dask_address": dask_address,
            "limit": limit,
            "pending": len(tasks),
            "outdated": len(outdated),
            "excluded": len(left_out),
            "exclusions": exclusion_ids,
            "extractor_version": EXTRACTOR_VERSION,
            "n_features": len(feature_ids),
            "software": _software(dask_address),
        },
    ) as run:
        summary.run_id = run.id
        results = compute_segments(tasks, workers=workers, dask_address=dask_address)

        started = time.perf_counter()

        def counts() -> dict:  # called when the run ends, done or failed: the time is taken then
            summary.seconds = time.perf_counter() - started
            return _counts(summary)

        run.counts = counts
        for done, result in enumerate(results, start=1):
            if result.segment_id in outdated:
                # An outdated segment keeps its old values if the new ones cannot be computed.
                stale_runs = None if result.values is None else _replace_outdated(store, result, feature_ids)
                if result.values is None:
                    summary.failed += 1
                    if len(summary.failures) < 20:
                        summary.failures.append((result.segment_id, f"{result.error} (older values kept)"))
                elif stale_runs is None:
                    summary.already_done += 1
                else:
                    summary.replaced += 1
                    summary.extracted += 1
                    summary.stale_runs += stale_runs
                    summary.non_finite += int(np.count_nonzero(~np.isfinite(result.values)))
            elif not _write_result(store, result, feature_ids):
                summary.already_done += 1
            elif result.values is None:
                summary.failed += 1
                if len(summary.failures) < 20:
                    summary.failures.append((result.segment_id, result.error or ""))
            else:
                summary.extracted += 1
                summary.non_finite += int(np.count_nonzero(~np.isfinite(result.values)))
            if progress:
                progress(done, len(tasks))
        run.message = f"{summary.failed} segment(s) failed" if summary.failed else None
    return summary


def _counts(summary: ExtractSummary) -> dict:
    return {
        "pending": summary.pending,
        "extracted": summary.extracted,
        "failed": summary.failed,
        "non_finite_values": summary.non_finite,
        "already_done": summary.already_done,
        "outdated": summary.outdated,
        "excluded": summary.excluded,
        "replaced": summary.replaced,
        "stale_runs": summary.stale_runs,
        "seconds": round(summary.seconds, 3),
    }
