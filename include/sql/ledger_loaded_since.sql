-- The rows of a load of the shard that finished since a time (Unix seconds), if any.
SELECT rows
FROM {ledger:Identifier}
WHERE shard = {shard:UInt16} AND outcome = 'loaded' AND finished_at >= toDateTime64({since:Float64}, 3, 'UTC')
ORDER BY finished_at DESC
LIMIT 1;
