-- {n} rows' vectors spread over the whole table, the same ones every time (by a hash of the id).
SELECT {column:Identifier} FROM laion ORDER BY cityHash64(id) LIMIT {n:UInt32};
