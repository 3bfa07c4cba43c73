-- The latest failure of a shard in one DAG run: what the next try logs as its reason to exist.
SELECT try_number, stage, error
FROM {ledger:Identifier}
WHERE shard = {shard:UInt16} AND run_id = {run_id:String} AND outcome = 'failed'
ORDER BY finished_at DESC
LIMIT 1;
