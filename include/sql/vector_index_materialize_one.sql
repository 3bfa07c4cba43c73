-- Build the one HNSW index of one shard's part, where the dataset has one vector column
-- (laion_5b_100m's vector_index, the image_index of a subset without text vectors).
-- mutations_sync = 0: the index task polls system.mutations and logs progress instead of blocking.
ALTER TABLE {table:Identifier}
    MATERIALIZE INDEX {name:Identifier} IN PARTITION {shard:UInt16}
SETTINGS mutations_sync = 0;
