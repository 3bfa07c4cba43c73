-- On a cluster (LAION_CLICKHOUSE_CLUSTER), on every node: laion reads every node's laion_local,
-- so search, counts and the seed's query run unchanged. Shards are loaded on their node directly,
-- never inserted through this table; its sharding key `shard` states the placement rule for a new
-- shard (shard modulo the number of nodes, weights 1), the rule the loader follows.
-- Paste with --param_table=laion_local --param_cluster=<cluster name>.
CREATE TABLE IF NOT EXISTS laion AS {table:Identifier}
ENGINE = Distributed({cluster:Identifier}, currentDatabase(), {table:Identifier}, shard);
