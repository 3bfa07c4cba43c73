-- What the index stage compares with the graphs it is about to build: the rows of laion's parts
-- (every graph, to be cached for search), its largest part (the biggest build at once), the index
-- cache and the server's memory limit (0 where the server does not say).
SELECT
    (SELECT sum(rows) FROM system.parts
     WHERE database = currentDatabase() AND table = {table:String} AND active) AS table_rows,
    (SELECT max(rows) FROM system.parts
     WHERE database = currentDatabase() AND table = {table:String} AND active) AS largest_part_rows,
    (SELECT toUInt64(value) FROM system.server_settings
     WHERE name = 'vector_similarity_index_cache_size') AS index_cache_bytes,
    (SELECT toUInt64OrZero(value) FROM system.server_settings
     WHERE name = 'max_server_memory_usage') AS memory_limit_bytes;
