-- Current state of every shard the ledger knows. A shard is loaded once any load succeeded (a
-- failed reload leaves the previous load in place); last_outcome says how its latest attempt ended.
SELECT
    shard,
    countIf(outcome = 'loaded') > 0 AS loaded,
    argMaxIf(rows, finished_at, outcome = 'loaded') AS rows,
    maxIf(finished_at, outcome = 'loaded') AS loaded_at,
    argMax(outcome, finished_at) AS last_outcome,
    argMaxIf(error, finished_at, outcome = 'failed') AS last_error,
    max(try_number) AS max_try
FROM {ledger:Identifier}
GROUP BY shard
ORDER BY shard;
