-- The image index's definition, vector_similarity('hnsw', metric, dim, quantization, M, ef_construction).
SELECT type_full FROM system.data_skipping_indices
WHERE database = currentDatabase() AND table = {table:String} AND name = 'image_index';
