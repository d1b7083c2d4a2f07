"""views: table4 and table5 (feature selection results)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Each view's SELECT is frozen here as this migration builds it (see stemstore/views.py).
"""

from alembic import op

from stemstore.migrations.operations import View

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE4 = View(
    "table4",
    """\
WITH selection_runs AS (
    SELECT id, group_name, MAX(id) OVER (PARTITION BY group_name) AS latest_id
    FROM runs
    WHERE kind = 'selection' AND status = 'done'
)
SELECT r.group_name,
       r.id AS run_id,
       r.id = r.latest_id AS is_latest,
       COUNT(*) AS n_features,
       SUM(CASE WHEN sf.in_fp1 THEN 1 ELSE 0 END) AS f_p1,
       SUM(CASE WHEN sf.in_fp2 THEN 1 ELSE 0 END) AS f_p2,
       SUM(CASE WHEN sf.in_fpred THEN 1 ELSE 0 END) AS f_pred
FROM selection_runs r
JOIN selection_features sf ON sf.run_id = r.id
GROUP BY r.group_name, r.id, r.latest_id
""",
)

TABLE5 = View(
    "table5",
    """\
WITH selection_runs AS (
    SELECT id, group_name, MAX(id) OVER (PARTITION BY group_name) AS latest_id
    FROM runs
    WHERE kind = 'selection' AND status = 'done'
)
SELECT r.group_name,
       r.id AS run_id,
       r.id = r.latest_id AS is_latest,
       sf.pred_order AS position,
       f.name AS feature,
       f.descriptor,
       f.statistic,
       f.feature_index,
       sf.importance_mean,
       sf.rank AS importance_rank
FROM selection_runs r
JOIN selection_features sf ON sf.run_id = r.id AND sf.in_fpred
JOIN features f ON f.id = sf.feature_id
""",
)


def upgrade() -> None:
    op.create_view(TABLE4)
    op.create_view(TABLE5)


def downgrade() -> None:
    op.drop_view(TABLE5)
    op.drop_view(TABLE4)
