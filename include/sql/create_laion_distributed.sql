-- On a cluster (LAION_CLICKHOUSE_CLUSTER), on every node: the dataset's table (laion, laion2b_en, ...)
-- reads every node's <table>_local, so search, counts and the seed's query run unchanged. Shards are loaded on their node directly,
-- never inserted through this table; its sharding key `shard` states the placement rule for a new
-- shard (shard modulo the number of nodes, weights 1), the rule the loader follows. The database is
-- spelled out: run ON CLUSTER, the statement is executed by each node's DDL worker, not in this session.
-- Paste with --param_database=<database> --param_search_table=laion --param_table=laion_local
-- --param_cluster=<cluster name>, adding ON CLUSTER <cluster name> after the table where the cluster has Keeper.
CREATE TABLE IF NOT EXISTS {database:Identifier}.{search_table:Identifier} AS {database:Identifier}.{table:Identifier}
ENGINE = Distributed({cluster:Identifier}, {database:Identifier}, {table:Identifier}, shard);
