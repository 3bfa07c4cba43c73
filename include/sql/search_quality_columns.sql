-- The columns of laion_search_quality in this database (none before the first evaluation). Read
-- instead of creating the table, so that searching needs SELECT alone.
SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {quality:String};
