-- How each shard's latest attempt in one DAG run ended.
SELECT
    shard,
    argMax(outcome, finished_at) AS outcome,
    argMax(stage, finished_at) AS stage,
    argMax(rows, finished_at) AS rows,
    argMax(toFloat64(finished_at) - toFloat64(started_at), finished_at) AS seconds,
    argMax(error, finished_at) AS error,
    max(try_number) AS tries
FROM {ledger:Identifier}
WHERE run_id = {run_id:String}
GROUP BY shard;
