-- Table 4 of the study: per group and selection run, the sizes of the three selections
-- f_p1 (thresholding), f_p2 (interpretation) and f_pred (prediction) (docs/method.md, section 4).
-- is_latest marks each group's latest run (the latest_runs view; what `stemstore report table4` shows).
-- title: Table 4: sizes of f_p1, f_p2 and f_pred
-- report order: group_name, run_id
SELECT r.group_name,
       r.id AS run_id,
       r.id = l.latest_run_id AS is_latest,
       COUNT(*) AS n_features,
       SUM(CASE WHEN sf.in_fp1 THEN 1 ELSE 0 END) AS f_p1,
       SUM(CASE WHEN sf.in_fp2 THEN 1 ELSE 0 END) AS f_p2,
       SUM(CASE WHEN sf.in_fpred THEN 1 ELSE 0 END) AS f_pred
FROM runs r
JOIN latest_runs l ON l.kind = r.kind AND l.group_name = r.group_name
JOIN selection_features sf ON sf.run_id = r.id
WHERE r.kind = 'selection' AND r.status = 'done'
GROUP BY r.group_name, r.id, l.latest_run_id
