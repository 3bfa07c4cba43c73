-- Unfinished index mutations on laion: parts each has still to build, and the part and reason of
-- its latest failure.
SELECT mutation_id, command, parts_to_do, latest_failed_part, latest_fail_reason
FROM system.mutations
WHERE database = currentDatabase() AND table = {table:String} AND NOT is_done
  AND command LIKE '%MATERIALIZE INDEX%';
