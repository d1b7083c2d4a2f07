"""The relational schema: every table of a store, as SQLAlchemy 2 typed models.

This module is the one description of the schema. Alembic migrations (``migrations/``) are
the only way a database gets it; ``tests/store/test_migrations.py`` checks that the head migration
and these models agree. Identifiers come from sequences so that the same schema works on
DuckDB (which has no SERIAL) and on PostgreSQL.

The data flows one way through the tables: corpora → multitracks → tracks → segments →
feature_values → runs (selection, regression) → their results.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from stemstore.enums import (
    AudioStatus,
    CorpusFormat,
    ExclusionScope,
    Role,
    RunKind,
    RunStatus,
    SegmentSource,
    SegmentStatus,
    Split,
    TextEnum,
    TrackKind,
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


#: The newest migration, the one whose schema is exactly these models. A store at this revision
#: opens without reading the migrations; ``tests/store/test_migrations.py`` checks that it is
#: the migrations' head, so a new migration must update it.
SCHEMA_REVISION = "0009"


class JSONText(TypeDecorator):
    """JSON kept as text: portable across DuckDB and PostgreSQL, readable in plain SQL."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def process_result_value(self, value: str | None, dialect) -> Any:
        return None if value is None else json.loads(value)


#: The CHECK constraints that hold a table's columns to their enums: table -> {constraint: (column, enum)}.
ENUM_COLUMNS: dict[str, dict[str, tuple[str, type[TextEnum]]]] = {
    "corpora": {"ck_corpora_format": ("format", CorpusFormat)},
    "tracks": {
        "ck_tracks_kind": ("kind", TrackKind),
        "ck_tracks_audio_status": ("audio_status", AudioStatus),
    },
    "segments": {
        "ck_segments_role": ("role", Role),
        "ck_segments_split": ("split", Split),
        "ck_segments_source": ("source", SegmentSource),
        "ck_segments_status": ("status", SegmentStatus),
    },
    "runs": {"ck_runs_kind": ("kind", RunKind), "ck_runs_status": ("status", RunStatus)},
    "run_segments": {"ck_run_segments_split": ("split", Split)},
    "exclusions": {"ck_exclusions_scope": ("scope", ExclusionScope)},
}


def _checks(table: str) -> tuple[sa.CheckConstraint, ...]:
    """The table's enum CHECK constraints (NULL passes a CHECK, so nullable columns stay so)."""
    return tuple(
        sa.CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in enum.values())})", name=name)
        for name, (column, enum) in ENUM_COLUMNS.get(table, {}).items()
    )


class Base(DeclarativeBase):
    pass


def _id(sequence: str) -> Mapped[int]:
    seq = sa.Sequence(sequence)
    return mapped_column(sa.BigInteger, seq, server_default=seq.next_value(), primary_key=True)


class Corpus(Base):
    """Where multitracks came from: a MedleyDB copy, a folder of sessions, an imported file."""

    __tablename__ = "corpora"
    __table_args__ = _checks("corpora")
    id: Mapped[int] = _id("corpora_id_seq")
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    root: Mapped[str | None] = mapped_column(sa.Text)
    format: Mapped[str] = mapped_column(sa.Text)  # medleydb | folder | import
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class Multitrack(Base):
    """One song: a mix, its stems and their raw tracks. Names are unique across the store."""

    __tablename__ = "multitracks"
    id: Mapped[int] = _id("multitracks_id_seq")
    corpus_id: Mapped[int] = mapped_column(sa.ForeignKey("corpora.id"))
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    artist: Mapped[str | None] = mapped_column(sa.Text)
    title: Mapped[str | None] = mapped_column(sa.Text)
    genre: Mapped[str | None] = mapped_column(sa.Text)
    origin: Mapped[str | None] = mapped_column(sa.Text)
    extra: Mapped[dict | None] = mapped_column(JSONText)  # the metadata's other top-level fields
    metadata_file: Mapped[str | None] = mapped_column(sa.Text)
    ingested_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class Instrument(Base):
    __tablename__ = "instruments"
    id: Mapped[int] = _id("instruments_id_seq")
    name: Mapped[str] = mapped_column(sa.Text, unique=True)


