"""Feature tables in and out of a store: the wide DataFrame every analysis reads, and the
CSV/Parquet files ``import-features`` and ``export features`` move.

The wide format (one row per segment) is the library's boundary::

    multitrack, instrument, role (raw|stem), pair, split (train|test), <feature names...>

An export imports back unchanged; values round-trip bit-exact (float64).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from stemstore.errors import StemstoreError, check_output_path, write_error
from stemstore.store.schema import Corpus, Multitrack, Segment, Track, utcnow
from stemstore.store.connection import Store, instrument_ids
from stemstore.enums import AudioStatus, CorpusFormat, Role, RunKind, SegmentSource, SegmentStatus, Split

META_COLUMNS = ["multitrack", "instrument", "role", "pair", "split"]
REQUIRED_COLUMNS = ["multitrack", "instrument", "role"]
IMPORT_CORPUS = "imported"
#: Tokens a numeric cell may hold besides numbers (what an export writes for NaN and inf).
NON_FINITE_TOKENS = {"nan", "inf", "-inf", "+inf", "NaN", "Inf", "-Inf", "infinity", "-infinity"}


# -- reading segments ---------------------------------------------------------------------------
def segment_table(
    store: Store,
    *,
    group: str | None = None,
    instruments: list[str] | None = None,
    segment_ids: list[int] | None = None,
    conn: sa.Connection | None = None,
) -> pd.DataFrame:
    """The extracted, current segments of a group or of instrument labels, with their labels.

    Columns: segment_id, multitrack, instrument, role, pair, split.
    """
    sql, params = _segment_sql(store, group=group, instruments=instruments, segment_ids=segment_ids)
    query = sa.text(sql)
    if conn is None:
        return store.read_sql(query, params)
    result = conn.execute(query, params)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _segment_sql(store: Store, *, group, instruments, segment_ids, ids_only: bool = False):
    labels: list[str] = []
    if group is not None:
        labels += store.group_instruments(group)
    if instruments:
        labels += instruments
    where = ["s.status = 'extracted'", "NOT s.stale"]
    params: dict = {}
    if group is not None or instruments:
        where.append("i.name IN (" + ", ".join(f":l{k}" for k in range(len(labels))) + ")")
        params.update({f"l{k}": v for k, v in enumerate(labels)})
    if segment_ids is not None:
        where.append("s.id IN (" + (", ".join(str(int(i)) for i in segment_ids) or "NULL") + ")")
    columns = (
        "s.id"
        if ids_only
        else "s.id AS segment_id, m.name AS multitrack, i.name AS instrument, s.role, s.pair, s.split"
    )
    sql = (
        f"SELECT {columns} FROM segments s JOIN tracks t ON t.id = s.track_id "
        "JOIN multitracks m ON m.id = t.multitrack_id JOIN instruments i ON i.id = s.instrument_id "
        "WHERE " + " AND ".join(where)
    )
    if not ids_only:
        sql += " ORDER BY m.name, i.name, s.pair, s.role, s.id"
    return sql, params


def feature_matrix(
    store: Store,
    *,
    group: str | None = None,
    instruments: list[str] | None = None,
    features: list[str] | None = None,
    segment_ids: list[int] | None = None,
    complete: bool = False,
) -> pd.DataFrame:
    """A wide DataFrame: one row per segment, META_COLUMNS then one float64 column per feature.

    ``features`` picks columns in that order; by default every catalog feature that has a value
    for any of the segments, in catalog order (``complete=True``: for all of them). Values are
    as stored; NaN where a segment has no value for a feature.
    """
    if group is None and not instruments and segment_ids is None:
        raise StemstoreError("say which segments: a group, instruments or segment ids")
    catalog = store.features
    feature_ids = store.feature_ids(features) if features else None
    with store.engine.connect() as conn:
        segments = segment_table(
            store, group=group, instruments=instruments, segment_ids=segment_ids, conn=conn
        )
        ids_sql, params = _segment_sql(
            store, group=group, instruments=instruments, segment_ids=segment_ids, ids_only=True
        )
        long = store.read_long_values(conn, ids_sql, params, feature_ids)
    if feature_ids is None:
        present = np.unique(long["feature_id"].to_numpy())
        if complete and len(segments):
            counts = long.groupby("feature_id").size()
            present = counts.index[counts.to_numpy() == len(segments)].to_numpy()
        columns = catalog[catalog["id"].isin(present)]  # catalog order
        feature_ids, names = columns["id"].to_numpy(), list(columns["name"])
    else:
        names = list(features)
    values = np.full((len(segments), len(feature_ids)), np.nan)
    if len(long) and len(segments):
        row_of = pd.Series(np.arange(len(segments)), index=segments["segment_id"].to_numpy())
        col_of = pd.Series(np.arange(len(feature_ids)), index=feature_ids)
        rows = row_of.reindex(long["segment_id"].to_numpy()).to_numpy()
        cols = col_of.reindex(long["feature_id"].to_numpy()).to_numpy()
        keep = ~(np.isnan(rows) | np.isnan(cols))
        values[rows[keep].astype(np.int64), cols[keep].astype(np.int64)] = long["value"].to_numpy()[keep]
    meta = segments.set_index("segment_id")
    return pd.concat([meta, pd.DataFrame(values, columns=names, index=meta.index)], axis=1)


# -- import -------------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    rows: int
    new_segments: int
    unchanged_segments: int
    values_added: int
    multitracks_created: int
    features: int

    def describe(self) -> str:
        if self.new_segments == 0 and self.values_added == 0:
            return (
                f"nothing new: all {self.rows} rows are already stored with the same values "
                "(the store is unchanged)"
            )
        return (
            f"imported {self.rows} rows × {self.features} features: {self.new_segments} new segments, "
            f"{self.unchanged_segments} already stored, {self.values_added} values added, "
            f"{self.multitracks_created} new multitracks"
        )


def read_feature_file(path: Path) -> pd.DataFrame:
    """Read and validate a wide feature file (CSV or Parquet). Every problem is one
    StemstoreError naming the file, and the row and column where it can."""
    path = Path(path)
    if not path.is_file():
        raise StemstoreError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise StemstoreError(f"{path}: unknown file type {path.suffix!r} (use .csv or .parquet)")
    except StemstoreError:
        raise
    except Exception as exc:
        raise StemstoreError(f"{path}: cannot read it: {str(exc).splitlines()[0]}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise StemstoreError(f"{path}: missing required column(s): {', '.join(missing)}")
    dupes = sorted(set(raw.columns[raw.columns.duplicated()]))
    if dupes:
        raise StemstoreError(f"{path}: column(s) appear twice: {', '.join(dupes)}")
    if raw.empty:
        raise StemstoreError(f"{path}: no rows")
    feature_cols = [c for c in raw.columns if c not in META_COLUMNS]
    if not feature_cols:
        raise StemstoreError(f"{path}: no feature columns (after {', '.join(META_COLUMNS)})")

    def where(i: int) -> str:  # a person's row number: the CSV line, or the Parquet row
        return f"{path}: line {i + 2}" if path.suffix.lower() != ".parquet" else f"{path}: row {i + 1}"

    meta = pd.DataFrame(index=raw.index)
    for col in META_COLUMNS:
        if col in raw.columns:
            meta[col] = raw[col].astype("string").fillna("").str.strip()
            if path.suffix.lower() != ".parquet":
                meta[col] = unescape_formulas(meta[col])  # as export features wrote them
        else:
            meta[col] = ""
    for col in REQUIRED_COLUMNS:
        empty = np.flatnonzero((meta[col] == "").to_numpy())
        if len(empty):
            raise StemstoreError(f"{where(int(empty[0]))}: empty {col}")
    bad_role = np.flatnonzero(~meta["role"].isin(Role.values()).to_numpy())
    if len(bad_role):
        i = int(bad_role[0])
        raise StemstoreError(f"{where(i)}: role {meta['role'].iloc[i]!r} is neither 'raw' nor 'stem'")
    bad_split = np.flatnonzero(~meta["split"].isin([*Split.values(), ""]).to_numpy())
    if len(bad_split):
        i = int(bad_split[0])
        raise StemstoreError(f"{where(i)}: split {meta['split'].iloc[i]!r} is neither 'train' nor 'test'")
    key = meta[["multitrack", "instrument", "role", "pair"]]
    dup = np.flatnonzero(key.duplicated(keep="first").to_numpy())
    if len(dup):
        i = int(dup[0])
        raise StemstoreError(
            f"{where(i)}: repeats the segment (multitrack, instrument, role, pair) "
            f"{tuple(key.iloc[i])} of an earlier row"
        )
    paired = meta[meta["pair"] != ""]
    if len(paired):
        per_role = paired.groupby(["pair", "role"]).size()  # vectorised: files hold 100k rows
        if (per_role > 1).any():
            raise StemstoreError(
                f"{path}: pair {per_role[per_role > 1].index[0][0]!r} has more than one "
                "segment of the same role (a pair is one raw and one stem)"
            )

    values = {}
    for col in feature_cols:
        column = raw[col]
        if column.dtype.kind in "fi":
            values[col] = column.astype(np.float64).to_numpy()
            nulls = np.flatnonzero(column.isna().to_numpy())
            if len(nulls) and path.suffix.lower() == ".parquet":
                raise StemstoreError(f"{where(int(nulls[0]))}, column {col}: empty value")
            continue
        text = column.astype("string").fillna("").str.strip()
        numbers = pd.to_numeric(text.where(~text.isin(NON_FINITE_TOKENS), "nan"), errors="coerce")
        empty = np.flatnonzero((text == "").to_numpy())
        if len(empty):
            raise StemstoreError(f"{where(int(empty[0]))}, column {col}: empty value")
        bad = np.flatnonzero((numbers.isna() & ~text.isin(NON_FINITE_TOKENS)).to_numpy())
        if len(bad):
            i = int(bad[0])
            raise StemstoreError(f"{where(i)}, column {col}: {text.iloc[i]!r} is not a number")
        values[col] = _parse_exact(text)
    return pd.concat(
        [meta.replace({"pair": {"": None}, "split": {"": None}}), pd.DataFrame(values, index=raw.index)],
        axis=1,
    )


#: What a spreadsheet takes for the start of a formula in a CSV cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with text cells that a spreadsheet would evaluate (``=1+1``, ``@SUM(..)``)
    prefixed with ``'``, which spreadsheets show as text. Numbers, and text that is a number
    (``-1.5``), are left as they are; :func:`unescape_formulas` undoes it."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind not in "OSU" and not isinstance(out[col].dtype, pd.StringDtype):
            continue
        text = out[col]
        risky = text.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS) and not _is_number(v))
        if risky.any():
            out[col] = text.where(~risky, "'" + text.astype(str))
    return out


def unescape_formulas(text: pd.Series) -> pd.Series:
    """Undo :func:`escape_formulas` on a column of text."""
    escaped = text.str.startswith("'") & text.str[1:2].isin(list(FORMULA_STARTS))
    return text.where(~escaped, text.str[1:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_exact(text: pd.Series) -> np.ndarray:
    """Decimal text to float64 with correct rounding (Python's float(), as repr wrote it)."""
    return np.array([float(v) for v in text.to_numpy()], dtype=np.float64)


def import_features(store: Store, path: Path) -> ImportSummary:
    """Import a wide feature file in one transaction (see :func:`read_feature_file`).

    Creates the multitracks, tracks and segments it needs (no audio: status missing). Rows
    already stored with the same values change nothing; a row whose stored values differ is
    an error and nothing is written.
    """
    path = Path(path)
    table = read_feature_file(path)
    feature_cols = [c for c in table.columns if c not in META_COLUMNS]
    feature_ids = store.feature_ids(feature_cols)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with store.session() as s:
        conn = s.connection()
        corpus = s.scalar(sa.select(Corpus).where(Corpus.name == IMPORT_CORPUS))
        if corpus is None:
            corpus = Corpus(name=IMPORT_CORPUS, format=CorpusFormat.IMPORT, root=None)
            s.add(corpus)
            s.flush()
        # multitracks, then one track per (multitrack, role, instrument), created in bulk.
        # Stored keys are read whole and matched here, never sent as a list of parameters
        # (PostgreSQL takes at most 65535, and files hold 100k rows).
        names = list(dict.fromkeys(table["multitrack"]))
        stored_mts = _multitracks(store, conn)
        _refuse_ingested_names(path, table, stored_mts, s)
        mt_ids = dict(zip(stored_mts["name"], stored_mts["id"]))
        new_mts = [n for n in names if n not in mt_ids]
        store.bulk_insert(
            conn,
            "multitracks",
            pd.DataFrame(
                {
                    "corpus_id": corpus.id,
                    "name": new_mts,
                    "origin": f"import {path.name}",
                    "ingested_at": utcnow(),
                }
            ),
        )
        mt_ids = dict(_multitracks(store, conn)[["name", "id"]].itertuples(index=False))
        inst_ids = instrument_ids(s, table["instrument"])

        wanted = table[["multitrack", "role", "instrument"]].drop_duplicates()
        wanted = wanted.assign(
            multitrack_id=wanted["multitrack"].map(mt_ids),
            code="import/" + wanted["role"] + "/" + wanted["instrument"],
        )

        def import_tracks() -> pd.DataFrame:
            found = _read_frame(
                store,
                conn,
                sa.select(Track.multitrack_id, Track.code, Track.id).where(Track.code.like("import/%")),
                ["multitrack_id", "code", "track_id"],
            )
            return wanted.merge(found, on=["multitrack_id", "code"], how="left")

        tracks = import_tracks()
        missing = tracks[tracks["track_id"].isna()]
        store.bulk_insert(
            conn,
            "tracks",
            pd.DataFrame(
                {
                    "multitrack_id": missing["multitrack_id"].astype(np.int64),
                    "kind": missing["role"],
                    "code": missing["code"],
                    "instrument_id": missing["instrument"].map(inst_ids).astype(np.int64),
                    "labels": [json.dumps([i]) for i in missing["instrument"]],
                    "audio_status": AudioStatus.MISSING,
                    "status_reason": "imported values only",
                    "stale": False,
                }
            ),
        )
        if len(missing):
            tracks = import_tracks()
        track_ids = {
            (m, r, i): int(t)
            for m, r, i, t in zip(
                tracks["multitrack"], tracks["role"], tracks["instrument"], tracks["track_id"]
            )
        }

        table_track = np.array(
            [track_ids[k] for k in zip(table["multitrack"], table["role"], table["instrument"])]
        )
        keyed = pd.DataFrame({"track_id": table_track, "pair": table["pair"].fillna("").to_numpy()})

        def stored_segment_ids() -> np.ndarray:
            """Each row's segment id (NaN where the segment is not stored yet)."""
            stored = _read_frame(
                store,
                conn,
                sa.select(Segment.id, Segment.track_id, Segment.pair).where(
                    Segment.source == SegmentSource.IMPORT
                ),
                ["segment_id", "track_id", "pair"],
            )
            stored["pair"] = stored["pair"].fillna("")
            return keyed.merge(stored, on=["track_id", "pair"], how="left")["segment_id"].to_numpy(
                dtype=float
            )

        segment_ids = stored_segment_ids()
        is_new = np.isnan(segment_ids)
        new_rows = table[is_new]
        if len(new_rows):
            store.bulk_insert(
                conn,
                "segments",
                pd.DataFrame(
                    {
                        "track_id": table_track[is_new].astype(np.int64),
                        "instrument_id": new_rows["instrument"].map(inst_ids).astype(np.int64).to_numpy(),
                        "role": new_rows["role"].to_numpy(),
                        "pair": new_rows["pair"].to_numpy(dtype=object),
                        "split": new_rows["split"].to_numpy(dtype=object),
                        "source": SegmentSource.IMPORT,
                        "status": SegmentStatus.EXTRACTED,
                        "stale": False,
                        "created_at": utcnow(),
                    }
                ),
            )
            segment_ids = stored_segment_ids()
        segment_ids = segment_ids.astype(np.int64)

        matrix = table[feature_cols].to_numpy(dtype=np.float64)
        to_insert = np.ones_like(matrix, dtype=bool)
        if (~is_new).any():
            old, have = stored_values(store, conn, segment_ids[~is_new], feature_ids)
            new = matrix[~is_new]
            same = (old == new) | (np.isnan(old) & np.isnan(new))
            conflict = have & ~same
            if conflict.any():
                r, c = (int(x[0]) for x in np.nonzero(conflict))
                row = np.flatnonzero(~is_new)[r]
                raise StemstoreError(
                    f"{path}: line {row + 2} ({table['multitrack'].iloc[row]}, {table['role'].iloc[row]}) "
                    f"is already stored with a different {feature_cols[c]} ({old[r, c]!r} here {new[r, c]!r}); "
                    "nothing was imported"
                )
            to_insert[~is_new] = ~have
        rows, cols = np.nonzero(to_insert)
        long = pd.DataFrame(
            {"segment_id": segment_ids[rows], "feature_id": feature_ids[cols], "value": matrix[rows, cols]}
        )
        store.bulk_insert(conn, "feature_values", long)
        summary = ImportSummary(
            rows=len(table),
            new_segments=int(is_new.sum()),
            unchanged_segments=int((~is_new).sum()),
            values_added=len(long),
            multitracks_created=len(new_mts),
            features=len(feature_cols),
        )
    if summary.values_added:
        run_id = store.start_run(
            RunKind.IMPORT,
            params={"file": str(path), "sha256": digest, "rows": len(table), "features": len(feature_cols)},
        )
        store.finish_run(
            run_id, counts={"new_segments": summary.new_segments, "values_added": summary.values_added}
        )
    return summary


def _multitracks(store: Store, conn) -> pd.DataFrame:
    """Every stored multitrack: name, id and its corpus's format."""
    return _read_frame(
        store,
        conn,
        sa.select(Multitrack.name, Multitrack.id, Corpus.format).join(
            Corpus, Corpus.id == Multitrack.corpus_id
        ),
        ["name", "id", "format"],
    )


def _read_frame(store: Store, conn, query, columns: list[str]) -> pd.DataFrame:
    """A query's rows as a DataFrame, in ``conn``'s transaction, read through the driver
    (building 100k rows from SQLAlchemy's row objects takes seconds)."""
    compiled = str(query.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.driver_connection
    if store.dialect == "duckdb":
        return raw.execute(compiled).df().set_axis(columns, axis=1)
    with raw.cursor() as cursor:  # plain tuples: pandas probes SQLAlchemy's rows slowly
        cursor.execute(compiled)
        return pd.DataFrame(cursor.fetchall(), columns=columns)


def _refuse_ingested_names(path: Path, table: pd.DataFrame, stored: pd.DataFrame, s) -> None:
    """Imported values need names of their own: a row naming an ingested multitrack, or a pair
    that ingested audio's segments use, would mix with what the pipeline made from that audio
    (analyses would then pair and select on the wrong rows)."""
    ingested = set(stored.loc[stored["format"] != CorpusFormat.IMPORT, "name"])
    clash = np.flatnonzero(table["multitrack"].isin(ingested).to_numpy())
    what = "multitrack"
    if not len(clash):
        pairs = set(
            s.execute(
                sa.select(Segment.pair)
                .where(Segment.source != SegmentSource.IMPORT, Segment.pair.is_not(None))
                .distinct()
            ).scalars()
        )
        clash = np.flatnonzero(table["pair"].isin(pairs).to_numpy())
        what = "pair"
    if len(clash):
        i = int(clash[0])
        where = f"line {i + 2}" if path.suffix.lower() != ".parquet" else f"row {i + 1}"
        name = table["multitrack" if what == "multitrack" else "pair"].iloc[i]
        raise StemstoreError(
            f"{path}: {where}: {what} {name!r} is ingested audio's; imported values need "
            "multitrack and pair names of their own; nothing was imported"
        )


def stored_values(
    store: Store, conn, segment_ids: np.ndarray, feature_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stored values of segments × features, and where a value is stored at all."""
    values = np.full((len(segment_ids), len(feature_ids)), np.nan)
    present = np.zeros(values.shape, dtype=bool)
    if not len(segment_ids):
        return values, present
    ids_sql = "SELECT id FROM segments WHERE id IN (" + ",".join(str(int(i)) for i in segment_ids) + ")"
    long = store.read_long_values(conn, ids_sql, {}, feature_ids)
    rows = pd.Series(np.arange(len(segment_ids)), index=segment_ids).reindex(long["segment_id"]).to_numpy()
    cols = pd.Series(np.arange(len(feature_ids)), index=feature_ids).reindex(long["feature_id"]).to_numpy()
    values[rows, cols] = long["value"].to_numpy()
    present[rows, cols] = True
    return values, present


# -- export -------------------------------------------------------------------------------------
def export_features(
    store: Store,
    path: Path,
    *,
    group: str | None = None,
    instruments: list[str] | None = None,
    features: list[str] | None = None,
    raw_csv: bool = False,
) -> pd.DataFrame:
    """Write a wide file that ``import-features`` reads back bit-exact. Returns what was written.

    By default the columns are the features every selected segment has a value for. In a CSV,
    text that a spreadsheet would run as a formula is escaped (see :func:`escape_formulas`;
    ``import-features`` undoes it) unless ``raw_csv``.
    """
    path = check_output_path(path, (".csv", ".parquet"))
    suffix = path.suffix.lower()
    if not path.parent.is_dir():
        raise StemstoreError(f"{path}: the directory {path.parent} does not exist")
    wide = feature_matrix(store, group=group, instruments=instruments, features=features, complete=True)
    if wide.empty:
        what = f"group {group!r}" if group else "instrument(s) " + ", ".join(instruments or [])
        raise StemstoreError(f"no extracted segments for {what}: nothing to export")
    feature_cols = [c for c in wide.columns if c not in META_COLUMNS]
    gaps = [c for c in feature_cols if wide[c].isna().any()]
    if features and gaps:
        raise StemstoreError(f"feature(s) without a value for every segment: {', '.join(gaps[:10])}")
    out = wide.reset_index(drop=True)
    for optional in ("pair", "split"):
        if out[optional].isna().all():
            out = out.drop(columns=optional)
    try:
        if suffix == ".csv":
            # %.17g round-trips every float64 exactly
            written = out if raw_csv else escape_formulas(out)
            written.to_csv(path, index=False, float_format="%.17g", na_rep="nan")
        else:
            out.to_parquet(path, index=False)
    except OSError as exc:
        raise write_error(path, exc) from exc
    return out
