-- Top-k nearest rows to a target vector among the rows {condition} keeps. With a vector_similarity
-- index on the column and the index's metric, ClickHouse answers from the HNSW graph (see EXPLAIN
-- indexes = 1); SETTINGS use_skip_indexes = 0 turns the same query into an exact brute-force scan.
-- search.py writes the filter in place of {condition} (true for none): fixed fragments such as
-- NSFW IN {nsfw:Array(String)}, never input.
SELECT id, url, caption, NSFW, cosineDistance({column:Identifier}, {target:Array(Float32)}) AS distance
FROM {search_table:Identifier}
WHERE {condition}
ORDER BY distance
LIMIT {k:UInt32};
