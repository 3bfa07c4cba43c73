-- One measured candidate of a tune run.
INSERT INTO {tune_results:Identifier}
    (run_id, shard, rows, column, metric, target_recall, m, ef_construction, quantization, rescore_multiplier,
     build_rows_per_s, index_bytes_per_row, ef_search, recall_at_10, p50_ms, recommended)
VALUES ({run_id:String}, {shard:UInt16}, {rows:UInt64}, {column:String}, {metric:String}, {target_recall:Float64},
        {m:UInt32}, {ef_construction:UInt32}, {quantization:String}, {rescore_multiplier:UInt32},
        {build_rows_per_s:Float64}, {index_bytes_per_row:Float64}, {ef_search:UInt32}, {recall_at_10:Float64},
        {p50_ms:Float64}, {recommended:UInt8});
