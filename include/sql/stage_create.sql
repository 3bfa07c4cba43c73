-- A private table per shard load, with exactly the structure of laion (REPLACE PARTITION needs that).
-- A crash anywhere before stage_publish.sql leaves laion untouched; the next try starts here again.
DROP TABLE IF EXISTS {stage:Identifier} SYNC;
-- No background merges while the shard arrives (pool limits of 1 byte): they would rewrite the
-- staged parts again and again, and an OPTIMIZE FINAL that meets a running merge does nothing,
-- which published a 1M-row shard as 7-9 parts. stage_publish.sql merges them once.
-- Staged parts (one per ~32 MB insert block) are Compact: one data file each instead of two or
-- three per column, which made the insert of a 1M-row shard about twice as fast here (bench/). The
-- merged part, from 64 MB up, is Wide like any other in laion.
CREATE TABLE {stage:Identifier} AS {table:Identifier}
SETTINGS max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1,
    min_bytes_for_wide_part = 67108864;
