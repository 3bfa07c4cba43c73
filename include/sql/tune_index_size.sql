-- The rows of tune's scratch table and the bytes of its candidate index's files (the graph; the
-- index cache holds about 1.24 times this), and the cores a build may use (max_threads, which
-- defaults to the server's cores).
SELECT sum(rows), sum(secondary_indices_uncompressed_bytes), toUInt64(getSetting('max_threads'))
FROM system.parts
WHERE database = currentDatabase() AND table = {scratch:String} AND active;
