-- Unfinished index mutations on laion, with the reason of their latest failure.
SELECT mutation_id, command, parts_to_do, is_done, latest_fail_reason
FROM system.mutations
WHERE database = currentDatabase() AND table = {table:String} AND NOT is_done
  AND command LIKE '%MATERIALIZE INDEX%';
