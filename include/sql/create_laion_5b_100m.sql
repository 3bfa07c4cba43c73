-- ClickHouse's public 100M subset of LAION-5B, as its "LAION 5B dataset" docs page creates it, so
-- the page's queries run unchanged (paste with --param_table=laion_5b_100m; on a cluster
-- laion_5b_100m_local under a Distributed laion_5b_100m). The files' own id is kept. What the package
-- adds: `shard`, the slice of the source file a row came from (shard N is slice N % 10 of
-- laion5b_100m_part_{N // 10 + 1}_of_10.parquet, see datasets.py), as the partition, so that a slice
-- loads and reloads atomically and each slice's part gets its graph once; and the settings of
-- create_laion.sql, which says why each.
-- {vector_type}: Float32 or BFloat16, as in create_laion.sql.
CREATE TABLE IF NOT EXISTS {table:Identifier}
(
    id              UInt32,
    image_path      String,
    caption         String,
    NSFW            Nullable(String) DEFAULT 'unknown',
    similarity      Float32,
    LICENSE         Nullable(String),
    url             String,
    key             String,
    status          LowCardinality(String),
    width           Int32,
    height          Int32,
    original_width  Int32,
    original_height Int32,
    exif            Nullable(String),
    md5             String,
    vector          Array({vector_type}) CODEC(NONE),  -- CLIP ViT-L/14 image vectors, 768 floats
    shard           UInt16                       -- the slice: file (shard // 10) + 1, slice shard % 10
)
ENGINE = MergeTree
PARTITION BY shard
ORDER BY id
SETTINGS materialize_skip_indexes_on_merge = 0, index_granularity_bytes = 1048576,
         old_parts_lifetime = 10, cleanup_delay_period = 1, max_cleanup_delay_period = 10,
         cleanup_delay_period_random_add = 1;
