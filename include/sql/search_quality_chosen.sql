-- The search settings the latest evaluation chose (search's default): ef and the rescoring multiplier.
SELECT ef, rescore_multiplier FROM laion_search_quality WHERE chosen ORDER BY measured_at DESC LIMIT 1;
