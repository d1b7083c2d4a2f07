"""views: table6 (per-feature mape/mae of regression runs) and table7 (ensembles)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from alembic import op

from stemstore.views import create_view, drop_view

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_view(op, "table6")
    create_view(op, "table7")


def downgrade() -> None:
    drop_view(op, "table7")
    drop_view(op, "table6")
