-- tune's scratch table for one candidate: one loaded shard's ids and one vector column, as one
-- part, with the candidate's HNSW index declared but not built (tune_build.sql builds it while tune
-- times it), away from the table users query. Paste with --param_scratch=laion_tune_scratch
-- --param_search_table=laion --param_column=image_embedding --param_shard=0 and the index's values.
DROP TABLE IF EXISTS {scratch:Identifier};
CREATE TABLE {scratch:Identifier}
(
    id     UInt64,
    vector Array(Float32),
    INDEX tune_index vector
        TYPE vector_similarity('hnsw', {metric:String}, {dim:UInt32}, {quantization:String}, {m:UInt32}, {ef_construction:UInt32})
)
ENGINE = MergeTree
ORDER BY id
SETTINGS materialize_skip_indexes_on_merge = 0;
INSERT INTO {scratch:Identifier}
SELECT id, {column:Identifier} FROM {search_table:Identifier} WHERE shard = {shard:UInt16}
SETTINGS materialize_skip_indexes_on_insert = 0;
OPTIMIZE TABLE {scratch:Identifier} FINAL;
