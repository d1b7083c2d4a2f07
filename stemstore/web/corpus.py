"""What the curation pages show, read from the store a page at a time.

Every function returns DataFrames or small dicts; nothing here writes. Lists are paged in SQL
(``LIMIT``/``OFFSET`` over a stable order) and aggregate only the rows of the page, so a
store of 10,000 segments costs the same per page as one of 100. Feature values are read only
for the features a page shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stemstore.errors import StemstoreError
from stemstore.store.bulk import feature_matrix
from stemstore.store.connection import Store

PAGE_SIZE = 50
#: What the status filter offers: audio problems, segment states, stale rows, exclusions.
STATUSES = ("missing", "unreadable", "pending", "extracted", "failed", "skipped", "stale", "excluded")

_ACTIVE_EXCLUSION = """EXISTS (SELECT 1 FROM exclusions e WHERE e.included_at IS NULL
    AND e.multitrack_id = {mt} AND (e.scope = 'multitrack' OR e.pair = {pair}))"""


@dataclass
class Filters:
    """The corpus filter: each empty field means "any"."""

    group: str = ""
    instrument: str = ""
    status: str = ""
    genre: str = ""
    multitrack: str = ""

    def check(self, store: Store) -> None:
        if self.group:
            store.group_instruments(self.group)  # unknown group: StemstoreError
        if self.status and self.status not in STATUSES:
            raise StemstoreError(f"unknown status {self.status!r} (one of {', '.join(STATUSES)})")

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


@dataclass
class Page:
    rows: pd.DataFrame
    number: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def choices(store: Store) -> dict[str, list[str]]:
    """The values the filter menus offer."""
    return {
        "group": list(store.read_sql("SELECT name FROM instrument_groups ORDER BY name")["name"]),
        "instrument": list(
            store.read_sql(
                "SELECT DISTINCT i.name FROM instruments i JOIN tracks t ON t.instrument_id = i.id ORDER BY i.name"
            )["name"]
        ),
        "genre": list(
            store.read_sql("SELECT DISTINCT genre FROM multitracks WHERE genre IS NOT NULL ORDER BY genre")[
                "genre"
            ]
        ),
        "status": list(STATUSES),
    }


def _multitrack_where(f: Filters) -> tuple[str, dict]:
    where = ["c.format <> 'import'"]
    params: dict = {}
    if f.group:
        where.append(
            "EXISTS (SELECT 1 FROM tracks t JOIN group_labels g ON g.instrument_id = t.instrument_id "
            "WHERE t.multitrack_id = m.id AND g.group_name = :group)"
        )
        params["group"] = f.group
    if f.instrument:
        where.append(
            "EXISTS (SELECT 1 FROM tracks t JOIN instruments i ON i.id = t.instrument_id "
            "WHERE t.multitrack_id = m.id AND i.name = :instrument)"
        )
        params["instrument"] = f.instrument
    if f.genre:
        where.append("m.genre = :genre")
        params["genre"] = f.genre
    if f.multitrack:
        where.append("m.name = :multitrack")
        params["multitrack"] = f.multitrack
    if f.status in ("missing", "unreadable"):
        where.append(
            "EXISTS (SELECT 1 FROM tracks t WHERE t.multitrack_id = m.id AND t.audio_status = :status)"
        )
        params["status"] = f.status
    elif f.status in ("pending", "extracted", "failed", "skipped"):
        where.append(
            "EXISTS (SELECT 1 FROM segments s JOIN tracks t ON t.id = s.track_id "
            "WHERE t.multitrack_id = m.id AND s.status = :status AND NOT s.stale)"
        )
        params["status"] = f.status
    elif f.status == "stale":
        where.append(
            "(EXISTS (SELECT 1 FROM tracks t WHERE t.multitrack_id = m.id AND t.stale) OR EXISTS "
            "(SELECT 1 FROM segments s JOIN tracks t ON t.id = s.track_id WHERE t.multitrack_id = m.id AND s.stale))"
        )
    elif f.status == "excluded":
        where.append(
            "EXISTS (SELECT 1 FROM exclusions e WHERE e.included_at IS NULL AND e.multitrack_id = m.id)"
        )
    return " AND ".join(where), params


def multitracks(store: Store, f: Filters, page: int = 1) -> Page:
    """One page of multitracks matching ``f``: instruments, stem/raw counts, audio status,
    segment status, stale flags and exclusions."""
    where, params = _multitrack_where(f)
    base = f"FROM multitracks m JOIN corpora c ON c.id = m.corpus_id WHERE {where}"
    total = int(store.read_sql(f"SELECT COUNT(*) AS n {base}", params)["n"].iloc[0])
    page = max(1, min(page, max(1, -(-total // PAGE_SIZE))))
    rows = store.read_sql(
        f"SELECT m.id, m.name, m.genre, c.name AS corpus {base} ORDER BY m.name "
        f"LIMIT {PAGE_SIZE} OFFSET {(page - 1) * PAGE_SIZE}",
        params,
    )
    if rows.empty:
        return Page(rows, page, total)
    ids = ", ".join(str(int(i)) for i in rows["id"])
    tracks = store.read_sql(
        f"""SELECT t.multitrack_id AS id, t.kind, t.audio_status, t.status_reason, t.code, t.stale,
                   i.name AS instrument
            FROM tracks t LEFT JOIN instruments i ON i.id = t.instrument_id
            WHERE t.multitrack_id IN ({ids})"""
    )
    segments = store.read_sql(
        f"""SELECT t.multitrack_id AS id, s.status, s.stale FROM segments s
            JOIN tracks t ON t.id = s.track_id WHERE t.multitrack_id IN ({ids})"""
    )
    excluded = store.read_sql(
        f"""SELECT multitrack_id AS id, scope, COUNT(*) AS n FROM exclusions
            WHERE included_at IS NULL AND multitrack_id IN ({ids}) GROUP BY multitrack_id, scope"""
    )
    out = []
    for row in rows.itertuples(index=False):
        mt = tracks[tracks["id"] == row.id]
        seg = segments[segments["id"] == row.id]
        exc = excluded[excluded["id"] == row.id]
        problems = mt[mt["audio_status"] != "present"]
        out.append(
            {
                "id": int(row.id),
                "name": row.name,
                "genre": row.genre,
                "instruments": ", ".join(sorted(set(mt.loc[mt["kind"] == "stem", "instrument"].dropna()))),
                "stems": int((mt["kind"] == "stem").sum()),
                "raws": int((mt["kind"] == "raw").sum()),
                "audio": {
                    s: int((mt["audio_status"] == s).sum()) for s in ("present", "missing", "unreadable")
                },
                "problems": [
                    f"{p.code}: {p.audio_status} ({p.status_reason})" for p in problems.itertuples()
                ],
                "segments": {
                    s: int(((seg["status"] == s) & ~seg["stale"].astype(bool)).sum())
                    for s in ("pending", "extracted", "failed", "skipped")
                },
                "stale": int(mt["stale"].astype(bool).sum()) + int(seg["stale"].astype(bool).sum()),
                "excluded": "whole"
                if (exc["scope"] == "multitrack").any()
                else int(exc.loc[exc["scope"] == "pair", "n"].sum()),
            }
        )
    return Page(pd.DataFrame(out), page, total)


def pairs(store: Store, f: Filters, page: int = 1) -> Page:
    """One page of current segment pairs (one row per stem segment) matching ``f``."""
    where = ["s.role = 'stem'", "s.pair IS NOT NULL", "c.format <> 'import'"]
    params: dict = {}
    if f.status != "stale":
        where.append("NOT s.stale")
    if f.group:
        where.append("s.instrument_id IN (SELECT instrument_id FROM group_labels WHERE group_name = :group)")
        params["group"] = f.group
    if f.instrument:
        where.append("i.name = :instrument")
        params["instrument"] = f.instrument
    if f.genre:
        where.append("m.genre = :genre")
        params["genre"] = f.genre
    if f.multitrack:
        where.append("m.name = :multitrack")
        params["multitrack"] = f.multitrack
    if f.status in ("pending", "extracted", "failed", "skipped"):
        where.append("s.status = :status")
        params["status"] = f.status
    elif f.status in ("missing", "unreadable"):
        where.append("t.audio_status = :status")
        params["status"] = f.status
    elif f.status == "stale":
        where.append("s.stale")
    excluded = _ACTIVE_EXCLUSION.format(mt="t.multitrack_id", pair="s.pair")
    if f.status == "excluded":
        where.append(excluded)
    base = (
        "FROM segments s JOIN tracks t ON t.id = s.track_id JOIN multitracks m ON m.id = t.multitrack_id "
        "JOIN corpora c ON c.id = m.corpus_id JOIN instruments i ON i.id = s.instrument_id "
        "WHERE " + " AND ".join(where)
    )
    total = int(store.read_sql(f"SELECT COUNT(*) AS n {base}", params)["n"].iloc[0])
    page = max(1, min(page, max(1, -(-total // PAGE_SIZE))))
    rows = store.read_sql(
        f"SELECT s.id, s.pair, m.name AS multitrack, i.name AS instrument, t.code, s.start, s.duration, "
        f"s.status, s.stale, CASE WHEN {excluded} THEN 1 ELSE 0 END AS excluded {base} "
        f"ORDER BY m.name, i.name, s.id LIMIT {PAGE_SIZE} OFFSET {(page - 1) * PAGE_SIZE}",
        params,
    )
    return Page(rows, page, total)


def multitrack(store: Store, multitrack_id: int) -> dict:
    """A multitrack, its tracks (with audio status) and its active exclusion, if any."""
    found = store.read_sql(
        "SELECT m.id, m.name, m.artist, m.title, m.genre, c.name AS corpus FROM multitracks m "
        "JOIN corpora c ON c.id = m.corpus_id WHERE m.id = :i",
        {"i": int(multitrack_id)},
    )
    if found.empty:
        raise LookupError(multitrack_id)
    tracks = store.read_sql(
        "SELECT t.id, t.kind, t.code, i.name AS instrument, t.duration, t.audio_status, t.status_reason, "
        "t.stale FROM tracks t LEFT JOIN instruments i ON i.id = t.instrument_id "
        "WHERE t.multitrack_id = :i ORDER BY t.code",
        {"i": int(multitrack_id)},
    )
    exclusion = store.read_sql(
        "SELECT id, reason, excluded_by, excluded_at FROM exclusions WHERE included_at IS NULL "
        "AND scope = 'multitrack' AND multitrack_id = :i",
        {"i": int(multitrack_id)},
    )
    return {
        "multitrack": found.iloc[0].to_dict(),
        "tracks": tracks,
        "exclusion": None if exclusion.empty else exclusion.iloc[0].to_dict(),
    }


# -- one pair ---------------------------------------------------------------------------------
_SEGMENT_SQL = """
SELECT s.id, s.track_id, s.role, s.pair, s.start, s.duration, s.params, s.status, s.reason,
       s.stale, s.source, t.code, t.multitrack_id, m.name AS multitrack, i.name AS instrument,
       s.instrument_id, t.audio_status, t.status_reason
