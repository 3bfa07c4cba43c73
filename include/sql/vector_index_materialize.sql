-- Build both HNSW indexes of one shard's part in one mutation (the part is read once).
-- mutations_sync = 0: the index task polls system.mutations and logs progress instead of blocking.
ALTER TABLE {table:Identifier}
    MATERIALIZE INDEX image_index IN PARTITION {shard:UInt16},
    MATERIALIZE INDEX text_index IN PARTITION {shard:UInt16}
SETTINGS mutations_sync = 0;
