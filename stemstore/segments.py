"""Raw/stem segment pairs (docs/method.md, section 2).

For each multitrack and instrument label (a *unit*), :func:`segment` picks one analysed stem,
its loudest window, and the raw track of that stem that is loudest over the same interval::

    stems of the unit     -> each stem's loudest window (energy = sum of squared samples)
    analysed stem         =  the stem whose loudest window has the most energy
    raws of that stem     -> energy over the same interval; the most energetic raw is kept
    pair                  =  stem segment + raw segment, sharing pair = "<multitrack>/<instrument>"

Both segments are rows of ``segments`` with status ``pending``; ``stemstore extract`` computes
their features. Every other stem of the unit, and a unit that gives no pair, gets a stem row
with status ``skipped`` and the reason (too short, silent, missing or unreadable audio, no raw,
another stem of the label is louder).

What is stored, and what is not
-------------------------------
A segment stores where it is (track, ``start`` and ``duration`` in seconds) and how it is
pre-processed (``params``: window, normalise, ReplayGain gain in dB, equal-loudness filter,
sample rate, start sample). The pre-processed audio itself is *not* stored (10 s of float32
is 1.7 MB per segment, ~100x the segment's 1812 feature values): extraction reloads the file
and recomputes it from (path, start, duration, params), which is deterministic. The ReplayGain
gain recorded here is therefore a record of what the segment needed, and extraction recomputes
the same value.

Incremental
-----------
A unit whose current (non-stale) rows still describe it -- same stems, same raws of the
analysed stem, a complete pair or a skip -- is left alone, so running ``segment`` twice
processes nothing the second time. A unit with stale rows (marked by ingest when audio changes)
or whose stems/raws changed is segmented again: its old rows are deleted with their feature
values, except rows a selection/regression run used (``run_segments``), which stay as history,
marked stale. Each unit is written in one transaction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa

from stemstore.audio import (
    SAMPLE_RATE,
    AudioError,
    is_silent,
    load_mono,
    preprocess,
    window_energy,
    window_energies,
)
from stemstore.curation import excluded_units
from stemstore.errors import StemstoreError
from stemstore.store.schema import utcnow
from stemstore.store.connection import Store, describe_error
from stemstore.enums import Role, RunKind, SegmentSource, SegmentStatus, TrackKind

ProgressCallback = Callable[[int, int], None]

#: A segment window this short cannot be analysed (FeatureExtractor needs 2-s frames for
#: some descriptors; 1 s is the practical floor for meaningful pooled statistics).
MIN_WINDOW_SECONDS = 1.0


@dataclass
class SegmentSummary:
    """What one ``segment`` call did."""

    run_id: int | None
    units: int = 0  # (multitrack, instrument) units considered
    unchanged: int = 0  # already current: nothing done
    pairs: int = 0  # new pairs (2 pending segments each)
    replaced: int = 0  # units segmented again because their rows were stale or outdated
    excluded: int = 0  # units left alone because a curator excluded their pair or multitrack
    skipped_units: int = 0  # units that gave no pair
    skip_reasons: dict[str, int] = field(default_factory=dict)  # stem rows skipped, by kind

    def describe(self) -> str:
        if self.units == self.unchanged:
            return f"nothing to do: all {self.units} stems (multitrack × instrument) are already segmented"
        done = self.units - self.unchanged
        text = (
            f"segmented {done} of {self.units} multitrack × instrument units: "
            f"{self.pairs} new pairs, {self.skipped_units} without a pair"
        )
        if self.replaced:
            text += f", {self.replaced} redone (stale)"
        if self.excluded:
            text += f", {self.excluded} left out (excluded)"
        if self.skip_reasons:
            text += "; skipped stems: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skip_reasons.items()))
        return text


# --------------------------------------------------------------------------------------------
# Reading what there is
# --------------------------------------------------------------------------------------------

_TRACKS_SQL = """
SELECT t.id AS track_id, t.multitrack_id, m.name AS multitrack, t.kind, t.code,
       t.instrument_id, i.name AS instrument, t.path, c.root, t.content_hash
