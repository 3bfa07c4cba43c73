-- Top-k ids of tune's scratch table nearest a target, by the candidate index or, with
-- SETTINGS use_skip_indexes = 0, by an exact scan.
SELECT id
FROM {scratch:Identifier}
ORDER BY {metric:Identifier}(vector, {target:Array(Float32)})
LIMIT {k:UInt32};
