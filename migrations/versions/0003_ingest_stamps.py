"""ingest stamps: track_files (size, mtime), multitrack_sources (metadata hash), corpus_status

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A re-ingest skips re-hashing a file whose size and modification time are unchanged, and
re-parsing a multitrack whose metadata hash is unchanged. These stamps live in side tables
rather than columns of tracks/multitracks because DuckDB cannot drop a column of a table that
other tables reference, and the downgrade must work on both backends. table2 is replaced:
tracks of imported feature files are excluded by code too; the downgrade restores 0002's table2.
"""

from alembic import op
import sqlalchemy as sa

from stemstore.migrations.operations import View

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE2 = View(
    "table2",
    """\
WITH corpus_tracks AS (
    SELECT t.kind, t.multitrack_id, i.name AS instrument
    FROM tracks t
    JOIN multitracks m ON m.id = t.multitrack_id
    JOIN corpora c ON c.id = m.corpus_id
    JOIN instruments i ON i.id = t.instrument_id
    WHERE c.format <> 'import' AND t.code NOT LIKE 'import/%'
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

CORPUS_STATUS = View(
    "corpus_status",
    """\
WITH corpus_tracks AS (
    SELECT t.id, t.kind, t.multitrack_id, t.instrument_id, t.audio_status, t.stale
    FROM tracks t
    JOIN multitracks m ON m.id = t.multitrack_id
    JOIN corpora c ON c.id = m.corpus_id
    WHERE c.format <> 'import' AND t.code NOT LIKE 'import/%' AND t.kind IN ('stem', 'raw')
      AND t.instrument_id IS NOT NULL
),
segmented AS (
    SELECT DISTINCT track_id FROM segments WHERE role = 'stem' AND NOT stale
),
stem_pairs AS (
    SELECT ct.multitrack_id, ct.instrument_id,
           MAX(CASE WHEN ct.audio_status = 'present' THEN 1 ELSE 0 END) AS has_audio,
           MAX(CASE WHEN sg.track_id IS NOT NULL THEN 1 ELSE 0 END) AS is_segmented
    FROM corpus_tracks ct
    LEFT JOIN segmented sg ON sg.track_id = ct.id
    WHERE ct.kind = 'stem'
    GROUP BY ct.multitrack_id, ct.instrument_id
),
pending AS (
    SELECT instrument_id, COUNT(*) AS to_segment
    FROM stem_pairs
    WHERE has_audio = 1 AND is_segmented = 0
    GROUP BY instrument_id
),
counts AS (
    SELECT instrument_id,
           COUNT(DISTINCT multitrack_id) AS multitracks,
           COUNT(DISTINCT CASE WHEN kind = 'stem' THEN multitrack_id END) AS stems,
           SUM(CASE WHEN kind = 'stem' THEN 1 ELSE 0 END) AS stem_tracks,
           SUM(CASE WHEN kind = 'raw' THEN 1 ELSE 0 END) AS raw_tracks,
           SUM(CASE WHEN audio_status = 'present' THEN 1 ELSE 0 END) AS present,
           SUM(CASE WHEN audio_status = 'missing' THEN 1 ELSE 0 END) AS missing,
           SUM(CASE WHEN audio_status = 'unreadable' THEN 1 ELSE 0 END) AS unreadable,
           SUM(CASE WHEN stale THEN 1 ELSE 0 END) AS stale_tracks
    FROM corpus_tracks
    GROUP BY instrument_id
)
SELECT g.group_name AS group_name, i.name AS instrument,
       c.multitracks, c.stems, c.stem_tracks, c.raw_tracks,
       c.present, c.missing, c.unreadable, c.stale_tracks,
       COALESCE(p.to_segment, 0) AS to_segment
FROM counts c
JOIN instruments i ON i.id = c.instrument_id
LEFT JOIN pending p ON p.instrument_id = c.instrument_id
LEFT JOIN group_labels g ON g.instrument_id = c.instrument_id
""",
)


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
    op.replace_view(TABLE2, replaces="0002.TABLE2")
    op.create_view(CORPUS_STATUS)


def downgrade() -> None:
    op.drop_view(CORPUS_STATUS)
    op.replace_view(TABLE2, replace_with="0002.TABLE2")
    op.drop_table("multitrack_sources")
    op.drop_table("track_files")
