-- Every candidate `tune` measured, per run: the setting, its build rate, its bytes, the smallest
-- hnsw_candidate_list_size_for_search reaching the target and the recall and latency there.
CREATE TABLE IF NOT EXISTS {tune_results:Identifier}
(
    run_id               String,
    measured_at          DateTime64(3, 'UTC') DEFAULT now64(3),
    shard                UInt16,
    rows                 UInt64,
    column               String,
    metric               String,
    target_recall        Float64,
    m                    UInt32,
    ef_construction      UInt32,
    quantization         LowCardinality(String),
    rescore_multiplier   UInt32,
    build_rows_per_s     Float64,   -- per core
    index_bytes_per_row  Float64,
    ef_search            UInt32,
    recall_at_10         Float64,
    p50_ms               Float64,
    recommended          UInt8
)
ENGINE = MergeTree
ORDER BY (run_id, m, ef_construction, quantization);
