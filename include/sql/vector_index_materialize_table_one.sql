-- Build the one HNSW index of every part in one mutation, where the dataset has one vector column
-- (laion_5b_100m's vector_index), after it was just added.
-- mutations_sync = 0: the index task polls system.mutations and logs progress instead of blocking.
ALTER TABLE {table:Identifier}
    MATERIALIZE INDEX {name:Identifier}
SETTINGS mutations_sync = 0;
