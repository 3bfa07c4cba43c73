-- Each shard as the table holds it, from the parts' metadata (no data is read, so this is cheap at
-- 410 shards): its rows and its active parts. A correctly loaded shard is exactly one part holding
-- the ledger's row count; a shard published twice (a crash inside REPLACE PARTITION) shows two.
SELECT toUInt16(partition) AS shard, sum(rows) AS shard_rows, count() AS parts
FROM system.parts
WHERE database = currentDatabase() AND table = {table:String} AND active AND rows > 0
GROUP BY partition
ORDER BY shard;
