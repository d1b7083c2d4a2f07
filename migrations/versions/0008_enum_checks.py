"""enum checks: status, role, kind and format columns hold only their documented values

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

The values are frozen here as this migration enforces them (stemstore/store/schema.py holds
the enums today). On DuckDB, which cannot add a CHECK constraint to an existing table, every
table is rebuilt with its rows (stemstore/store/constraints.py); nothing is lost.
"""

from alembic import op

from stemstore.store.constraints import add_checks, drop_checks

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SPLITS = ["train", "test"]
CHECKS = {
    "corpora": {"ck_corpora_format": ("format", ["medleydb", "folder", "import"])},
    "tracks": {
        "ck_tracks_kind": ("kind", ["mix", "stem", "raw"]),
        "ck_tracks_audio_status": ("audio_status", ["present", "missing", "unreadable"]),
    },
    "segments": {
        "ck_segments_role": ("role", ["raw", "stem"]),
        "ck_segments_split": ("split", SPLITS),
        "ck_segments_source": ("source", ["audio", "import"]),
        "ck_segments_status": ("status", ["pending", "extracted", "failed", "skipped"]),
    },
    "runs": {
        "ck_runs_kind": ("kind", ["import", "ingest", "segment", "extraction", "selection", "regression"]),
        "ck_runs_status": ("status", ["running", "done", "failed"]),
    },
    "run_segments": {"ck_run_segments_split": ("split", SPLITS)},
}


def upgrade() -> None:
    add_checks(op.get_bind(), CHECKS)


def downgrade() -> None:
    drop_checks(op.get_bind(), CHECKS)
