-- Insert one slice of a laion5b_100m source file, read by ClickHouse where it is published: {source}
-- is the table function (url() or s3(), staging.parquet_source) and {condition} selects the slice,
-- `id BETWEEN {first_value:UInt64} AND {last_value:UInt64}` from its row groups' statistics, so the
-- Parquet reader skips the other row groups, or `_row_number BETWEEN ...` where the file's id ranges
-- overlap. Paste with
--   url('https://clickhouse-datasets.s3.amazonaws.com/laion-5b/laion5b_100m_part_1_of_10.parquet', Parquet)
-- and id BETWEEN 0 AND 999999 in their places. Same memory bounds as stage_insert.sql.
INSERT INTO {stage:Identifier} (id, image_path, caption, NSFW, similarity, LICENSE, url, key, status, width,
                                height, original_width, original_height, exif, md5, vector, shard)
SELECT id, image_path, caption, NSFW, similarity, LICENSE, url, key, status, width, height, original_width,
       original_height, exif, md5, vector, {shard:UInt16}
FROM {source}
WHERE {condition}
SETTINGS materialize_skip_indexes_on_insert = 0,
         input_format_parquet_memory_high_watermark = 134217728,
         max_threads = 1,
         max_insert_threads = 1,
         min_insert_block_size_bytes = 33554432;
