"""views: group_labels, table2 (corpus counts) and segments_status (pipeline status)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op

from stemstore.views import create_view, drop_view

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None



def upgrade() -> None:
    create_view(op, "group_labels")
    create_view(op, "table2")
    create_view(op, "segments_status")


def downgrade() -> None:
    drop_view(op, "segments_status")
    drop_view(op, "table2")
    drop_view(op, "group_labels")
