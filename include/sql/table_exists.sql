-- Whether a table exists in the connection's database: read-only commands (status, evaluate,
-- clip-check) say "nothing loaded yet" instead of failing on a missing table or creating it.
SELECT count() > 0 FROM system.tables WHERE database = currentDatabase() AND name = {name:String};
