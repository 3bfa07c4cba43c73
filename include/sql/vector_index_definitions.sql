SELECT name, expr, type_full
FROM system.data_skipping_indices
WHERE database = currentDatabase() AND table = 'laion' AND type = 'vector_similarity';
