-- {n} captions of one shard with their stored text vectors, the same ones every time (by a hash of the id).
SELECT row, caption, text_embedding
FROM {search_table:Identifier}
WHERE shard = {shard:UInt16} AND caption != ''
ORDER BY cityHash64(id)
LIMIT {n:UInt32};
