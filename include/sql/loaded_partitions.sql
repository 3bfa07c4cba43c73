SELECT DISTINCT partition
FROM system.parts
WHERE database = currentDatabase() AND table = {table:String} AND active AND rows > 0
ORDER BY toUInt32(partition);
