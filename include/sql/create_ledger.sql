-- One row per attempt to load a shard: what was loaded, from how many source bytes, when,
-- on which try, and why it failed. Append-only, so the history of retries is never lost;
-- shard_status.sql derives the current state of every shard from it.
CREATE TABLE IF NOT EXISTS {ledger:Identifier}
(
    shard        UInt16,
    outcome      LowCardinality(String),   -- 'loaded' or 'failed'
    stage        LowCardinality(String),   -- fetch, convert or load: where it ended
    try_number   UInt16,
    rows         UInt64,
    source_bytes Map(LowCardinality(String), UInt64),  -- file name -> size in bytes
    started_at   DateTime64(3, 'UTC'),
    finished_at  DateTime64(3, 'UTC'),
    error        String,
    run_id       String
)
ENGINE = MergeTree
ORDER BY (shard, finished_at);
