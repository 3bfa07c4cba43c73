"""A shard's way through the stages, on the work directory, with every attempt in the ledger.

The Airflow tasks and the command line both call these functions; each stage can run in its own
process (its own Airflow task), because everything it needs is on disk under
<work dir>/shard_<N>/ or passed as a small return value.
"""
from __future__ import annotations

import fcntl
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from laion_ingest import settings, staging
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.convert import convert_shard, staged_name
from laion_ingest.fetch import fetch_shard
from laion_ingest.ledger import Attempt, differing_shards, shard_status
from laion_ingest.load import create_tables, load_shard

log = logging.getLogger(__name__)


def shard_dir(shard: int) -> Path:
    return settings.work_dir() / f"shard_{shard}"


@contextmanager
def shard_files_held(shard: int):
    """Hold the shard's work directory while a stage uses it: two processes working on one shard
    (a run and the command line, say) take turns instead of appending to the same download or
    deleting the file the other is loading. The lock file lives outside the directory, which a load
    deletes."""
    locks = settings.work_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"shard_{shard}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def plan(first: int, last: int, force: bool = False) -> list[int]:
    """Shards first..last to load: all of them with force, else those the ledger has not loaded or
    whose rows in the table differ from the ledger's (checked on every plan, from part metadata)."""
    wanted = list(range(first, last + 1))
    with ClickHouse() as ch:
        staging.require_reachable(ch.is_server)
        create_tables(ch)
        shards = shard_status(ch)
        differing = differing_shards(ch, shards)
        for shard, how in differing.items():
            if first <= shard <= last:
                log.warning("shard %d: %s; loading it again", shard, how)
        done = set() if force else {s["shard"] for s in shards if s["loaded"]} - set(differing)
    skipped = [s for s in wanted if s in done]
    if skipped:
        log.info("skipping %d shard(s) already loaded: %s (force reloads them)", len(skipped), skipped)
    return [s for s in wanted if s not in done]


@contextmanager
def recorded(attempt: Attempt, stage: str):
    """Log the try (and why the previous one failed); write a failure of the stage to the ledger,
    then let it propagate."""
    log.info("shard %d: %s, try %d", attempt.shard, stage, attempt.try_number)
    if attempt.try_number > 1:
        with ClickHouse() as ch:
            create_tables(ch)
            attempt.log_previous_failure(ch)
    try:
        yield
    except Exception as exc:
        log.error("shard %d: %s failed on try %d: %s", attempt.shard, stage, attempt.try_number, exc)
        with ClickHouse() as ch:
            create_tables(ch)
            attempt.record(ch, "failed", stage, f"{type(exc).__name__}: {exc}")
        raise


def fetch(attempt: Attempt, source_url: str, force: bool = False) -> dict:
    """Download the shard; returns {"files": {name: bytes}, "started_at": unix time} for the load's
    ledger row. force: fetch again what an earlier run left in the work directory (a retry of the
    same task keeps what its first try downloaded)."""
    with recorded(attempt, "fetch"), shard_files_held(attempt.shard):
        if force and attempt.try_number == 1:
            shutil.rmtree(shard_dir(attempt.shard), ignore_errors=True)
        files = fetch_shard(attempt.shard, source_url, shard_dir(attempt.shard), auth=settings.source_auth())
    return {"files": files, "started_at": attempt.started_at}


def convert(attempt: Attempt) -> int:
    folder = shard_dir(attempt.shard)
    with recorded(attempt, "convert"), shard_files_held(attempt.shard):
        return convert_shard(attempt.shard, folder, folder / staged_name(attempt.shard))


def load(attempt: Attempt, rows: int | None = None) -> int:
    """Load the converted shard; rows is what convert reported (default: the Parquet's row count)."""
    parquet = shard_dir(attempt.shard) / staged_name(attempt.shard)
    with recorded(attempt, "load"), shard_files_held(attempt.shard):
        with ClickHouse() as ch:
            create_tables(ch)
            if not parquet.exists():
                done = ch.run("ledger_loaded_since", shard=attempt.shard, since=attempt.started_at)
                if done:  # another process loaded it while this one waited for the shard
                    log.info("shard %d: loaded by another process meanwhile (%d rows); nothing to do",
                             attempt.shard, done[0][0])
                    return done[0][0]
            if rows is None:
                rows = pq.ParquetFile(parquet).metadata.num_rows
            attempt.rows = load_shard(ch, attempt.shard, parquet, rows)
            attempt.record(ch, "loaded", "load")
        shutil.rmtree(parquet.parent, ignore_errors=True)
    return attempt.rows
