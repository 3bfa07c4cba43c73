-- Partitions (shards) with a part that has no skip index files yet: loaded since the last build.
-- Both vector indexes are always materialized together, in one mutation per partition.
SELECT DISTINCT partition
FROM system.parts
WHERE database = currentDatabase() AND table = {table:String} AND active AND rows > 0
  AND secondary_indices_compressed_bytes = 0
ORDER BY toUInt32(partition);
