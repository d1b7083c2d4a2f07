-- Which instrument labels belong to which group: the group's members, plus the label equal to
-- the group's own name (imported reference data uses the group name as its instrument label).
-- Every per-group view joins through this one.
-- report order: group_name, instrument
SELECT g.name AS group_name, i.id AS instrument_id, i.name AS instrument
FROM instrument_groups g
JOIN group_members m ON m.group_id = g.id
JOIN instruments i ON i.id = m.instrument_id
UNION
SELECT g.name AS group_name, i.id AS instrument_id, i.name AS instrument
FROM instrument_groups g
JOIN instruments i ON i.name = g.name
