"""views: group_labels, table2 (corpus counts) and segments_status (pipeline status)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Each view's SELECT is frozen here as this migration builds it (see stemstore/views.py);
queries/<name>.sql holds the current one.
"""

from alembic import op

from stemstore.migrations.operations import View

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GROUP_LABELS = View(
    "group_labels",
    """\
SELECT g.name AS group_name, i.id AS instrument_id, i.name AS instrument
FROM instrument_groups g
JOIN group_members m ON m.group_id = g.id
JOIN instruments i ON i.id = m.instrument_id
UNION
SELECT g.name AS group_name, i.id AS instrument_id, i.name AS instrument
FROM instrument_groups g
JOIN instruments i ON i.name = g.name
""",
)

TABLE2 = View(
    "table2",
    """\
WITH corpus_tracks AS (
    SELECT t.kind, t.multitrack_id, i.name AS instrument
    FROM tracks t
    JOIN multitracks m ON m.id = t.multitrack_id
    JOIN corpora c ON c.id = m.corpus_id
    JOIN instruments i ON i.id = t.instrument_id
    WHERE c.format <> 'import'
),
counts AS (
    SELECT instrument,
           SUM(CASE WHEN kind = 'raw' THEN 1 ELSE 0 END) AS raw,
           COUNT(DISTINCT CASE WHEN kind = 'stem' THEN multitrack_id END) AS stem
    FROM corpus_tracks
    GROUP BY instrument
)
SELECT g.group_name AS group_name, c.instrument, c.raw, c.stem
FROM counts c
JOIN instruments i ON i.name = c.instrument
LEFT JOIN group_labels g ON g.instrument_id = i.id
""",
)

SEGMENTS_STATUS = View(
    "segments_status",
    """\
SELECT g.group_name AS group_name,
       i.name AS instrument,
       s.role,
       COUNT(*) AS segments,
       SUM(CASE WHEN s.status = 'extracted' AND NOT s.stale THEN 1 ELSE 0 END) AS extracted,
       SUM(CASE WHEN s.status = 'pending' AND NOT s.stale THEN 1 ELSE 0 END) AS pending,
       SUM(CASE WHEN s.status = 'skipped' THEN 1 ELSE 0 END) AS skipped,
       SUM(CASE WHEN s.status = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(CASE WHEN s.stale THEN 1 ELSE 0 END) AS stale
FROM segments s
JOIN instruments i ON i.id = s.instrument_id
LEFT JOIN group_labels g ON g.instrument_id = i.id
GROUP BY g.group_name, i.name, s.role
""",
)


def upgrade() -> None:
    op.create_view(GROUP_LABELS)
    op.create_view(TABLE2)
    op.create_view(SEGMENTS_STATUS)


def downgrade() -> None:
    op.drop_view(SEGMENTS_STATUS)
    op.drop_view(TABLE2)
    op.drop_view(GROUP_LABELS)
