-- Build the candidate index of tune's scratch table (tune_scratch.sql) while tune times it;
-- mutations_sync = 2 returns when the graph is built.
ALTER TABLE {scratch:Identifier} MATERIALIZE INDEX tune_index SETTINGS mutations_sync = 2;
