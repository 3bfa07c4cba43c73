-- The cluster's nodes, one per shard of remote_servers (its first replica), with the HTTP port each
-- answers on (remote_servers lists native-protocol ports); 0 for a node that does not answer.
-- Paste with --param_cluster=<name>.
SELECT c.shard_num, c.host_address, toUInt16(ifNull(p.http_port, 0)) AS http_port
FROM system.clusters AS c
LEFT JOIN (
    SELECT _shard_num AS shard_num, getServerPort('http_port') AS http_port
    FROM cluster({cluster:String}, system.one)
) AS p USING (shard_num)
WHERE c.cluster = {cluster:String} AND c.replica_num = 1
ORDER BY c.shard_num
SETTINGS skip_unavailable_shards = 1, join_use_nulls = 1;
