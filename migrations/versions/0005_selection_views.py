"""views: table4 and table5 (feature selection results)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
from alembic import op

from stemstore.views import create_view, drop_view

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_view(op, "table4")
    create_view(op, "table5")


def downgrade() -> None:
    drop_view(op, "table5")
    drop_view(op, "table4")
