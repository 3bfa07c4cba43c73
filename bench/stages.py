"""One measured stage per process: `python bench/stages.py NAME '{json kwargs}'`.

A fresh process per stage makes its peak RSS (the process's VmHWM, and the max RSS of any child
it waited for, e.g. wget) belong to that stage alone, and its CPU time (all threads, chdb's
included) too. The stage's own clock excludes interpreter start and imports. The last line of
output is `BENCH_RESULT {json}` with seconds, cpu, rss_mb and what the stage returned.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import pandas  # noqa: F401  pyarrow imports it on first use; an import, so not in any stage's seconds
import pyarrow.parquet as pq

from laion_ingest import convert as conv
from laion_ingest import datasets

LAION400M = datasets.get("laion400m")

ROOT = Path(__file__).resolve().parents[1]



STAGES = {}


def stage(fn):
    STAGES[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- the seed's method

@stage
def seed_download(url: str, shard: int, dest: str) -> dict:
    import seed_method
    return {"bytes": seed_method.download(url, shard, Path(dest))}


@stage
def seed_csv(src: str, shard: int, csv: str) -> dict:
    import seed_method
    rows = seed_method.to_csv(Path(src), shard, Path(csv))
    return {"rows": rows, "bytes": Path(csv).stat().st_size}


@stage
def seed_insert(csv: str, chdb: str) -> dict:
    import seed_method
    shutil.rmtree(chdb, ignore_errors=True)
    rows = seed_method.insert(Path(csv), Path(chdb))
    return {"rows": rows, "bytes": _dir_bytes(chdb)}


# ---------------------------------------------------------------- ours, through the package

@stage
def fetch(url: str, shard: int, dest: str) -> dict:
    from laion_ingest.fetch import fetch_shard
    shutil.rmtree(dest, ignore_errors=True)
    return {"bytes": sum(fetch_shard(LAION400M, shard, url, Path(dest)).values())}


@stage
def convert(shard: int, src: str, out: str) -> dict:
    """The package's convert_shard."""
    rows = conv.convert_shard(LAION400M, shard, Path(src), Path(out))
    return {"rows": rows, "bytes": Path(out).stat().st_size}


class _StatementTimes(logging.Handler):
    """Each statement the package sends to ClickHouse, with its seconds, from the DEBUG line its seam
    logs for every statement."""

    def __init__(self, log: list):
        super().__init__(logging.DEBUG)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        seconds, statement = re.fullmatch(r"statement took ([\d.]+) s: (.*)", record.getMessage()).groups()
        self.log.append((statement, round(float(seconds), 3)))


def _timed_sql(log: list) -> None:
    seam = logging.getLogger("laion_ingest.engines")
    seam.setLevel(logging.DEBUG)
    seam.addHandler(_StatementTimes(log))


@stage
def load(shard: int, parquet: str, chdb: str) -> dict:
    """The package's load_shard into a fresh chdb directory, statement timings kept."""
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.engines import Chdb
    shutil.rmtree(chdb, ignore_errors=True)
    with ClickHouse(Chdb(Path(chdb))) as ch:
        return _timed_load(ch, shard, parquet)


def _timed_load(ch, shard: int, parquet: str) -> dict:
    """load_shard into a new laion, with each statement's seconds and the part it made."""
    from laion_ingest.load import create_tables, load_shard
    rows = pq.ParquetFile(parquet).metadata.num_rows
    create_tables(ch)
    log: list = []
    _timed_sql(log)
    started = time.perf_counter()
    load_shard(ch, shard, Path(parquet), rows)
    seconds = time.perf_counter() - started
    parts, size = ch.query("SELECT count(), sum(bytes_on_disk) FROM system.parts"
                           " WHERE database = currentDatabase() AND table = 'laion' AND active")[0]
    return {"rows": rows, "bytes": size, "parts": parts, "work_seconds": seconds, "steps": log}


