"""Curation: leaving segment pairs or whole multitracks out of the analyses, and back in.

A curator who hears that a pair is wrong (the raw is not the stem's source, the stem is
silent where the raw plays, a take is clipped) *excludes* it with a reason; an exclusion of a
multitrack leaves out all its pairs. Exclusions live in the ``exclusions`` table with who,
when and why; *including* again sets ``included_at`` and keeps the row, so every decision
stays on record.

``segment``, ``extract``, ``select``, ``regress`` and ``study`` honour the active exclusions:
excluded units are not segmented, excluded segments are neither extracted (they stay pending
until included again) nor analysed, and each run records in its parameters the ids of the
exclusions it applied (``params["exclusions"]``)::

    exclude(store, pair="Song01/electric bass", reason="raw is a DI of another bass")
    excluded_segments(store, ids)    # -> (segment ids to leave out, exclusion ids applied)
    include(store, exclusion_id=1, reason="checked again: it is the right raw")
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from stemstore.enums import ExclusionScope
from stemstore.errors import StemstoreError
from stemstore.store.connection import Store
from stemstore.store.schema import Exclusion, utcnow

SCOPES = tuple(ExclusionScope.values())
#: Columns of :func:`list_exclusions`, in order.
COLUMNS = [
    "id",
    "scope",
    "multitrack",
    "pair",
    "reason",
    "excluded_by",
    "excluded_at",
    "active",
    "included_by",
    "included_at",
    "include_reason",
]


def current_user() -> str:
    """Who is curating: $STEMSTORE_USER, else the login name."""
    try:
        return os.environ.get("STEMSTORE_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in a container
        return "unknown"


@dataclass
class ExclusionRecord:
    """One exclusion as a curator reads it."""

    id: int
    scope: str
    multitrack: str
    pair: str | None
    reason: str
    active: bool

    def describe(self) -> str:
        what = f"pair {self.pair}" if self.scope == ExclusionScope.PAIR else f"multitrack {self.multitrack}"
        state = "excluded" if self.active else "included again"
        return f"exclusion {self.id}: {what} {state} ({self.reason})"


def _record(row: Exclusion) -> ExclusionRecord:
    return ExclusionRecord(
        row.id, row.scope, row.multitrack, row.pair, row.reason, active=row.included_at is None
    )


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise StemstoreError("give a reason: say why (it is kept with the decision)")
    return text


def _target(
    store: Store, pair: str | None, multitrack: str | None, segment_id: int | None
) -> tuple[str, int, str, str | None]:
    """(scope, multitrack id, multitrack name, pair) of what the user named: exactly one of a
    pair, a multitrack or a segment id (which names its pair)."""
    given = [x for x in (pair, multitrack, segment_id) if x is not None]
    if len(given) != 1:
        raise StemstoreError("name exactly one of: a pair, a multitrack, a segment id")
    if segment_id is not None:
        found = store.read_sql("SELECT s.pair FROM segments s WHERE s.id = :i", {"i": int(segment_id)})
        if found.empty:
            raise StemstoreError(f"no segment {segment_id}")
        pair = found["pair"].iloc[0]
        if pair is None or pd.isna(pair):
            raise StemstoreError(f"segment {segment_id} belongs to no pair")
    if pair is not None:
        found = store.read_sql(
            "SELECT DISTINCT m.id, m.name FROM segments s JOIN tracks t ON t.id = s.track_id "
            "JOIN multitracks m ON m.id = t.multitrack_id WHERE s.pair = :p",
            {"p": pair},
        )
        if found.empty:
            raise StemstoreError(f"no segment pair {pair!r} (pairs are named <multitrack>/<instrument>)")
        return ExclusionScope.PAIR, int(found["id"].iloc[0]), str(found["name"].iloc[0]), pair
    found = store.read_sql("SELECT id, name FROM multitracks WHERE name = :n", {"n": multitrack})
    if found.empty:
        raise StemstoreError(f"no multitrack {multitrack!r}")
    return ExclusionScope.MULTITRACK, int(found["id"].iloc[0]), multitrack, None


def exclude(
    store: Store,
    *,
    reason: str,
    pair: str | None = None,
    multitrack: str | None = None,
    segment_id: int | None = None,
    by: str | None = None,
) -> ExclusionRecord:
    """Exclude a segment pair (by name or by one of its segment ids) or a whole multitrack.

    Raises StemstoreError for an unknown target, an empty reason, or a target already excluded.
    """
    reason = _reason(reason)
    scope, multitrack_id, name, pair = _target(store, pair, multitrack, segment_id)
    with store.session() as s:
        active = s.scalars(
            sa.select(Exclusion).where(
                Exclusion.scope == scope,
                Exclusion.multitrack_id == multitrack_id,
                Exclusion.pair.is_(None) if pair is None else Exclusion.pair == pair,
                Exclusion.included_at.is_(None),
            )
        ).first()
        if active is not None:
            raise StemstoreError(f"already excluded: {_record(active).describe()}")
        row = Exclusion(
            scope=scope,
            multitrack_id=multitrack_id,
            multitrack=name,
            pair=pair,
            reason=reason,
            excluded_by=by or current_user(),
            excluded_at=utcnow(),
        )
        s.add(row)
        s.flush()
        record = _record(row)
    return record


def include(
    store: Store,
    exclusion_id: int,
    *,
    reason: str | None = None,
    by: str | None = None,
) -> ExclusionRecord:
    """Reverse active exclusion ``exclusion_id``: its pair or multitrack is analysed again.
    The row stays, with who included it, when and (optionally) why."""
    with store.session() as s:
        row = s.get(Exclusion, int(exclusion_id))
        if row is None:
            raise StemstoreError(f"no exclusion {exclusion_id} (list them with 'stemstore exclusions')")
        if row.included_at is not None:
            raise StemstoreError(
                f"exclusion {exclusion_id} was already reversed on {row.included_at:%Y-%m-%d}"
            )
        row.included_by = by or current_user()
        row.included_at = utcnow()
        row.include_reason = (reason or "").strip() or None
        s.flush()
        record = _record(row)
    return record


def find_active(
    store: Store, *, pair: str | None = None, multitrack: str | None = None, segment_id: int | None = None
) -> int:
    """The id of the active exclusion of a pair, multitrack or segment's pair (for ``include``)."""
    scope, multitrack_id, name, pair = _target(store, pair, multitrack, segment_id)
    same_pair = "pair IS NULL" if pair is None else "pair = :p"
    found = store.read_sql(
        "SELECT id FROM exclusions WHERE included_at IS NULL AND scope = :s AND multitrack_id = :m "
        f"AND {same_pair} ORDER BY id",
        {"s": scope, "m": multitrack_id, **({} if pair is None else {"p": pair})},
    )
    if found.empty:
        what = f"pair {pair}" if pair is not None else f"multitrack {name}"
        raise StemstoreError(f"{what} is not excluded")
    return int(found["id"].iloc[0])


