"""A shard's way through the stages, with every attempt in its dataset's ledger.

The DAG's `ingest_shard` task runs a shard's stages in order (`ingest`); the command line runs
each on its own, in a process of its own, which works because everything a stage needs is on disk
under <work dir>/<dataset>/shard_<N>/ (work_space.py) or passed as a small return value. A shard of
the npy layout is fetched, converted and loaded; a slice of the parquet layout is read by ClickHouse
where it is published (slices.py), so it has only a load.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager

import pyarrow.parquet as pq

from laion_ingest import settings, slices, staging
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.convert import convert_shard, staged_name
from laion_ingest.datasets import Dataset
from laion_ingest.fetch import fetch_shard, shard_sizes, source_auth
from laion_ingest.ledger import Attempt, differing_shards, shard_status
from laion_ingest.load import create_tables, drop_other_copies, load_shard
from laion_ingest.redaction import logger
from laion_ingest.work_space import reserve, shard_dir, shard_files_held, take_turn

log = logger(__name__)


def plan(dataset: Dataset, first: int, last: int, force: bool = False) -> list[int]:
    """Shards first..last of the dataset to load: all of them with force, else those the ledger has
    not loaded or whose rows in the table differ from the ledger's (checked on every plan, from part
    metadata). A range outside the dataset is refused."""
    dataset.check_range(first, last)
    wanted = list(range(first, last + 1))
    with ClickHouse(dataset) as ch:
        staging.require_reachable(ch.is_server and dataset.layout == "npy")
        create_tables(ch)
        shards = shard_status(ch)
        differing = differing_shards(ch, shards)
        for shard, how in differing.items():
            if first <= shard <= last:
                log.warning("shard %d: %s; loading it again", shard, how)
        done = set() if force else {s["shard"] for s in shards if s["loaded"]} - set(differing)
    skipped = [s for s in wanted if s in done]
    if skipped:
        log.info("skipping %d shard(s) already loaded: %s (force reloads them)", len(skipped), _brief(skipped))
    return [s for s in wanted if s not in done]


def _brief(shards: list[int]) -> str:
    return str(shards) if len(shards) <= 20 else f"{shards[:10]} ... {shards[-10:]}"


@contextmanager
def recorded(attempt: Attempt, stage: str):
    """Log the try (and why the previous one failed); write a failure of the stage to the ledger,
    then let it propagate."""
    log.info("%s shard %d: %s, try %d", attempt.dataset.name, attempt.shard, stage, attempt.try_number)
    if attempt.try_number > 1:
        with ClickHouse(attempt.dataset) as ch:
            ch.run("create_ledger")
            attempt.log_previous_failure(ch)
    try:
        yield
    except Exception as exc:
        log.error("shard %d: %s failed on try %d: %s", attempt.shard, stage, attempt.try_number, exc)
        with ClickHouse(attempt.dataset) as ch:  # the ledger only: on a cluster another node may be what failed
            ch.run("create_ledger")
            attempt.record(ch, "failed", stage, f"{type(exc).__name__}: {exc}")
        raise


def ingest(attempt: Attempt, source_url: str, force: bool = False, in_flight: int | None = None) -> int:
    """A shard's whole way, returning the rows loaded: fetch, convert, load for the npy layout (at most
    `in_flight` shards of a run hold files at once, work_space.py, so the work directory stays
    bounded whatever the range; a retry redoes only what is missing: fetch keeps whole files, convert a
    finished staged Parquet), or the slice's load for the parquet layout."""
    if attempt.dataset.layout == "parquet":
        return load_slice(attempt, source_url)
    attempt.source_bytes = fetch(attempt, source_url, force, in_flight)["files"]
    return load(attempt, convert(attempt))


def fetch(attempt: Attempt, source_url: str, force: bool = False, in_flight: int | None = None) -> dict:
    """Download the shard; returns {"files": {name: bytes}, "started_at": unix time} for the load's
    ledger row. force: fetch again what an earlier run left in the work directory (a retry of the
    same task keeps what its first try downloaded). in_flight: raise work_space.NoTurnYet, before
    anything is downloaded or recorded, while that many other shards of the run hold files.
    A source URL the package refuses (another scheme, credentials) is refused before all of that."""
    source_url = settings.source_url_value("source_url", source_url)
    dataset, shard = attempt.dataset, attempt.shard
    with shard_files_held(dataset, shard):
        if force and attempt.try_number == 1:
            shutil.rmtree(shard_dir(dataset, shard), ignore_errors=True)
        if in_flight:
            take_turn(dataset, shard, attempt.run_id, in_flight)
        with recorded(attempt, "fetch"):
            folder, auth = shard_dir(dataset, shard), source_auth()
            reserve(dataset, shard, attempt.run_id, shard_sizes(dataset, shard, source_url, folder, auth=auth))
            files = fetch_shard(dataset, shard, source_url, folder, auth=auth)
    return {"files": files, "started_at": attempt.started_at}


def convert(attempt: Attempt) -> int:
    """Convert the fetched shard; a staged Parquet already there is whole (convert renames it into
    place last) and is kept."""
    dataset, shard = attempt.dataset, attempt.shard
    folder = shard_dir(dataset, shard)
    staged = folder / staged_name(dataset, shard)
    with recorded(attempt, "convert"), shard_files_held(dataset, shard):
        if staged.exists():
            rows = pq.ParquetFile(staged).metadata.num_rows
            log.info("shard %d: %s already converted (%d rows)", shard, staged.name, rows)
            return rows
        return convert_shard(dataset, shard, folder, staged)


def load(attempt: Attempt, rows: int | None = None) -> int:
    """Load the converted shard; rows is what convert reported (default: the Parquet's row count)."""
    dataset, shard = attempt.dataset, attempt.shard
    parquet = shard_dir(dataset, shard) / staged_name(dataset, shard)
    with recorded(attempt, "load"), shard_files_held(dataset, shard):
        with ClickHouse(dataset) as ch:
            node = ch.node_for(shard)
            create_tables(ch, node)
            if not parquet.exists():
                done = ch.run("ledger_loaded_since", shard=shard, since=attempt.started_at)
                if done:  # another process loaded it while this one waited for the shard
                    log.info("shard %d: loaded by another process meanwhile (%d rows); nothing to do", shard,
                             done[0][0])
                    return done[0][0]
            if rows is None:
                rows = pq.ParquetFile(parquet).metadata.num_rows
            attempt.rows = load_shard(node, shard, parquet, rows)
            drop_other_copies(ch, node, shard)
            attempt.record(ch, "loaded", "load")
        shutil.rmtree(parquet.parent, ignore_errors=True)
    return attempt.rows


def load_slice(attempt: Attempt, source_url: str) -> int:
    """Load a slice of the parquet layout straight from its source file (slices.py)."""
    source_url = settings.source_url_value("source_url", source_url)
    with recorded(attempt, "load"), ClickHouse(attempt.dataset) as ch:
        piece = slices.plan_slice(ch, source_url, attempt.shard)
        attempt.source_bytes = {piece.file: piece.source_bytes}
        node = ch.node_for(attempt.shard)
        create_tables(ch, node)
        attempt.rows = slices.load_slice(node, piece, attempt.shard)
        drop_other_copies(ch, node, attempt.shard)
        attempt.record(ch, "loaded", "load")
    log.info("shard %d: slice %d of %s, %d rows loaded", attempt.shard, piece.piece, piece.file, attempt.rows)
    return attempt.rows
