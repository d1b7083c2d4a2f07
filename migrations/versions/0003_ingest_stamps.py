"""ingest stamps: track_files (size, mtime), multitrack_sources (metadata hash), corpus_status

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A re-ingest skips re-hashing a file whose size and modification time are unchanged, and
re-parsing a multitrack whose metadata hash is unchanged. These stamps live in side tables
rather than columns of tracks/multitracks because DuckDB cannot drop a column of a table that
other tables reference, and the downgrade must work on both backends. table2 is recreated
because its file changed (tracks of imported feature files are excluded by code too).
"""
from alembic import op
import sqlalchemy as sa

from stemstore.views import create_view, drop_view

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_files",
        sa.Column("track_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("file_mtime_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("track_id"),
    )
    op.create_table(
        "multitrack_sources",
        sa.Column("multitrack_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("metadata_hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("multitrack_id"),
    )
    create_view(op, "table2")
    create_view(op, "corpus_status")


def downgrade() -> None:
    drop_view(op, "corpus_status")
    op.drop_table("multitrack_sources")
    op.drop_table("track_files")
    create_view(op, "table2")