@stage
def load_server(shard: int, parquet: str, base: str) -> dict:
    """The package's load_shard into a ClickHouse server (tests/clickhouse_server.py, on loopback)
    through the provider's connection, staged in S3 (SeaweedFS), as a user with a server runs it.
    seconds include the upload to S3; server_rss_mb is the server process's peak."""
    from clickhouse_server import ClickHouseServer
    from s3_server import BUCKET, S3Server

    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.engines import Server
    shutil.rmtree(base, ignore_errors=True)
    with ClickHouseServer(Path(base) / "server") as server, S3Server(Path(base) / "s3") as s3:
        server.sql("CREATE DATABASE laion")  # clickhouse-local's `default` also shows the file system
        os.environ.update({"AIRFLOW_CONN_LAION_CLICKHOUSE": server.connection_uri("laion"),
                           "AIRFLOW_CONN_LAION_S3": s3.connection(), "LAION_STAGING_URL": f"s3://{BUCKET}/bench",
                           "LAION_S3_CONN_ID": "laion_s3"})
        with ClickHouse(Server("laion_clickhouse")) as ch:
            result = _timed_load(ch, shard, parquet)
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        result["server_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return result


# ---------------------------------------------------------------- index build and the indexed-once proof

PARTS = ("SELECT partition, name, rows, secondary_indices_compressed_bytes, path"
         " FROM system.parts WHERE table = 'laion' AND active ORDER BY partition")


def _parts(ch) -> list:
    """Active parts of laion, with the inode numbers of their vector index files: a part that only
    got a new name (a mutation of another partition clones it with hard links) keeps its inodes;
    a rebuilt index would be a new file."""
    return [(p, name, rows, size, sorted(f.stat().st_ino for f in Path(path).glob("skp_idx*")))
            for p, name, rows, size, path in ch.query(PARTS)]


@stage
def index_build(url: str, shards: list, work: str, chdb: str, m: int = 64, ef_construction: int = 256) -> dict:
    """Load shards[:-1] through the package, build both indexes (seed parameters) with
    index.build_indexes, then load shards[-1] as a backfill and build again. Returns the part
    layout at each step and every mutation, the evidence that each part was indexed once."""
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.engines import Chdb
    from laion_ingest.fetch import fetch_shard
    from laion_ingest.index import IndexParams, build_indexes
    from laion_ingest.load import create_tables, load_shard
    shutil.rmtree(chdb, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)

    def load(ch, shard):
        folder = Path(work) / f"shard_{shard}"
        fetch_shard(LAION400M, shard, url, folder)
        rows = conv.convert_shard(LAION400M, shard, folder, folder / "x.parquet")
        load_shard(ch, shard, folder / "x.parquet", rows)
        return rows

    out = {}
    params = IndexParams(m=m, ef_construction=ef_construction)
    with ClickHouse(Chdb(Path(chdb))) as ch:
        create_tables(ch)
        rows = sum(load(ch, s) for s in shards[:-1])
        out["after_load"] = _parts(ch)
        t = time.perf_counter()
        out["built"] = build_indexes(ch, params, poll_seconds=0.5)
        out["build_seconds"], out["build_rows"] = time.perf_counter() - t, rows
        out["after_build"] = _parts(ch)
        out["backfill_rows"] = load(ch, shards[-1])
        out["after_backfill_load"] = _parts(ch)
        t = time.perf_counter()
        out["backfill_built"] = build_indexes(ch, params, poll_seconds=0.5)
        out["backfill_seconds"] = time.perf_counter() - t
        out["after_backfill_build"] = _parts(ch)
        out["mutations"] = ch.query("SELECT mutation_id, command, is_done, parts_to_do FROM system.mutations"
                                    " WHERE table = 'laion' ORDER BY create_time, mutation_id")
        out["index_type"] = ch.query("SELECT name, type_full FROM system.data_skipping_indices WHERE table = 'laion'")
    return json.loads(json.dumps(out, default=str))


# ---------------------------------------------------------------- orchestration baseline

@stage
def tiny_direct(url: str, first: int, last: int, work: str, chdb: str) -> dict:
    """What the DAG runs for each shard (pipeline.plan, fetch, convert, load), called directly in
    one process: the stages' own cost, to subtract from the DAG's wall time."""
    shutil.rmtree(chdb, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    os.environ.update(LAION_CHDB_PATH=chdb, LAION_WORK_DIR=work)
    from laion_ingest import pipeline
    from laion_ingest.ledger import Attempt
    started = time.perf_counter()
    rows, per_shard = 0, []
    for shard in pipeline.plan(LAION400M, first, last):
        t = [time.perf_counter()]
        fetched = pipeline.fetch(Attempt(shard), url)
        t.append(time.perf_counter())
        n = pipeline.convert(Attempt(shard))
        t.append(time.perf_counter())
        attempt = Attempt(shard, source_bytes=fetched["files"], started_at=fetched["started_at"])
        rows += pipeline.load(attempt, n)
        t.append(time.perf_counter())
        per_shard.append([round(b - a, 4) for a, b in zip(t, t[1:], strict=False)])  # fetch, convert, load seconds
    return {"rows": rows, "work_seconds": time.perf_counter() - started, "per_shard": per_shard}


PEAKS = [0]  # peaks of the process before each reset_peak_rss()


def written() -> int:
    """Bytes this process passed to write() so far (page cache included, not only the disk)."""
    return next(int(line.split()[1]) for line in open("/proc/self/io") if line.startswith("wchar:"))


def peak_rss_kb() -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))


def reset_peak_rss() -> None:
    """Start a new peak (VmHWM) for the next step, remembering the old one for the stage's peak."""
    PEAKS.append(peak_rss_kb())
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main() -> None:
    import variants  # noqa: F401  registers its stages in STAGES
    logging.basicConfig(level=logging.WARNING)
    name, kwargs = sys.argv[1], json.loads(sys.argv[2])
    usage = lambda who: resource.getrusage(who)  # noqa: E731
    profile = kwargs.pop("profile", False)
    if profile:  # cProfile of the stage, top functions by own time (it slows the stage a little)
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
    t, c = time.perf_counter(), sum(usage(resource.RUSAGE_SELF)[:2])
    result = STAGES[name](**kwargs)
    seconds = time.perf_counter() - t
    if profile:
        profiler.disable()
        stats = pstats.Stats(profiler).stats
        top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:8]
        result["profile"] = [(f"{Path(f).name}:{line}({fn})", round(v[2], 3), round(v[3], 3))
                             for (f, line, fn), v in top]
    me, kids = usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its parent's peak.
    hwm = max(peak_rss_kb(), result.pop("peak_kb", 0))
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    result.update(seconds=seconds, cpu=me.ru_utime + me.ru_stime - c + kids.ru_utime + kids.ru_stime,
                  rss_mb=max(hwm, kids.ru_maxrss) / 1024, written=int(io["wchar"]), read=int(io["rchar"]))
    print("BENCH_RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    import stages  # the stages registry is the module's, which variants.py fills: not __main__'s copy

    stages.main()
