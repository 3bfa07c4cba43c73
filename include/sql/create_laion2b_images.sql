-- A LAION-5B subset whose text vectors were never published, laion2b_multi or laion1b_nolang (paste
-- with --param_table=laion2b_multi; on a cluster <table>_local under a Distributed <table>): laion's columns and
-- layout (create_laion.sql says why each setting) with LAION-5B's metadata, which has md5 and no
-- shard_id, and 768-d image vectors of OpenAI's CLIP ViT-L/14.
-- {vector_type}: Float32 or BFloat16, as in create_laion.sql.
CREATE TABLE IF NOT EXISTS {table:Identifier}
(
    id              UInt64,              -- shard * 1000000000 + row: stable across reloads
    shard           UInt16,              -- NNNN of img_emb_NNNN.npy / metadata_NNNN.parquet
    row             UInt32,              -- row number inside the shard's files
    image_path      String,
    caption         Nullable(String),    -- kept byte-exact, NULL stays NULL
    NSFW            LowCardinality(Nullable(String)),
    similarity      Nullable(Float64),
    LICENSE         LowCardinality(Nullable(String)),
    url             String,
    key             String,
    status          LowCardinality(Nullable(String)),
    error_message   Nullable(String),
    width           Nullable(UInt32),
    height          Nullable(UInt32),
    exif            Nullable(String),
    original_width  Nullable(UInt32),
    original_height Nullable(UInt32),
    md5             Nullable(String),
    image_embedding Array({vector_type}) CODEC(NONE)   -- CLIP ViT-L/14, 768 floats, Float32: the float16 values exactly
)
ENGINE = MergeTree
PARTITION BY shard
ORDER BY id
SETTINGS materialize_skip_indexes_on_merge = 0, index_granularity_bytes = 1048576,
         old_parts_lifetime = 10, cleanup_delay_period = 1, max_cleanup_delay_period = 10,
         cleanup_delay_period_random_add = 1;