FROM tracks t
JOIN multitracks m ON m.id = t.multitrack_id
JOIN corpora c ON c.id = m.corpus_id
LEFT JOIN instruments i ON i.id = t.instrument_id
WHERE t.kind IN ('stem', 'raw') AND NOT t.stale
ORDER BY m.name, t.code
"""

_SEGMENTS_SQL = """
SELECT s.id AS segment_id, s.track_id, t.multitrack_id, s.instrument_id, s.role, s.pair,
       s.status, s.stale, s.params
FROM segments s JOIN tracks t ON t.id = s.track_id
WHERE s.source = 'audio'
"""


def _absolute_path(root: str | None, path: str | None) -> str | None:
    if path is None:
        return None
    return str(Path(root) / path) if root else path


@dataclass
class _Unit:
    """One multitrack × instrument label: its stems and the current rows describing it."""

    multitrack_id: int
    multitrack: str
    instrument_id: int
    instrument: str
    stems: pd.DataFrame  # track rows of the unit's stems
    fresh: pd.DataFrame  # non-stale segment rows of the unit
    old_ids: list[int]  # every segment id of the unit (stale or not)

    @property
    def pair_key(self) -> str:
        return f"{self.multitrack}/{self.instrument}"


def _units(store: Store, labels: set[str] | None) -> tuple[list[_Unit], pd.DataFrame, dict[int, list[int]]]:
    tracks = store.read_sql(_TRACKS_SQL)
    tracks["abs_path"] = [_absolute_path(r, p) for r, p in zip(tracks["root"], tracks["path"])]
    stems = tracks[(tracks["kind"] == TrackKind.STEM) & tracks["instrument_id"].notna()]
    if labels is not None:
        stems = stems[stems["instrument"].isin(labels)]
    links = store.read_sql("SELECT stem_track_id, raw_track_id FROM track_links ORDER BY raw_track_id")
    live = set(tracks["track_id"])
    raws_of: dict[int, list[int]] = {}
    for stem_id, raw_id in zip(links["stem_track_id"], links["raw_track_id"]):
        if raw_id in live:
            raws_of.setdefault(int(stem_id), []).append(int(raw_id))

    segments = store.read_sql(_SEGMENTS_SQL)
    segments["params"] = [json.loads(p) if isinstance(p, str) else (p or {}) for p in segments["params"]]
    by_unit = {key: rows for key, rows in segments.groupby(["multitrack_id", "instrument_id"])}
    units = []
    for (mt_id, inst_id), unit_stems in stems.groupby(["multitrack_id", "instrument_id"], sort=False):
        rows = by_unit.get((mt_id, inst_id), segments.iloc[0:0])
        units.append(
            _Unit(
                int(mt_id),
                unit_stems["multitrack"].iloc[0],
                int(inst_id),
                unit_stems["instrument"].iloc[0],
                unit_stems,
                rows[~rows["stale"].astype(bool)],
                [int(i) for i in rows["segment_id"]],
            )
        )
    return units, tracks.set_index("track_id", drop=False), raws_of


def _is_current(unit: _Unit, raws_of: dict[int, list[int]]) -> bool:
    """Whether the unit's non-stale rows still describe it (see the module docstring)."""
    fresh = unit.fresh
    if fresh.empty:
        return False
    stem_rows = fresh[fresh["role"] == Role.STEM]
    if set(stem_rows["track_id"]) != set(unit.stems["track_id"]):
        return False  # a stem appeared, disappeared or lost its row
    paired = fresh[fresh["pair"].notna()]
    if len(paired) and sorted(paired["role"]) != [Role.RAW, Role.STEM]:
        return False  # half a pair: the other half went stale
    for stem_id, params in zip(stem_rows["track_id"], stem_rows["params"]):
        if "raws" in params and sorted(params["raws"]) != sorted(raws_of.get(int(stem_id), [])):
            return False  # the stem's raw tracks changed
    return True


# --------------------------------------------------------------------------------------------
# Deciding one unit
# --------------------------------------------------------------------------------------------


