-- Segments per instrument group, instrument label and role, by status:
-- what has been segmented, extracted, skipped (with a reason) or failed.
-- report order: group_name, instrument, role
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
