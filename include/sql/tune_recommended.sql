-- The setting the latest `tune` run recommended for this dataset, with what it measured.
SELECT m, ef_construction, quantization, recall_at_10, ef_search, rescore_multiplier, shard, target_recall
FROM {tune_results:Identifier}
WHERE recommended
ORDER BY measured_at DESC
LIMIT 1;
