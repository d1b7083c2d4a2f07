-- The latest run of each kind for each group: the one rule every report and stage uses.
--   latest_run_id is the highest id among the group's runs of that kind that finished 'done'
--   (running and failed runs never count; ids grow in the order runs start). Stale runs count:
--   reports show the latest results by default, whether or not the data changed since.
--   current_run_id is the same among the runs that are not stale (whose segments and values
--   did not change after they ran): what a later stage builds on, e.g. regression on f_pred.
-- title: Latest run of each kind per group
-- report order: kind, group_name
SELECT kind,
       group_name,
       MAX(id) AS latest_run_id,
       MAX(CASE WHEN NOT stale THEN id END) AS current_run_id
FROM runs
WHERE status = 'done' AND group_name IS NOT NULL
GROUP BY kind, group_name
