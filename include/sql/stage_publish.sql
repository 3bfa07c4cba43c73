-- Merge the staged shard into one part (no vector index is built by this merge), then swap it
-- in for the shard's partition in one atomic step: readers see the old shard or the new one,
-- never half of it, and a reload never duplicates a row.
OPTIMIZE TABLE {stage:Identifier} FINAL;
ALTER TABLE laion REPLACE PARTITION {shard:UInt16} FROM {stage:Identifier};
DROP TABLE {stage:Identifier};
