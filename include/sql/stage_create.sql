-- A private table per shard load, with exactly the structure of laion (REPLACE PARTITION needs that).
-- A crash anywhere before stage_publish.sql leaves laion untouched; the next try starts here again.
DROP TABLE IF EXISTS {stage:Identifier} SYNC;
-- No background merges while the shard arrives (pool limits of 1 byte): they would rewrite the
-- staged parts again and again, and an OPTIMIZE FINAL that meets a running merge does nothing,
-- which published a 1M-row shard as 7-9 parts. stage_publish.sql merges them once.
CREATE TABLE {stage:Identifier} AS laion
SETTINGS max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1;
