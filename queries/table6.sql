-- Table 6 of the study (docs/method.md, section 5): per group, regression run, target feature (in
-- f_pred order) and model, the mape and mae on the run's test pairs.
--   mape is 'inf' (+Infinity) when a test pair has a zero target value, where the ratio is
--   undefined; n_zero_targets says how many zeros there were.
--   feature_order is the target feature's place in the run's f_pred.
--   is_latest marks each group's latest regression run (the latest_runs view).
-- title: Table 6: mape and mae per target feature and model
-- report order: group_name, run_id, feature_order, model
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
