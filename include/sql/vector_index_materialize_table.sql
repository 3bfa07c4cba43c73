-- Build both HNSW indexes of every part in one mutation, after they were just added (no part has
-- them): one mutation however many parts the table holds (laion2b-en's 2,314), each part read once.
-- mutations_sync = 0: the index task polls system.mutations and logs progress instead of blocking.
ALTER TABLE {table:Identifier}
    MATERIALIZE INDEX {first:Identifier},
    MATERIALIZE INDEX {second:Identifier}
SETTINGS mutations_sync = 0;
