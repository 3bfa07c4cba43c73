-- Insert a converted shard that the load staged in an S3 bucket (a ClickHouse server reads it there).
INSERT INTO {stage:Identifier}
SELECT * FROM s3({url:String}, {access_key_id:String}, {secret_access_key:String}, Parquet)
SETTINGS materialize_skip_indexes_on_insert = 0;
