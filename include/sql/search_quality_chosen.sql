-- The search settings the latest evaluation chose (search's default): ef and the rescoring multiplier.
SELECT ef, rescore_multiplier FROM {quality:Identifier} WHERE chosen ORDER BY measured_at DESC LIMIT 1;
