-- Drop a shard's partition: a node's copy that rebalance.py or a reload moved to another node.
ALTER TABLE {table:Identifier} DROP PARTITION {shard:UInt16};
