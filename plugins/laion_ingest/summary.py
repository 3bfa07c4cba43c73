"""The end of a run: which shards of its range were loaded, skipped or failed, read from the ledger."""
from __future__ import annotations

import logging

from laion_ingest.clickhouse import ClickHouse

log = logging.getLogger(__name__)


class ShardsFailed(Exception):
    """Some shards of the run failed; the message names them so they can be re-run."""


def summarize(run_id: str, first: int, last: int, planned: list[int]) -> dict:
    """Log a line per shard and return the summary; raise ShardsFailed if any planned shard failed."""
    with ClickHouse() as ch:
        outcomes = {r[0]: r[1:] for r in ch.run("run_summary", run_id=run_id)}
    summary = {"loaded": [], "skipped": [s for s in range(first, last + 1) if s not in planned], "failed": []}
    for shard in planned:
        outcome, stage, rows, seconds, error, tries = outcomes.get(shard, ("failed", "?", 0, 0.0, "no result recorded", 0))
        if outcome == "loaded":
            summary["loaded"].append({"shard": shard, "rows": rows, "seconds": round(seconds, 1), "tries": tries})
            log.info("shard %d: loaded %d rows in %.1f s (try %d)", shard, rows, seconds, tries)
        else:
            summary["failed"].append({"shard": shard, "stage": stage, "error": error, "tries": tries})
            log.error("shard %d: FAILED in %s after %d tries: %s", shard, stage, tries, error)
    if summary["skipped"]:
        log.info("skipped (already loaded): %s", summary["skipped"])
    total = sum(s["rows"] for s in summary["loaded"])
    log.info("%d shard(s) loaded (%d rows), %d skipped, %d failed",
             len(summary["loaded"]), total, len(summary["skipped"]), len(summary["failed"]))
    if summary["failed"]:
        failed = [s["shard"] for s in summary["failed"]]
        raise ShardsFailed(f"{len(failed)} shard(s) failed: {failed}; re-run them with first_shard/last_shard"
                           f" (loaded shards are skipped)")
    return summary
