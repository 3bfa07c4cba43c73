-- The definition of a vector index (image_index, text_index or vector_index),
-- vector_similarity('hnsw', metric, dim, quantization, M, ef_construction).
SELECT type_full FROM system.data_skipping_indices
WHERE database = currentDatabase() AND table = {table:String} AND name = {name:String};
