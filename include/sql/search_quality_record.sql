INSERT INTO {quality:Identifier} (run_id, index_type, kind, ef, rescore_multiplier, k, queries, shards, recall, p50_ms, p95_ms, exact_p50_ms,
                                  target_recall, chosen)
SELECT {run_id:String}, {index_type:String}, {kind:String}, {ef:UInt32}, {rescore:UInt32}, {k:UInt32}, {queries:UInt32}, {shards:Array(UInt16)},
       {recall:Float64}, {p50_ms:Float64}, {p95_ms:Float64}, {exact_p50_ms:Float64}, {target_recall:Float64},
       {chosen:UInt8};