class _AudioCache:
    """Decoded audio of the current multitrack's tracks (each file decoded once)."""

    def __init__(self) -> None:
        self._audio: dict[int, np.ndarray | str] = {}

    def get(self, track: pd.Series) -> np.ndarray | str:
        """The track's mono 44.1-kHz signal, or a skip reason when it cannot be had."""
        track_id = int(track["track_id"])
        if track_id not in self._audio:
            self._audio[track_id] = self._load(track)
        return self._audio[track_id]

    @staticmethod
    def _load(track: pd.Series) -> np.ndarray | str:
        if track["abs_path"] is None:
            return f"missing audio: {track['code']} has no audio file"
        if not os.path.isfile(track["abs_path"]):
            return f"missing audio: {track['code']} file {track['path']} not found"
        try:
            return load_mono(track["abs_path"])
        except AudioError as exc:
            return f"unreadable audio: {track['code']} {track['path']} ({str(exc).split(': ', 1)[-1]})"

    def clear(self) -> None:
        self._audio.clear()


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def _plan_unit(
    unit: _Unit,
    tracks: pd.DataFrame,
    raws_of: dict[int, list[int]],
    cache: _AudioCache,
    window_samples: int,
    normalise: bool,
) -> list[dict]:
    """The segment rows for one unit: a pending pair (+ skipped sibling stems), or skips."""
    window_s = window_samples / SAMPLE_RATE
    rows: list[dict] = []

    def stem_row(stem: pd.Series, status: str, reason: str | None, start: int | None, extra: dict) -> dict:
        return {
            "track_id": int(stem["track_id"]),
            "role": Role.STEM,
            "status": status,
            "reason": reason,
            "start_sample": start,
            "params": {"raws": sorted(raws_of.get(int(stem["track_id"]), [])), **extra},
        }

    # 1. Each stem's loudest window; stems that cannot give one are skipped.
    candidates = []  # (energy, start, stem, audio)
    for _, stem in unit.stems.iterrows():
        audio = cache.get(stem)
        if isinstance(audio, str):
            rows.append(stem_row(stem, SegmentStatus.SKIPPED, audio, None, {}))
        elif audio.size < window_samples:
            rows.append(
                stem_row(
                    stem,
                    SegmentStatus.SKIPPED,
                    f"too short: {stem['code']} lasts "
                    f"{audio.size / SAMPLE_RATE:.2f} s, less than the {window_s:g}-s window",
                    None,
                    {},
                )
            )
        else:
            energies = window_energies(audio, window_samples)
            start = int(np.argmax(energies))
            candidates.append((float(energies[start]), start, stem, audio))
    if not candidates:
        return rows

    # 2. The analysed stem: the one whose loudest window has the most energy.
    candidates.sort(key=lambda c: -c[0])
    energy, start, stem, stem_audio = candidates[0]
    for other_energy, other_start, other, _ in candidates[1:]:
        rows.append(
            stem_row(
                other,
                SegmentStatus.SKIPPED,
                f"not analysed: stem {stem['code']} of the same instrument "
                "has more energy in its loudest window",
                other_start,
                {"energy": other_energy},
            )
        )
    stem_window = stem_audio[start : start + window_samples]
    if is_silent(stem_window):
        rows.append(
            stem_row(
                stem,
                SegmentStatus.SKIPPED,
                f"silent: the loudest {window_s:g}-s window of {stem['code']} is below -90 dB",
                start,
                {"energy": energy},
            )
        )
        return rows

    # 3. Its raws over the same interval: the most energetic one is kept.
    raw_ids = raws_of.get(int(stem["track_id"]), [])
    if not raw_ids:
        rows.append(
            stem_row(
                stem,
                SegmentStatus.SKIPPED,
                f"no raw: stem {stem['code']} has no raw tracks",
                start,
                {"energy": energy},
            )
        )
        return rows
    raw_energies, raw_problems = [], []
    for raw_id in raw_ids:
        raw = tracks.loc[raw_id]
        raw_audio = cache.get(raw)
        if isinstance(raw_audio, str):
            raw_problems.append(raw_audio)
        elif raw_audio.size < start + window_samples:
            raw_problems.append(f"too short: raw {raw['code']} ends before the stem's window")
        else:
            raw_energies.append((window_energy(raw_audio, start, window_samples), raw, raw_audio))
    if not raw_energies:
        kinds = sorted({_reason_kind(p) for p in raw_problems})
        kind = kinds[0] if len(kinds) == 1 else "no raw"
        rows.append(
            stem_row(
                stem,
                SegmentStatus.SKIPPED,
                f"{kind}: no usable raw for {stem['code']} (" + "; ".join(raw_problems) + ")",
                start,
                {"energy": energy},
            )
        )
        return rows
    raw_energy, raw, raw_audio = max(raw_energies, key=lambda r: r[0])
    raw_window = raw_audio[start : start + window_samples]
    if is_silent(raw_window):
        rows.append(
            stem_row(
                stem,
                SegmentStatus.SKIPPED,
                f"silent: the loudest raw of {stem['code']} "
                f"({raw['code']}) is below -90 dB in the stem's window",
                start,
                {"energy": energy},
            )
        )
        return rows

    # 4. Pre-processing parameters (the gain ReplayGain needs) for both, then the pair.
    gains = {}
    for role, signal in ((Role.STEM, stem_window), (Role.RAW, raw_window)):
        try:
            gains[role] = preprocess(signal, normalise=normalise)[1]
        except ValueError as exc:
            rows.append(
                stem_row(
                    stem,
                    SegmentStatus.SKIPPED,
                    f"unprocessable: {role} window of {stem['code']}: {exc}",
                    start,
                    {"energy": energy},
                )
            )
            return rows
    rows.append(
        stem_row(
            stem, SegmentStatus.PENDING, None, start, {"energy": energy, "replaygain_db": gains[Role.STEM]}
        )
    )
    rows.append(
        {
            "track_id": int(raw["track_id"]),
            "role": Role.RAW,
            "status": SegmentStatus.PENDING,
            "reason": None,
            "start_sample": start,
            "params": {
                "energy": raw_energy,
                "replaygain_db": gains[Role.RAW],
                "stem_track_id": int(stem["track_id"]),
                "raws_compared": len(raw_energies),
            },
        }
    )
    return rows


