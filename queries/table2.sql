-- Table 2 of the study (docs/method.md, section 1): per instrument label, grouped by instrument group,
--   raw  = number of raw tracks with that label,
--   stem = number of multitracks with at least one stem with that label.
-- title: Table 2: raw tracks and stems per instrument
-- report order: group_name, instrument
-- Computed from metadata alone (no audio needed); imported feature files do not count.
-- A track counts under its primary label (the first when the metadata gives a list).
-- An instrument in no group has group_name NULL; one in several groups appears once per group.
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
