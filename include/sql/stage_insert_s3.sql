-- Insert a converted shard that the load staged in an S3 bucket (a ClickHouse server reads it there).
-- Same memory bounds as stage_insert_file.sql.
INSERT INTO {stage:Identifier}
SELECT * FROM s3({url:String}, {access_key_id:String}, {secret_access_key:String}, Parquet)
SETTINGS materialize_skip_indexes_on_insert = 0,
         input_format_parquet_memory_high_watermark = 134217728,
         max_threads = 1,
         max_insert_threads = 1,
         min_insert_block_size_bytes = 33554432;
