"""views: table6 (per-feature mape/mae of regression runs) and table7 (ensembles)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Each view's SELECT is frozen here as this migration builds it (see stemstore/views.py).
table6 takes a target's f_pred place from regression_metrics.position (a column of 0001).
"""

from alembic import op

from stemstore.migrations.operations import View

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE6 = View(
    "table6",
    """\
SELECT r.group_name,
       r.id AS run_id,
       m.position AS feature_order,
       f.name AS feature,
       m.model,
       m.mape,
       m.mae,
       m.n_zero_targets,
       r.id = (SELECT MAX(l.id) FROM runs l
               WHERE l.kind = 'regression' AND l.status = 'done' AND l.group_name = r.group_name)
           AS is_latest
FROM regression_metrics m
JOIN runs r ON r.id = m.run_id
JOIN features f ON f.id = m.feature_id
WHERE r.kind = 'regression' AND r.status = 'done'
""",
)

TABLE7 = View(
    "table7",
    """\
SELECT r.group_name,
       r.id AS run_id,
       (SELECT COUNT(DISTINCT m.feature_id) FROM regression_metrics m WHERE m.run_id = r.id)
           AS n_targets,
       REPLACE(REPLACE(REPLACE(e.kept_features, '[', ''), ']', ''), '"', '') AS kept_features,
       e.candidate AS best,
       e.a_mape,
       r.id = (SELECT MAX(l.id) FROM runs l
               WHERE l.kind = 'regression' AND l.status = 'done' AND l.group_name = r.group_name)
           AS is_latest
FROM runs r
LEFT JOIN regression_ensembles e ON e.run_id = r.id AND e.is_best
WHERE r.kind = 'regression' AND r.status = 'done'
""",
)


def upgrade() -> None:
    op.create_view(TABLE6)
    op.create_view(TABLE7)


def downgrade() -> None:
    op.drop_view(TABLE7)
    op.drop_view(TABLE6)
