-- The hnsw_candidate_list_size_for_search the latest evaluation chose (search's default).
SELECT ef FROM laion_search_quality WHERE chosen ORDER BY measured_at DESC LIMIT 1;