FROM segments s JOIN tracks t ON t.id = s.track_id JOIN multitracks m ON m.id = t.multitrack_id
JOIN instruments i ON i.id = s.instrument_id
"""


def _params(value) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def segment(store: Store, segment_id: int) -> dict:
    """One segment row with its track and parsed ``params``; LookupError when there is none."""
    found = store.read_sql(_SEGMENT_SQL + "WHERE s.id = :i", {"i": int(segment_id)})
    if found.empty:
        raise LookupError(segment_id)
    row = found.iloc[0].to_dict()
    row["params"] = _params(row["params"])
    return row


def pair(store: Store, segment_id: int) -> dict:
    """The pair of segment ``segment_id``: {"stem": row, "raw": row or None, "exclusion": ...}.

    The partner is the other role's segment of the same pair, preferably made by the same
    segment run and current."""
    this = segment(store, segment_id)
    if this["pair"] is None or pd.isna(this["pair"]):
        raise LookupError(segment_id)
    others = store.read_sql(
        _SEGMENT_SQL + "WHERE s.pair = :p AND s.role <> :r ORDER BY s.id DESC",
        {"p": this["pair"], "r": this["role"]},
    )
    partner = None
    if not others.empty:
        others["params"] = [_params(p) for p in others["params"]]
        same_run = [p.get("run") == this["params"].get("run") for p in others["params"]]
        same_stale = (others["stale"].astype(bool) == bool(this["stale"])).to_numpy()
        score = np.array(same_run, dtype=int) * 2 + same_stale.astype(int)
        partner = others.iloc[int(np.argmax(score))].to_dict()
    stem, raw = (this, partner) if this["role"] == "stem" else (partner, this)
    exclusion = store.read_sql(
        "SELECT id, scope, reason, excluded_by, excluded_at FROM exclusions WHERE included_at IS NULL "
        "AND multitrack_id = :m AND (scope = 'multitrack' OR pair = :p) ORDER BY id",
        {"m": int(this["multitrack_id"]), "p": this["pair"]},
    )
    return {
        "stem": stem,
        "raw": raw,
        "pair": this["pair"],
        "exclusions": exclusion.to_dict("records"),
    }


def groups_of(store: Store, instrument_id: int) -> list[str]:
    return list(
        store.read_sql(
            "SELECT group_name FROM group_labels WHERE instrument_id = :i ORDER BY group_name",
            {"i": int(instrument_id)},
        )["group_name"]
    )


def feature_set(store: Store, group: str) -> tuple[str, list[str]]:
    """(where from, names): the f_pred of the group's latest finished selection run."""
    from stemstore.analysis.selection_runs import latest_selection_run

    run_id = latest_selection_run(store, group)
    names = store.read_sql(
        "SELECT f.name FROM selection_features sf JOIN features f ON f.id = sf.feature_id "
        "WHERE sf.run_id = :r AND sf.in_fpred ORDER BY sf.pred_order, f.position",
        {"r": run_id},
    )["name"].tolist()
    return f"f_pred of selection run {run_id}", names


