-- Insert a converted shard from a local Parquet file (embedded chdb, or a server sharing the disk).
-- The Parquet columns carry the names of laion's columns; vectors are fixed-size float16 lists,
-- which ClickHouse widens to Float32 exactly.
-- Memory (bench/RESULTS.md, 1,000,448-row shard): pread and the Parquet reader's 128 MB high
-- watermark keep the 2 GB input from being memory-mapped into the process; one parsing thread, one
-- insert thread and 32 MB blocks bound the squashing buffers. Peak RSS ~5 GB -> under 0.9 GB
-- (the staged parts are merged into one afterwards anyway: stage_publish.sql).
INSERT INTO {stage:Identifier}
SELECT * FROM file({path:String}, Parquet)
SETTINGS materialize_skip_indexes_on_insert = 0,
         storage_file_read_method = 'pread',
         input_format_parquet_memory_high_watermark = 134217728,
         max_threads = 1,
         max_insert_threads = 1,
         min_insert_block_size_bytes = 33554432;
