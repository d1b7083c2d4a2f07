"""extractor versions: segment_extractions records which extractor computed a segment's values

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Feature values computed before the extraction matched the study's Essentia configuration
(HPCP on the estimated tuning, the Hann-window mel/entropy pass, centred dynamics frames,
PoolAggregator pooling) are kept, recorded as extractor version "1": nothing is deleted here.
``stemstore status`` counts them as outdated and ``stemstore extract`` replaces them, one
segment per transaction, marking stale the runs that used them. Imported segments get no row.
"""

from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The version of every value extracted before this migration.
FIRST_EXTRACTOR_VERSION = "1"


def upgrade() -> None:
    op.create_table(
        "segment_extractions",
        sa.Column("segment_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("extractor_version", sa.Text(), nullable=False),
        sa.Column("extracted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id"),
    )
    op.execute(
        sa.text(
            "INSERT INTO segment_extractions (segment_id, extractor_version, extracted_at) "
            "SELECT id, :version, CURRENT_TIMESTAMP FROM segments "
            "WHERE status = 'extracted' AND source = 'audio'"
        ).bindparams(version=FIRST_EXTRACTOR_VERSION)
    )


def downgrade() -> None:
    op.drop_table("segment_extractions")
