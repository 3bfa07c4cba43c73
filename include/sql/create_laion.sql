-- The LAION-400M table (paste with --param_table=laion; on a cluster it is laion_local on every node,
-- under a Distributed laion: create_laion_distributed.sql; add ON CLUSTER <cluster name> after the
-- table's name where the cluster has Keeper): the seed's columns (url, caption, NSFW, similarity,
-- image_embedding, text_embedding) plus a stable id, the shard and row it came from, and every other
-- metadata column.
--
-- PARTITION BY shard: one partition per source shard, so a shard is (re)loaded atomically with
-- REPLACE PARTITION and each shard's vectors sit in one part whose HNSW index is built once.
-- materialize_skip_indexes_on_merge = 0: merges never build or rebuild the vector indexes;
-- the index stage materializes them exactly once per part (see vector_index_*.sql).
-- index_granularity_bytes = 1 MiB (default 10 MiB): granules of ~256 rows. A merge holds one
-- granule per source part per column, so the load's OPTIMIZE of the staged parts peaks at
-- ~0.5-0.7 GB instead of ~1.2-1.7 GB (bench/RESULTS.md, load variants).
-- old_parts_lifetime = 10 and the cleanup thread's periods (its delay backs off to 300 s on an idle
-- server by default, 10 s here; defaults 480 s, 30 s, 10 s random): the part a reload
-- replaces is deleted seconds later, not after 8 minutes, so a reload does not hold a second copy of
-- the shard (4 GB) for long, and an embedded engine's short-lived task process can wait for it (the
-- old parts had outlived every process: 4 reloads of one shard left 4 copies on disk). The minutes
-- of protection they gave against a crash before the new part reached the disk are not needed: each
-- plan compares the table with the ledger and reloads a shard that differs.
-- {vector_type}: write Float32 (the default: LAION's float16 values exactly) or BFloat16 (half the
-- disk, each value cut to 8 significant bits; LAION_VECTOR_TYPE, docs/sizing.md). Every dataset's
-- table takes it.
CREATE TABLE IF NOT EXISTS {table:Identifier}
(
    id              UInt64,              -- shard * 1000000000 + row: stable across reloads
    shard           UInt16,              -- N of img_emb_N.npy / metadata_N.parquet
    row             UInt32,              -- row number inside the shard's files
    image_path      String,
    caption         Nullable(String),    -- kept byte-exact, NULL stays NULL
    NSFW            LowCardinality(Nullable(String)),
    similarity      Nullable(Float64),
    LICENSE         LowCardinality(Nullable(String)),
    url             String,
    key             String,
    shard_id        Nullable(Int64),
    status          LowCardinality(Nullable(String)),
    error_message   Nullable(String),
    width           Nullable(UInt32),
    height          Nullable(UInt32),
    exif            Nullable(String),
    original_width  Nullable(UInt32),
    original_height Nullable(UInt32),
    image_embedding Array({vector_type}) CODEC(NONE),  -- CLIP ViT-B/32, 512 floats, Float32: the float16 values exactly
    text_embedding  Array({vector_type}) CODEC(NONE)
)
ENGINE = MergeTree
PARTITION BY shard
ORDER BY id
SETTINGS materialize_skip_indexes_on_merge = 0, index_granularity_bytes = 1048576,
         old_parts_lifetime = 10, cleanup_delay_period = 1, max_cleanup_delay_period = 10,
         cleanup_delay_period_random_add = 1;
