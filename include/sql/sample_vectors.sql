-- {n} rows' vectors from the given shards, the same ones every time (by a hash of the id).
SELECT {column:Identifier} FROM {search_table:Identifier} WHERE shard IN {shards:Array(UInt16)} ORDER BY cityHash64(id) LIMIT {n:UInt32};
