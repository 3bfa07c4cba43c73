"""The end of a run: which shards of its range were loaded, skipped or failed, read from the ledger,
and whether the vector indexes were built. It is the run's last task, so its outcome is the run's."""
from __future__ import annotations

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.datasets import Dataset
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger, redact

log = logger(__name__)


class RunFailed(PermanentError):
    """Shards of the run failed, or its indexes were not built. Final: retrying the summary cannot
    change what happened upstream; the message says what to re-run."""


def summarize(run_id: str, dataset: Dataset, first: int, last: int, planned: list[int],
              indexes_built: bool = True, index_setting: str | None = None) -> dict:
    """Log a line per shard and return the summary; raise RunFailed if any planned shard failed or
    the index stage did not finish (indexes_built False). index_setting: the indexes' setting, typed
    or tuned with what tune measured."""
    with ClickHouse(dataset) as ch:
        outcomes = {r[0]: r[1:] for r in ch.run("run_summary", run_id=run_id)}
    todo = set(planned)
    summary = {"dataset": dataset.name, "index_setting": index_setting, "loaded": [], "failed": [],
               "skipped": [s for s in range(first, last + 1) if s not in todo]}
    for shard in planned:
        outcome, stage, rows, seconds, error, tries = outcomes.get(
            shard, ("failed", "?", 0, 0.0, "no result recorded", 0))
        if outcome == "loaded":
            summary["loaded"].append({"shard": shard, "rows": rows, "seconds": round(seconds, 1), "tries": tries})
            log.info("shard %d: loaded %d rows in %.1f s (try %d)", shard, rows, seconds, tries)
        else:
            error = redact(error)  # the summary is the run's XCom and log: nothing secret in either
            summary["failed"].append({"shard": shard, "stage": stage, "error": error, "tries": tries})
            log.error("shard %d: FAILED in %s after %d tries: %s", shard, stage, tries, error)
    if summary["skipped"]:
        log.info("skipped (already loaded): %s", summary["skipped"])
    if index_setting:
        log.info("vector indexes: %s", index_setting)
    total = sum(s["rows"] for s in summary["loaded"])
    log.info("%d shard(s) loaded (%d rows), %d skipped, %d failed",
             len(summary["loaded"]), total, len(summary["skipped"]), len(summary["failed"]))
    problems = []
    if summary["failed"]:
        failed = [s["shard"] for s in summary["failed"]]
        problems.append(f"{len(failed)} shard(s) failed: {failed}; re-run them with first_shard/last_shard"
                        f" (loaded shards are skipped)")
    if not indexes_built:
        problems.append("the vector indexes were not built: the log of the failed index task"
                        " (add_vector_indexes, build_vector_indexes or wait_for_vector_indexes) says why; fix that"
                        " and trigger the same range again: loaded shards are skipped and only parts without an"
                        " index are built")
    if problems:
        raise RunFailed("; ".join(problems))
    return summary
