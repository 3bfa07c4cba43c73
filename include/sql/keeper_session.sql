-- How long the connection's node has had its Keeper (or ZooKeeper) session, in seconds; 0 for a
-- server configured without one. With a session, the package's DDL on a cluster runs ON CLUSTER.
SELECT zookeeperSessionUptime();
