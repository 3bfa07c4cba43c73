SELECT name, expr, type_full
FROM system.data_skipping_indices
WHERE database = currentDatabase() AND table = {table:String} AND type = 'vector_similarity';
