-- Rows, distinct ids and shards in the staged shard: the load refuses to publish a shard
-- whose staged rows differ from the source's.
SELECT count() AS rows, uniqExact(id) AS ids, groupUniqArray(shard) AS shards
FROM {stage:Identifier};