def pair_values(store: Store, stem_id: int, raw_id: int | None, group: str, names: list[str]) -> pd.DataFrame:
    """Per feature: the pair's raw and stem values, and the group's raw and stem distributions
    (median and 10th–90th percentiles over its current extracted segments)."""
    if not names:
        return pd.DataFrame()
    ids = [i for i in (stem_id, raw_id) if i is not None]
    own = feature_matrix(store, segment_ids=ids, features=names)
    everyone = feature_matrix(store, group=group, features=names)
    rows = []
    for name in names:
        row = {"feature": name}
        for role, sid in (("raw", raw_id), ("stem", stem_id)):
            row[role] = float(own.at[sid, name]) if sid is not None and sid in own.index else np.nan
            values = everyone.loc[everyone["role"] == role, name].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            q = np.percentile(values, [10, 50, 90]) if values.size else [np.nan] * 3
            row[f"group_{role}_p10"], row[f"group_{role}_median"], row[f"group_{role}_p90"] = q
            row[f"group_{role}_n"] = int(values.size)
        rows.append(row)
    return pd.DataFrame(rows)


def runs(store: Store, group: str) -> pd.DataFrame:
    """The group's finished selection and regression runs, newest first."""
    return store.read_sql(
        "SELECT id, kind, status, stale, started_at, params FROM runs WHERE group_name = :g "
        "AND kind IN ('selection', 'regression') AND status = 'done' ORDER BY id DESC",
        {"g": group},
    )
