-- Insert a converted shard from its Parquet file: {source} is the table function that reads it
-- (staging.parquet_source: file() for a local file, on chdb; s3() where it was staged for a server,
-- with the bucket's credentials as parameters or a named collection's). Paste with
-- file('/path/laion_3.parquet', Parquet) in its place. The Parquet columns carry the names of the
-- table's columns; vectors are fixed-size float16 lists, which ClickHouse widens to Float32 exactly.
-- Memory (bench/RESULTS.md, 1,000,448-row shard): pread and the Parquet reader's 128 MB high
-- watermark keep the 2 GB input from being memory-mapped into the process; one parsing thread, one
-- insert thread and 32 MB blocks bound the squashing buffers. Peak RSS ~5 GB -> under 0.9 GB
-- (the staged parts are merged into one afterwards anyway: stage_publish.sql).
INSERT INTO {stage:Identifier}
SELECT * FROM {source}
SETTINGS materialize_skip_indexes_on_insert = 0,
         storage_file_read_method = 'pread',
         input_format_parquet_memory_high_watermark = 134217728,
         max_threads = 1,
         max_insert_threads = 1,
         min_insert_block_size_bytes = 33554432;
