-- A private table per shard load, with exactly the structure of laion (REPLACE PARTITION needs that).
-- A crash anywhere before stage_publish.sql leaves laion untouched; the next try starts here again.
DROP TABLE IF EXISTS {stage:Identifier};
CREATE TABLE {stage:Identifier} AS laion;
