-- A Parquet file's row groups from its footer alone (ParquetMetadata: a few kB, read with HTTP
-- Range requests): rows, compressed bytes and the id column's min and max, which let a reader skip
-- the other row groups. {source} is the table function that reads the file (staging.parquet_source);
-- paste with url('https://.../laion5b_100m_part_1_of_10.parquet', ParquetMetadata) in its place.
SELECT rg.num_rows, rg.total_compressed_size,
       toUInt64OrNull(arrayFirst(c -> c.name = 'id', rg.columns).statistics.min),
       toUInt64OrNull(arrayFirst(c -> c.name = 'id', rg.columns).statistics.max)
FROM {source}
ARRAY JOIN row_groups AS rg;
