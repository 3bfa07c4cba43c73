-- stage_insert_s3.sql with the bucket's credentials kept on the server, in a named collection
-- (LAION_S3_NAMED_COLLECTION; config.xml <named_collections>, and GRANT NAMED COLLECTION ON <name>):
-- no secret travels with the statement. Paste with --param_url=... and the collection's name written in.
INSERT INTO {stage:Identifier}
SELECT * FROM s3({collection:Identifier}, url = {url:String}, format = 'Parquet')
SETTINGS materialize_skip_indexes_on_insert = 0,
         input_format_parquet_memory_high_watermark = 134217728,
         max_threads = 1,
         max_insert_threads = 1,
         min_insert_block_size_bytes = 33554432;