class Track(Base):
    """An audio file of a multitrack: its mix, a stem or a raw recording."""

    __tablename__ = "tracks"
    __table_args__ = (sa.UniqueConstraint("multitrack_id", "kind", "code"), *_checks("tracks"))
    id: Mapped[int] = _id("tracks_id_seq")
    multitrack_id: Mapped[int] = mapped_column(sa.ForeignKey("multitracks.id"))
    kind: Mapped[str] = mapped_column(sa.Text)  # mix | stem | raw
    code: Mapped[str] = mapped_column(sa.Text)  # e.g. S01, S01/R02, MIX
    instrument_id: Mapped[int | None] = mapped_column(sa.ForeignKey("instruments.id"))
    labels: Mapped[list | None] = mapped_column(JSONText)  # every label; the first is primary
    path: Mapped[str | None] = mapped_column(sa.Text)  # relative to the corpus root
    content_hash: Mapped[str | None] = mapped_column(sa.Text)
    sample_rate: Mapped[int | None] = mapped_column(sa.Integer)
    channels: Mapped[int | None] = mapped_column(sa.Integer)
    duration: Mapped[float | None] = mapped_column(sa.Float)
    audio_status: Mapped[str] = mapped_column(sa.Text, default="missing")  # present|missing|unreadable
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    stale: Mapped[bool] = mapped_column(sa.Boolean, default=False)  # the metadata no longer names it


class TrackLink(Base):
    """Which raw tracks a stem was made from."""

    __tablename__ = "track_links"
    stem_track_id: Mapped[int] = mapped_column(sa.ForeignKey("tracks.id"), primary_key=True)
    raw_track_id: Mapped[int] = mapped_column(sa.ForeignKey("tracks.id"), primary_key=True)


class TrackFile(Base):
    """What ingest last saw of a track's file: its size and modification time (ns) when it
    was hashed. If both are unchanged a re-ingest trusts ``tracks.content_hash`` instead of
    reading the file again. A side table with no foreign key (rather than columns on tracks)
    so that its migration can be downgraded on DuckDB, which cannot alter a referenced table.
    """

    __tablename__ = "track_files"
    track_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    file_size: Mapped[int] = mapped_column(sa.BigInteger)
    file_mtime_ns: Mapped[int] = mapped_column(sa.BigInteger)


class MultitrackSource(Base):
    """What ingest read to describe a multitrack: the sha256 of its METADATA.yaml (or of a
    session folder's listing and manifest). An unchanged hash lets a re-ingest skip parsing."""

    __tablename__ = "multitrack_sources"
    multitrack_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    metadata_hash: Mapped[str] = mapped_column(sa.Text)


class InstrumentGroup(Base):
    """A named set of instrument labels that an analysis runs on."""

    __tablename__ = "instrument_groups"
    id: Mapped[int] = _id("instrument_groups_id_seq")
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)


class GroupMember(Base):
    """A group's instrument label. No foreign key to the group: DuckDB cannot delete a parent
    row in the transaction that deleted its children, and a group is deleted in one."""

    __tablename__ = "group_members"
    group_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(sa.ForeignKey("instruments.id"), primary_key=True)