def list_exclusions(store: Store, *, active_only: bool = False) -> pd.DataFrame:
    """Every exclusion (or only the active ones), oldest first, with an ``active`` flag."""
    where = "WHERE included_at IS NULL" if active_only else ""
    frame = store.read_sql(
        "SELECT id, scope, multitrack, pair, reason, excluded_by, excluded_at, included_by, "
        f"included_at, include_reason FROM exclusions {where} ORDER BY id"
    )
    frame["active"] = frame["included_at"].isna()
    return frame[COLUMNS]


def excluded_segments(store: Store, segment_ids=None) -> tuple[set[int], list[int]]:
    """(segment ids to leave out, ids of the exclusions that apply) among ``segment_ids``
    (default: every segment). A segment is left out when its pair or its multitrack is
    actively excluded."""
    hits = store.read_sql(
        """SELECT s.id AS segment_id, e.id AS exclusion_id
           FROM exclusions e
           JOIN tracks t ON t.multitrack_id = e.multitrack_id
           JOIN segments s ON s.track_id = t.id
           WHERE e.included_at IS NULL AND (e.scope = 'multitrack' OR s.pair = e.pair)"""
    )
    if segment_ids is not None:
        hits = hits[hits["segment_id"].isin(set(int(i) for i in segment_ids))]
    return set(hits["segment_id"].astype(int)), sorted(set(hits["exclusion_id"].astype(int)))


def excluded_units(store: Store) -> tuple[dict[int, int], dict[str, int]]:
    """What ``segment`` leaves out: ({multitrack id: exclusion id}, {pair: exclusion id}) of
    the active exclusions."""
    active = store.read_sql(
        "SELECT id, scope, multitrack_id, pair FROM exclusions WHERE included_at IS NULL ORDER BY id"
    )
    whole = active[active["scope"] == ExclusionScope.MULTITRACK]
    pairs = active[active["scope"] == ExclusionScope.PAIR]
    return (
        {int(m): int(i) for m, i in zip(whole["multitrack_id"], whole["id"])},
        {str(p): int(i) for p, i in zip(pairs["pair"], pairs["id"])},
    )