# --------------------------------------------------------------------------------------------
# Writing one unit
# --------------------------------------------------------------------------------------------


def _write_unit(store: Store, unit: _Unit, rows: list[dict], common: dict) -> None:
    """Replace the unit's old rows by ``rows`` in one transaction."""
    paired = any(r["status"] == SegmentStatus.PENDING for r in rows)
    window_samples = common["window_samples"]
    frame = pd.DataFrame(
        {
            "track_id": np.array([r["track_id"] for r in rows], dtype=np.int64),
            "instrument_id": np.int64(unit.instrument_id),
            "role": [r["role"] for r in rows],
            "pair": [
                unit.pair_key if paired and r["status"] == SegmentStatus.PENDING else None for r in rows
            ],
            "split": None,
            "start": [None if r["start_sample"] is None else r["start_sample"] / SAMPLE_RATE for r in rows],
            "duration": [None if r["start_sample"] is None else window_samples / SAMPLE_RATE for r in rows],
            "params": [
                json.dumps({**common, "start_sample": r["start_sample"], **r["params"]}, sort_keys=True)
                for r in rows
            ],
            "source": SegmentSource.AUDIO,
            "status": [r["status"] for r in rows],
            "reason": [r["reason"] for r in rows],
            "stale": False,
            "created_at": utcnow(),
        }
    )
    frame["start"] = frame["start"].astype(float)
    frame["duration"] = frame["duration"].astype(float)
    with store.engine.begin() as conn:
        if unit.old_ids:
            ids = ",".join(str(i) for i in unit.old_ids)
            used = {
                int(i)
                for (i,) in conn.execute(
                    sa.text(f"SELECT DISTINCT segment_id FROM run_segments WHERE segment_id IN ({ids})")
                )
            }
            unused = [i for i in unit.old_ids if i not in used]
            if unused:
                unused_sql = ",".join(str(i) for i in unused)
                conn.execute(sa.text(f"DELETE FROM feature_values WHERE segment_id IN ({unused_sql})"))
                conn.execute(sa.text(f"DELETE FROM segments WHERE id IN ({unused_sql})"))
            if used:
                conn.execute(
                    sa.text(
                        "UPDATE segments SET stale = TRUE WHERE id IN ("
                        + ",".join(str(i) for i in sorted(used))
                        + ") AND NOT stale"
                    )
                )
        store.bulk_insert(conn, "segments", frame)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def segment(
    store: Store,
    groups: list[str] | None = None,
    window: float = 10.0,
    normalise: bool = True,
    progress: ProgressCallback | None = None,
) -> SegmentSummary:
    """Make the raw/stem pairs of every unit that has no current segments (docs/method.md, section 2).

    Records a ``segment`` run; every skipped unit is recorded with its reason.

    Parameters
    ----------
    store : Store
        The store with the ingested corpus.
    groups : list of str, optional
        Restrict the work to the instruments of these groups; by default every stem with an
        instrument label.
    window : float, default=10.0
        Segment length in seconds.
    normalise : bool, default=True
        ``False`` skips the ReplayGain step; the equal-loudness filter is always applied.
    progress : callable, optional
        ``progress(done, total)``, called after each unit.

    Returns
    -------
    SegmentSummary
        Units paired, skipped (by reason) and redone, and the run's id (None when there was
        nothing to do).

    Raises
    ------
    StemstoreError
        For a window shorter than the minimum segment length or an unknown group.
    """
    if window < MIN_WINDOW_SECONDS:
        raise StemstoreError(f"--window must be at least {MIN_WINDOW_SECONDS:g} s (got {window:g})")
    labels = None
    if groups:
        labels = set()
        for group in groups:
            labels.update(store.group_instruments(group))
    window_samples = int(round(window * SAMPLE_RATE))

    units, tracks, raws_of = _units(store, labels)
    todo = [u for u in units if not _is_current(u, raws_of)]
    summary = SegmentSummary(run_id=None, units=len(units), unchanged=len(units) - len(todo))
    todo, exclusion_ids = _leave_out_excluded(store, todo)
    summary.excluded = summary.units - summary.unchanged - len(todo)
    if not todo:
        return summary

    with store.run(
        RunKind.SEGMENT,
        group=",".join(groups) if groups else None,
        params={
            "window": window,
            "normalise": normalise,
            "groups": list(groups or []),
            "units": len(todo),
            "exclusions": exclusion_ids,
        },
        failure_message=describe_error,
    ) as run:
        run.counts = lambda: _counts(summary)
        run_id = summary.run_id = run.id
        common = {
            "window": window,
            "window_samples": window_samples,
            "normalise": normalise,
            "replaygain": normalise,
            "equal_loudness": True,
            "sample_rate": SAMPLE_RATE,
            "downmix": "mix",
            "run": run_id,
        }
        cache, cached_multitrack = _AudioCache(), None
        for done, unit in enumerate(todo, start=1):
            if unit.multitrack_id != cached_multitrack:  # units come grouped by multitrack
                cache.clear()
                cached_multitrack = unit.multitrack_id
            rows = _plan_unit(unit, tracks, raws_of, cache, window_samples, normalise)
            _write_unit(store, unit, rows, common)
            summary.replaced += bool(unit.old_ids)
            if any(r["status"] == SegmentStatus.PENDING for r in rows):
                summary.pairs += 1
            else:
                summary.skipped_units += 1
            for r in rows:
                if r["status"] == SegmentStatus.SKIPPED:
                    kind = _reason_kind(r["reason"])
                    summary.skip_reasons[kind] = summary.skip_reasons.get(kind, 0) + 1
            if progress:
                progress(done, len(todo))
    return summary


def _leave_out_excluded(store: Store, todo: list[_Unit]) -> tuple[list[_Unit], list[int]]:
    """The units a curator has not excluded (their rows, if any, stay as they are), and the
    ids of the exclusions that left units out."""
    multitracks, pairs = excluded_units(store)
    kept, applied = [], set()
    for unit in todo:
        if unit.multitrack_id in multitracks:
            applied.add(multitracks[unit.multitrack_id])
        elif unit.pair_key in pairs:
            applied.add(pairs[unit.pair_key])
        else:
            kept.append(unit)
    return kept, sorted(applied)


def _counts(summary: SegmentSummary) -> dict:
    return {
        "units": summary.units,
        "unchanged": summary.unchanged,
        "pairs": summary.pairs,
        "replaced": summary.replaced,
        "excluded": summary.excluded,
        "skipped_units": summary.skipped_units,
        "skipped_stems": summary.skip_reasons,
    }
