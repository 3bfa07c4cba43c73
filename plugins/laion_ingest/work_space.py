"""The worker's disk: each shard's files under <work dir>/<dataset>/shard_<N>/, how many shards of a
run hold files at once, and the space they will need.

A shard's directory is in flight from its fetch until its load deletes it (or its task fails for
good). It holds a note, `in_flight.json`: the run that works on it and the bytes it holds at its
fullest (its three downloads and the staged Parquet, about as big again). From the notes, a shard
about to be fetched is held back while LAION_MAX_SHARDS_IN_FLIGHT shards of its run hold files
(counting shards waiting for a retry, whose downloads are kept for it), and refused when the disk
cannot hold it and what the shards in flight have still to write.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from laion_ingest import settings
from laion_ingest.datasets import Dataset
from laion_ingest.errors import DiskSpaceError
from laion_ingest.redaction import logger

log = logger(__name__)

NOTE = "in_flight.json"


class NoTurnYet(Exception):
    """The run already has its LAION_MAX_SHARDS_IN_FLIGHT shards holding files; try again later."""


def shard_dir(dataset: Dataset, shard: int) -> Path:
    return settings.work_dir() / dataset.name / f"shard_{shard}"


def shard_files_held(dataset: Dataset, shard: int):
    """Hold the shard's work directory while a stage uses it: two processes working on one shard
    (a run and the command line, say) take turns instead of appending to the same download or
    deleting the file the other is loading. The lock file lives outside the directory, which a load
    deletes."""
    return _held(f"{dataset.name}_shard_{shard}")


@contextmanager
def _held(name: str):
    locks = settings.work_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def take_turn(dataset: Dataset, shard: int, run_id: str, limit: int) -> None:
    """Mark the shard in flight for run_id, or raise NoTurnYet while `limit` other shards of that run
    hold files. Shards of other runs (leftovers of a killed run) take disk but no turn."""
    mine = shard_dir(dataset, shard)
    with _held("work_space"):
        if _note(mine).get("run_id") == run_id:
            return
        others = sorted(int(d.name[6:]) for d in _shard_dirs() if d != mine and _note(d).get("run_id") == run_id)
        if len(others) >= limit:
            raise NoTurnYet(f"shard {shard}: shards {others} of this run hold files in {settings.work_dir()}"
                            f" (LAION_MAX_SHARDS_IN_FLIGHT is {limit}); waiting for one to be loaded")
        _write_note(mine, run_id, 0)


def reserve(dataset: Dataset, shard: int, run_id: str, sizes: dict[str, int | None]) -> None:
    """Refuse to start a shard whose files the work directory cannot hold at their fullest, with
    what the other shards in flight have still to write; else note what this one will grow to."""
    unknown = [name for name, size in sizes.items() if size is None]
    if unknown:
        log.warning("shard %d: the server gives no size for %s; the space check leaves them out", shard, unknown)
    mine = shard_dir(dataset, shard)
    fullest = 2 * sum(size or 0 for size in sizes.values())
    with _held("work_space"):
        others = sum(_yet_to_write(d) for d in _shard_dirs() if d != mine)
        need = max(fullest - _bytes_in(mine), 0) + others
        free = shutil.disk_usage(settings.work_dir()).free
        if free < need:
            raise DiskSpaceError(
                f"shard {shard}: the work directory {settings.work_dir()} needs {need:,} bytes ({_gb(need)}) free"
                f" and has {free:,} ({_gb(free)}): {_gb(fullest)} for this shard's downloads and staged Parquet,"
                f" {_gb(others)} still to come for the shards in flight. Free space there or lower"
                " LAION_MAX_SHARDS_IN_FLIGHT")
        _write_note(mine, run_id, fullest)


def discard(dataset: Dataset, shard: int) -> None:
    """Delete the shard's directory (its task failed for good: a re-run fetches it again)."""
    with shard_files_held(dataset, shard):
        shutil.rmtree(shard_dir(dataset, shard), ignore_errors=True)
    log.info("shard %d: its files in %s are deleted", shard, shard_dir(dataset, shard))


def _shard_dirs() -> list[Path]:
    """Every shard's directory, of every dataset: they share the disk."""
    return [d for d in settings.work_dir().glob("*/shard_*") if d.is_dir()]


def _note(folder: Path) -> dict:
    try:
        return json.loads((folder / NOTE).read_text())
    except (OSError, ValueError):
        return {}


def _write_note(folder: Path, run_id: str, fullest: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NOTE).write_text(json.dumps({"run_id": run_id, "fullest_bytes": fullest}))


def _yet_to_write(folder: Path) -> int:
    return max(_note(folder).get("fullest_bytes", 0) - _bytes_in(folder), 0)


def _bytes_in(folder: Path) -> int:
    """The bytes of the files under folder, skipping those deleted meanwhile: other shards' loads
    delete their directories while this one counts them, without the work_space lock."""
    total = 0
    for root, _, files in os.walk(folder):  # os.walk skips a directory gone before it is listed
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"