class Segment(Base):
    """A stretch of one track that features are computed on.

    Segments made from audio pair a stem with one of its raws (``pair`` is shared by the two);
    imported segments carry whatever pair and split their file gave. A stem that could not be
    segmented is kept as a row with status ``skipped`` and the reason.
    """

    __tablename__ = "segments"
    __table_args__ = _checks("segments")
    id: Mapped[int] = _id("segments_id_seq")
    track_id: Mapped[int] = mapped_column(sa.ForeignKey("tracks.id"))
    instrument_id: Mapped[int] = mapped_column(sa.ForeignKey("instruments.id"))
    role: Mapped[str] = mapped_column(sa.Text)  # raw | stem
    pair: Mapped[str | None] = mapped_column(sa.Text)
    split: Mapped[str | None] = mapped_column(sa.Text)  # train | test | NULL
    start: Mapped[float | None] = mapped_column(sa.Float)  # seconds
    duration: Mapped[float | None] = mapped_column(sa.Float)  # seconds
    params: Mapped[dict | None] = mapped_column(JSONText)  # window, normalisation, filter, ...
    source: Mapped[str] = mapped_column(sa.Text, default="audio")  # audio | import
    # pending → extracted | failed; skipped = no segment could be made (reason says why)
    status: Mapped[str] = mapped_column(sa.Text, default="pending")
    reason: Mapped[str | None] = mapped_column(sa.Text)
    stale: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class SegmentExtraction(Base):
    """Which extractor version computed a segment's stored feature values.

    Values of an older version than :data:`stemstore.features.EXTRACTOR_VERSION` are outdated:
    ``stemstore extract`` recomputes them and marks stale the runs that used them. Imported
    segments have no row (their values were not computed here). A side table with no foreign
    key, like track_files, so that its migration downgrades on DuckDB.
    """

    __tablename__ = "segment_extractions"
    segment_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    extractor_version: Mapped[str] = mapped_column(sa.Text)
    extracted_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class FeatureCatalog(Base):
    __tablename__ = "feature_catalogs"
    version: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    n_features: Mapped[int] = mapped_column(sa.Integer)
    loaded_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class Feature(Base):
    """One pooled feature of a catalog version (``name`` is the contract)."""

    __tablename__ = "features"
    __table_args__ = (sa.UniqueConstraint("catalog_version", "name"),)
    id: Mapped[int] = _id("features_id_seq")
    catalog_version: Mapped[str] = mapped_column(sa.ForeignKey("feature_catalogs.version"))
    position: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.Text)
    descriptor: Mapped[str] = mapped_column(sa.Text)
    statistic: Mapped[str] = mapped_column(sa.Text)  # '' for global features
    feature_index: Mapped[int | None] = mapped_column(sa.Integer)
    scope: Mapped[str] = mapped_column(sa.Text)
    frame_size: Mapped[int | None] = mapped_column(sa.Integer)
    hop_size: Mapped[int | None] = mapped_column(sa.Integer)
    computed_by: Mapped[str | None] = mapped_column(sa.Text)


class FeatureValue(Base):
    """Feature values stored long: one row per (segment, feature).

    No foreign keys here on purpose: this is the bulk table, written by Arrow inserts and
    COPY, and a segment's values are always written or deleted in one transaction.
    """

    __tablename__ = "feature_values"
    segment_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    feature_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(sa.Float(precision=53))


class Run(Base):
    """One execution of a pipeline stage, with everything needed to say what it meant."""

    __tablename__ = "runs"
    __table_args__ = _checks("runs")
    id: Mapped[int] = _id("runs_id_seq")
    kind: Mapped[str] = mapped_column(
        sa.Text
    )  # import | ingest | segment | extraction | selection | regression
    status: Mapped[str] = mapped_column(sa.Text, default="running")  # running | done | failed
    group_name: Mapped[str | None] = mapped_column(sa.Text)
    params: Mapped[dict | None] = mapped_column(JSONText)
    seed: Mapped[int | None] = mapped_column(sa.BigInteger)
    software: Mapped[dict | None] = mapped_column(JSONText)
    catalog_version: Mapped[str | None] = mapped_column(sa.Text)
    counts: Mapped[dict | None] = mapped_column(JSONText)  # e.g. non-finite values replaced
    message: Mapped[str | None] = mapped_column(sa.Text)
    stale: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime)


class RunSegment(Base):
    """The snapshot of segments a run used, so later ingests do not change what it meant."""

    __tablename__ = "run_segments"
    __table_args__ = _checks("run_segments")
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    segment_id: Mapped[int] = mapped_column(sa.ForeignKey("segments.id"), primary_key=True)
    split: Mapped[str | None] = mapped_column(sa.Text)
    excluded: Mapped[str | None] = mapped_column(sa.Text)  # e.g. 'outlier'


