-- The latest `tune` measurement of one index setting on this dataset: index bytes per row and build
-- rows/s per core, which the capacity check and `plan` use instead of the formula.
SELECT index_bytes_per_row, build_rows_per_s, shard, rows, measured_at
FROM {tune_results:Identifier}
WHERE metric = {metric:String} AND quantization = {quantization:String}
  AND m = {m:UInt32} AND ef_construction = {ef_construction:UInt32}
ORDER BY measured_at DESC
LIMIT 1;
