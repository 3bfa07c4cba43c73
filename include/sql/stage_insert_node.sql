-- Copy a shard from the node that holds it into this node's staging table (rebalance.py). cluster()
-- connects with the remote_servers' user and password, so no credential is written here; _shard_num
-- reads only the source node's copy.
-- Paste with --param_stage=laion_stage_3 --param_table=laion_local --param_cluster=<cluster> --param_database=<database>
-- --param_source=<node number> --param_shard=3.
INSERT INTO {stage:Identifier}
SELECT * FROM cluster({cluster:String}, {database:Identifier}, {table:Identifier})
WHERE _shard_num = {source:UInt32} AND shard = {shard:UInt16}
SETTINGS materialize_skip_indexes_on_insert = 0,
         max_block_size = 8192,
         max_threads = 1,
         max_insert_threads = 1,
         min_insert_block_size_bytes = 33554432;