class SelectionFeature(Base):
    """Per run and feature: importance over the forests, rank and step membership."""

    __tablename__ = "selection_features"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    feature_id: Mapped[int] = mapped_column(sa.ForeignKey("features.id"), primary_key=True)
    importance_mean: Mapped[float] = mapped_column(sa.Float(precision=53))
    importance_sd: Mapped[float] = mapped_column(sa.Float(precision=53))
    rank: Mapped[int] = mapped_column(sa.Integer)  # 1 = most important
    in_fp1: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    in_fp2: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    in_fpred: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    pred_order: Mapped[int | None] = mapped_column(sa.Integer)  # order within f_pred


class SelectionCurve(Base):
    """Points of a selection run's curves: the CART threshold fit and the OOB error curves."""

    __tablename__ = "selection_curves"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    curve: Mapped[str] = mapped_column(sa.Text, primary_key=True)  # threshold | interpretation | prediction
    step: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    feature_id: Mapped[int | None] = mapped_column(sa.ForeignKey("features.id"))
    n_features: Mapped[int | None] = mapped_column(sa.Integer)
    value_mean: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    value_sd: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    kept: Mapped[bool | None] = mapped_column(sa.Boolean)


class RegressionModel(Base):
    """A fitted model of a regression run (an ensemble is a model too), persisted with skops."""

    __tablename__ = "regression_models"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    model: Mapped[str] = mapped_column(sa.Text, primary_key=True)  # svr | rf | knn | pls | lr | ensemble
    hyperparams: Mapped[dict | None] = mapped_column(JSONText)
    cv_scores: Mapped[dict | None] = mapped_column(JSONText)
    artifact: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # skops bytes


class RegressionMetric(Base):
    __tablename__ = "regression_metrics"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    model: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    feature_id: Mapped[int] = mapped_column(sa.ForeignKey("features.id"), primary_key=True)
    position: Mapped[int | None] = mapped_column(sa.Integer)  # the target's place in f_pred
    mape: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    mae: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    n_zero_targets: Mapped[int] = mapped_column(sa.Integer, default=0)


class RegressionPrediction(Base):
    __tablename__ = "regression_predictions"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    model: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    pair: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    feature_id: Mapped[int] = mapped_column(sa.ForeignKey("features.id"), primary_key=True)
    y_true: Mapped[float] = mapped_column(sa.Float(precision=53))
    y_pred: Mapped[float] = mapped_column(sa.Float(precision=53))


class RegressionEnsemble(Base):
    """Every candidate of the Table 7 search: a model or an average of models, with a-mape."""

    __tablename__ = "regression_ensembles"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), primary_key=True)
    candidate: Mapped[str] = mapped_column(sa.Text, primary_key=True)  # e.g. 'knn+svr'
    models: Mapped[list] = mapped_column(JSONText)
    kept_features: Mapped[list] = mapped_column(JSONText)
    a_mape: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    is_best: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class Exclusion(Base):
    """A curator's decision to leave a segment pair or a whole multitrack out of the analyses.

    ``scope`` is ``pair`` (``pair`` names it, as segments do: ``<multitrack>/<instrument>``) or
    ``multitrack``. An exclusion is reversed by including it again: ``included_at`` (who, why)
    is set and the row stays, so the history of decisions is kept. ``segment``, ``select``,
    ``regress`` and ``study`` leave out what active exclusions (``included_at IS NULL``) name,
    and record the ids they saw. No foreign key, like the other side tables, so that its
    migration downgrades on DuckDB; the multitrack's name is kept for the same reason.
    """

    __tablename__ = "exclusions"
    __table_args__ = _checks("exclusions")
    id: Mapped[int] = _id("exclusions_id_seq")
    scope: Mapped[str] = mapped_column(sa.Text)  # pair | multitrack
    multitrack_id: Mapped[int] = mapped_column(sa.BigInteger)
    multitrack: Mapped[str] = mapped_column(sa.Text)
    pair: Mapped[str | None] = mapped_column(sa.Text)  # NULL for a whole multitrack
    reason: Mapped[str] = mapped_column(sa.Text)
    excluded_by: Mapped[str] = mapped_column(sa.Text)
    excluded_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    included_by: Mapped[str | None] = mapped_column(sa.Text)
    included_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    include_reason: Mapped[str | None] = mapped_column(sa.Text)
