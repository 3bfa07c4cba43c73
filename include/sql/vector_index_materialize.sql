-- Build both HNSW indexes of one shard's part in one mutation (the part is read once): image_index
-- and text_index (paste with --param_first=image_index --param_second=text_index).
-- mutations_sync = 0: the index task polls system.mutations and logs progress instead of blocking.
ALTER TABLE {table:Identifier}
    MATERIALIZE INDEX {first:Identifier} IN PARTITION {shard:UInt16},
    MATERIALIZE INDEX {second:Identifier} IN PARTITION {shard:UInt16}
SETTINGS mutations_sync = 0;
