-- Table 5 of the study: per group and selection run, the f_pred features in order, with
-- their descriptor and pooling statistic (and band/coefficient index where there is one).
-- title: Table 5: f_pred features, descriptor and pooling statistic
-- report order: group_name, run_id, position
SELECT r.group_name,
       r.id AS run_id,
       r.id = l.latest_run_id AS is_latest,
       sf.pred_order AS position,
       f.name AS feature,
       f.descriptor,
       f.statistic,
       f.feature_index,
       sf.importance_mean,
       sf.rank AS importance_rank
FROM runs r
JOIN latest_runs l ON l.kind = r.kind AND l.group_name = r.group_name
JOIN selection_features sf ON sf.run_id = r.id AND sf.in_fpred
JOIN features f ON f.id = sf.feature_id
WHERE r.kind = 'selection' AND r.status = 'done'
