-- The ingested corpus per instrument label, grouped by instrument group: how many multitracks,
-- stems and raw tracks, the state of their audio files, and what is still to segment.
--   multitracks  = multitracks with a stem or raw track of that label
--   stems        = (multitrack, label) pairs with at least one stem (as in table2)
--   stem_tracks, raw_tracks = tracks of that label
--   present / missing / unreadable = their audio files' state (stem and raw tracks)
--   stale_tracks = tracks whose file changed after ingest (derived data to redo)
--   to_segment   = stem pairs with audio present and no current (non-stale) stem segment
-- report order: group_name, instrument
-- Imported feature files do not count. A track counts under its primary label.
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
