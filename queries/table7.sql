-- Table 7 of the study (docs/method.md, section 5): per group and regression run, the target features
-- kept (best mape within the run's threshold), the model or average of models with the smallest
-- a-mape over them (best, e.g. 'knn+svr'), and that a-mape.
--   n_targets is the number of target features; a run where no feature was kept shows
--   best and a_mape empty. is_latest marks each group's latest regression run (the latest_runs view).
-- title: Table 7: best model or ensemble on the kept features
-- report order: group_name, run_id
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
