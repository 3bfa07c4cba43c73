-- The seed's HNSW index, with every parameter settable. Adding it is instant: the graph is
-- built by vector_index_materialize.sql, once per part. On a cluster: --param_table=laion_local,
-- on every node, or once with ON CLUSTER <cluster name> after the table where the cluster has Keeper.
ALTER TABLE {table:Identifier}
    ADD INDEX IF NOT EXISTS {name:Identifier} {column:Identifier}
    TYPE vector_similarity('hnsw', {metric:String}, {dim:UInt32}, {quantization:String}, {m:UInt32}, {ef_construction:UInt32});
