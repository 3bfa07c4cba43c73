-- The type of a column of the dataset's table, as ClickHouse names it (Array(Float32)).
SELECT type FROM system.columns
WHERE database = currentDatabase() AND table = {table:String} AND name = {column:String};
