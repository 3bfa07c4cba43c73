-- Append one attempt to the ledger; times are Unix seconds, source_files[i] has source_bytes[i] bytes.
INSERT INTO {ledger:Identifier} (shard, outcome, stage, try_number, rows, source_bytes, started_at, finished_at, error, run_id)
SELECT {shard:UInt16}, {outcome:String}, {stage:String}, {try_number:UInt16}, {rows:UInt64},
       mapFromArrays({source_files:Array(String)}, {source_bytes:Array(UInt64)}), toDateTime64({started_at:Float64}, 3, 'UTC'),
       toDateTime64({finished_at:Float64}, 3, 'UTC'), {error:String}, {run_id:String};
