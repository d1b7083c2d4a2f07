-- Table 5 of the study: per group and selection run, the f_pred features in order, with
-- their descriptor and pooling statistic (and band/coefficient index where there is one).
-- title: Table 5: f_pred features, descriptor and pooling statistic
-- report order: group_name, run_id, position
WITH selection_runs AS (
    SELECT id, group_name, MAX(id) OVER (PARTITION BY group_name) AS latest_id
    FROM runs
    WHERE kind = 'selection' AND status = 'done'
)
SELECT r.group_name,
       r.id AS run_id,
       r.id = r.latest_id AS is_latest,
       sf.pred_order AS position,
       f.name AS feature,
       f.descriptor,
       f.statistic,
       f.feature_index,
       sf.importance_mean,
       sf.rank AS importance_rank
FROM selection_runs r
JOIN selection_features sf ON sf.run_id = r.id AND sf.in_fpred
JOIN features f ON f.id = sf.feature_id
