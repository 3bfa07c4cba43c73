-- Insert a converted shard from a local Parquet file (embedded chdb, or a server sharing the disk).
-- The Parquet columns carry the names of laion's columns; vectors are fixed-size float16 lists,
-- which ClickHouse widens to Float32 exactly.
INSERT INTO {stage:Identifier}
SELECT * FROM file({path:String}, Parquet)
SETTINGS materialize_skip_indexes_on_insert = 0;
