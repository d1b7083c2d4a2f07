"""views: latest_runs, the one rule for "a group's latest run of a kind", used by tables 4 to 7

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Tables 4 and 5 computed their is_latest flag with a window over selection runs, tables 6 and 7
with a subquery over regression runs; both now read it from the latest_runs view, which also
gives each group's latest run that is not stale (current_run_id) for the stages to build on.
Each view's SELECT is frozen here as this migration builds it (see stemstore/store/views.py).
"""

from alembic import op

from stemstore.migrations.operations import View

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LATEST_RUNS = View(
    "latest_runs",
    """
SELECT kind,
       group_name,
       MAX(id) AS latest_run_id,
       MAX(CASE WHEN NOT stale THEN id END) AS current_run_id
FROM runs
WHERE status = 'done' AND group_name IS NOT NULL
GROUP BY kind, group_name
""",
)

TABLE4 = View(
    "table4",
    """
SELECT r.group_name,
       r.id AS run_id,
       r.id = l.latest_run_id AS is_latest,
       COUNT(*) AS n_features,
       SUM(CASE WHEN sf.in_fp1 THEN 1 ELSE 0 END) AS f_p1,
       SUM(CASE WHEN sf.in_fp2 THEN 1 ELSE 0 END) AS f_p2,
       SUM(CASE WHEN sf.in_fpred THEN 1 ELSE 0 END) AS f_pred
FROM runs r
JOIN latest_runs l ON l.kind = r.kind AND l.group_name = r.group_name
JOIN selection_features sf ON sf.run_id = r.id
WHERE r.kind = 'selection' AND r.status = 'done'
GROUP BY r.group_name, r.id, l.latest_run_id
""",
)

TABLE5 = View(
    "table5",
    """
SELECT r.group_name,
       r.id AS run_id,
       r.id = l.latest_run_id AS is_latest,
       sf.pred_order AS position,
       f.name AS feature,
       f.descriptor,
       f.statistic,
       f.feature_index,
       sf.importance_mean,
       sf.rank AS importance_rank
FROM runs r
JOIN latest_runs l ON l.kind = r.kind AND l.group_name = r.group_name
JOIN selection_features sf ON sf.run_id = r.id AND sf.in_fpred
JOIN features f ON f.id = sf.feature_id
WHERE r.kind = 'selection' AND r.status = 'done'
""",
)

TABLE6 = View(
    "table6",
    """
SELECT r.group_name,
       r.id AS run_id,
       m.position AS feature_order,
       f.name AS feature,
       m.model,
       m.mape,
       m.mae,
       m.n_zero_targets,
       r.id = l.latest_run_id AS is_latest
FROM regression_metrics m
JOIN runs r ON r.id = m.run_id
JOIN latest_runs l ON l.kind = r.kind AND l.group_name = r.group_name
JOIN features f ON f.id = m.feature_id
WHERE r.kind = 'regression' AND r.status = 'done'
""",
)

TABLE7 = View(
    "table7",
    """
SELECT r.group_name,
       r.id AS run_id,
       (SELECT COUNT(DISTINCT m.feature_id) FROM regression_metrics m WHERE m.run_id = r.id)
           AS n_targets,
       REPLACE(REPLACE(REPLACE(e.kept_features, '[', ''), ']', ''), '"', '') AS kept_features,
       e.candidate AS best,
       e.a_mape,
       r.id = l.latest_run_id AS is_latest
FROM runs r
JOIN latest_runs l ON l.kind = r.kind AND l.group_name = r.group_name
LEFT JOIN regression_ensembles e ON e.run_id = r.id AND e.is_best
WHERE r.kind = 'regression' AND r.status = 'done'
""",
)


def upgrade() -> None:
    op.create_view(LATEST_RUNS)
    op.replace_view(TABLE4, replaces="0005.TABLE4")
    op.replace_view(TABLE5, replaces="0005.TABLE5")
    op.replace_view(TABLE6, replaces="0004.TABLE6")
    op.replace_view(TABLE7, replaces="0004.TABLE7")


def downgrade() -> None:
    op.replace_view(TABLE7, replace_with="0004.TABLE7")
    op.replace_view(TABLE6, replace_with="0004.TABLE6")
    op.replace_view(TABLE5, replace_with="0005.TABLE5")
    op.replace_view(TABLE4, replace_with="0005.TABLE4")
    op.drop_view(LATEST_RUNS)
