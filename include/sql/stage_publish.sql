-- Merge the staged shard into one part (no vector index is built by this merge), then swap it
-- in for the shard's partition in one atomic step: readers see the old shard or the new one,
-- never half of it, and a reload never duplicates a row.
OPTIMIZE TABLE {stage:Identifier} FINAL SETTINGS optimize_throw_if_noop = 1;
ALTER TABLE {table:Identifier} REPLACE PARTITION {shard:UInt16} FROM {stage:Identifier};
-- SYNC: delete the staged parts now. Without it ClickHouse keeps a dropped table's data for 8
-- minutes (database_atomic_delay_before_drop_table_sec), and a short-lived process such as an
-- Airflow task exits before that: each load left a shard's worth of staged parts on disk.
DROP TABLE {stage:Identifier} SYNC;
