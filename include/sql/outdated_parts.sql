-- Parts of laion replaced by a reload and not yet deleted (old_parts_lifetime, create_laion.sql).
-- Empty parts are left out: REPLACE PARTITION leaves a 135-byte one that ClickHouse keeps longer.
SELECT count(), sum(bytes_on_disk)
FROM system.parts
WHERE database = currentDatabase() AND table = {table:String} AND NOT active AND rows > 0;
