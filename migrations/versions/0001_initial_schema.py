"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Every table of a store. Ids come from sequences so DuckDB and PostgreSQL share one schema.
"""

from alembic import op
import sqlalchemy as sa


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQUENCES = [
    "corpora_id_seq",
    "features_id_seq",
    "instrument_groups_id_seq",
    "instruments_id_seq",
    "multitracks_id_seq",
    "runs_id_seq",
    "segments_id_seq",
    "tracks_id_seq",
]


def upgrade() -> None:
    for name in SEQUENCES:
        op.execute(sa.schema.CreateSequence(sa.Sequence(name)))
    op.create_table(
        "corpora",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('corpora_id_seq')"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("root", sa.Text(), nullable=True),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "feature_catalogs",
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("n_features", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "feature_values",
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("feature_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", "feature_id"),
    )
    op.create_table(
        "instrument_groups",
        sa.Column(
            "id",
            sa.BigInteger(),
            server_default=sa.text("nextval('instrument_groups_id_seq')"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "instruments",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("nextval('instruments_id_seq')"), nullable=False
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('runs_id_seq')"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("group_name", sa.Text(), nullable=True),
        sa.Column("params", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("software", sa.Text(), nullable=True),
        sa.Column("catalog_version", sa.Text(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "features",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("nextval('features_id_seq')"), nullable=False
        ),
        sa.Column("catalog_version", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("descriptor", sa.Text(), nullable=False),
        sa.Column("statistic", sa.Text(), nullable=False),
        sa.Column("feature_index", sa.Integer(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("frame_size", sa.Integer(), nullable=True),
        sa.Column("hop_size", sa.Integer(), nullable=True),
        sa.Column("computed_by", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["catalog_version"],
            ["feature_catalogs.version"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("catalog_version", "name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("instrument_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
        ),
        sa.PrimaryKeyConstraint("group_id", "instrument_id"),
    )
    op.create_table(
        "multitracks",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("nextval('multitracks_id_seq')"), nullable=False
        ),
        sa.Column("corpus_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("artist", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("genre", sa.Text(), nullable=True),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("metadata_file", sa.Text(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus_id"],
            ["corpora.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "regression_ensembles",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("candidate", sa.Text(), nullable=False),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("kept_features", sa.Text(), nullable=False),
        sa.Column("a_mape", sa.Float(precision=53), nullable=True),
        sa.Column("is_best", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "candidate"),
    )
    op.create_table(
        "regression_models",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("hyperparams", sa.Text(), nullable=True),
        sa.Column("cv_scores", sa.Text(), nullable=True),
        sa.Column("artifact", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "model"),
    )
    op.create_table(
        "regression_metrics",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("feature_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("mape", sa.Float(precision=53), nullable=True),
        sa.Column("mae", sa.Float(precision=53), nullable=True),
        sa.Column("n_zero_targets", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["features.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "model", "feature_id"),
    )
    op.create_table(
        "regression_predictions",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("pair", sa.Text(), nullable=False),
        sa.Column("feature_id", sa.BigInteger(), nullable=False),
        sa.Column("y_true", sa.Float(precision=53), nullable=False),
        sa.Column("y_pred", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["features.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "model", "pair", "feature_id"),
    )
    op.create_table(
        "selection_curves",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("curve", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("feature_id", sa.BigInteger(), nullable=True),
        sa.Column("n_features", sa.Integer(), nullable=True),
        sa.Column("value_mean", sa.Float(precision=53), nullable=True),
        sa.Column("value_sd", sa.Float(precision=53), nullable=True),
        sa.Column("kept", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["features.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "curve", "step"),
    )
    op.create_table(
        "selection_features",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("feature_id", sa.BigInteger(), nullable=False),
        sa.Column("importance_mean", sa.Float(precision=53), nullable=False),
        sa.Column("importance_sd", sa.Float(precision=53), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("in_fp1", sa.Boolean(), nullable=False),
        sa.Column("in_fp2", sa.Boolean(), nullable=False),
        sa.Column("in_fpred", sa.Boolean(), nullable=False),
        sa.Column("pred_order", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["features.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "feature_id"),
    )
    op.create_table(
        "tracks",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('tracks_id_seq')"), nullable=False),
        sa.Column("multitrack_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("instrument_id", sa.BigInteger(), nullable=True),
        sa.Column("labels", sa.Text(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.Text(), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("audio_status", sa.Text(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["multitrack_id"],
            ["multitracks.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("multitrack_id", "kind", "code"),
    )
    op.create_table(
        "segments",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("nextval('segments_id_seq')"), nullable=False
        ),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("instrument_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("pair", sa.Text(), nullable=True),
        sa.Column("split", sa.Text(), nullable=True),
        sa.Column("start", sa.Float(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("params", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["tracks.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "track_links",
        sa.Column("stem_track_id", sa.BigInteger(), nullable=False),
        sa.Column("raw_track_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["raw_track_id"],
            ["tracks.id"],
        ),
        sa.ForeignKeyConstraint(
            ["stem_track_id"],
            ["tracks.id"],
        ),
        sa.PrimaryKeyConstraint("stem_track_id", "raw_track_id"),
    )
    op.create_table(
        "run_segments",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=True),
        sa.Column("excluded", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "segment_id"),
    )


def downgrade() -> None:
    op.drop_table("run_segments")
    op.drop_table("track_links")
    op.drop_table("segments")
    op.drop_table("tracks")
    op.drop_table("selection_features")
    op.drop_table("selection_curves")
    op.drop_table("regression_predictions")
    op.drop_table("regression_metrics")
    op.drop_table("regression_models")
    op.drop_table("regression_ensembles")
    op.drop_table("multitracks")
    op.drop_table("group_members")
    op.drop_table("features")
    op.drop_table("runs")
    op.drop_table("instruments")
    op.drop_table("instrument_groups")
    op.drop_table("feature_values")
    op.drop_table("feature_catalogs")
    op.drop_table("corpora")
    for name in SEQUENCES:
        op.execute(sa.schema.DropSequence(sa.Sequence(name)))
