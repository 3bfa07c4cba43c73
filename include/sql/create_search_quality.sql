-- What `python -m laion_ingest evaluate` measured: recall@k of the vector index against an exact
-- scan, and query latency, per kind of query, hnsw_candidate_list_size_for_search (ef) and rescoring, with
-- the index and the shards it measured. `chosen` marks the smallest ef that reached the target recall; search
-- uses the latest run's choice.
CREATE TABLE IF NOT EXISTS {quality:Identifier}
(
    run_id        String,
    measured_at   DateTime64(3, 'UTC') DEFAULT now64(3),
    index_type    String,                  -- vector_similarity(...), the index measured
    kind          LowCardinality(String),  -- text→image or image→image
    ef            UInt32,
    rescore_multiplier UInt32,             -- with vector_search_with_rescoring, candidates fetched per hit; 0: none
    k             UInt32,
    queries       UInt32,
    shards        Array(UInt16),           -- the shards (parts) measured
    recall        Float64,
    p50_ms        Float64,
    p95_ms        Float64,
    exact_p50_ms  Float64,                 -- the brute-force scan, for comparison
    target_recall Float64,
    chosen        UInt8
)
ENGINE = MergeTree
ORDER BY (measured_at, kind, ef);
