"""exclusions: segment pairs and multitracks a curator left out of the analyses

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

A new table and its id sequence; nothing existing changes. An exclusion is reversed by
setting ``included_at``, so the table keeps every decision (who, when, why).
"""

from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("exclusions_id_seq")))
    op.create_table(
        "exclusions",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("nextval('exclusions_id_seq')"), nullable=False
        ),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("multitrack_id", sa.BigInteger(), nullable=False),
        sa.Column("multitrack", sa.Text(), nullable=False),
        sa.Column("pair", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("excluded_by", sa.Text(), nullable=False),
        sa.Column("excluded_at", sa.DateTime(), nullable=False),
        sa.Column("included_by", sa.Text(), nullable=True),
        sa.Column("included_at", sa.DateTime(), nullable=True),
        sa.Column("include_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("scope IN ('pair', 'multitrack')", name="ck_exclusions_scope"),
    )


def downgrade() -> None:
    op.drop_table("exclusions")
    op.execute(sa.schema.DropSequence(sa.Sequence("exclusions_id_seq")))
