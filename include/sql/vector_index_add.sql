-- The seed's HNSW index, with every parameter settable. Adding it is instant: the graph is
-- built by vector_index_materialize.sql, once per part.
ALTER TABLE {table:Identifier}
    ADD INDEX IF NOT EXISTS {name:Identifier} {column:Identifier}
    TYPE vector_similarity('hnsw', {metric:String}, 512, {quantization:String}, {m:UInt32}, {ef_construction:UInt32});
