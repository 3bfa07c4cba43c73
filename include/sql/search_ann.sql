-- Top-k nearest rows to a target vector. With a vector_similarity index on the column and
-- the index's metric, ClickHouse answers from the HNSW graph (see EXPLAIN indexes = 1);
-- SETTINGS use_skip_indexes = 0 turns the same query into an exact brute-force scan.
SELECT id, url, caption, NSFW, cosineDistance({column:Identifier}, {target:Array(Float32)}) AS distance
FROM laion
ORDER BY distance
LIMIT {k:UInt32};
