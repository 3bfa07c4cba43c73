-- Every cluster the connection's node knows from its remote_servers: how many shards, and the most
-- replicas any of its shards has.
SELECT cluster, uniqExact(shard_num) AS shards, max(replica_num) AS replicas
FROM system.clusters
GROUP BY cluster
ORDER BY cluster;
