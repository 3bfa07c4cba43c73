"""One measured stage per process: `python bench/stages.py NAME '{json kwargs}'`.

A fresh process per stage makes its peak RSS (the process's VmHWM, and the max RSS of any child
it waited for, e.g. wget) belong to that stage alone, and its CPU time (all threads, chdb's
included) too. The stage's own clock excludes interpreter start and imports. The last line of
output is `BENCH_RESULT {json}` with seconds, cpu, rss_mb and what the stage returned.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import pandas  # noqa: E402,F401  pyarrow imports it on first use; an import, so not in any stage's seconds
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from laion_ingest import convert as conv  # noqa: E402

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
    return {"bytes": sum(fetch_shard(shard, url, Path(dest)).values())}


@stage
def convert(shard: int, src: str, out: str) -> dict:
    """The package's convert_shard."""
    rows = conv.convert_shard(shard, Path(src), Path(out))
    return {"rows": rows, "bytes": Path(out).stat().st_size}


def _timed_sql(log: list):
    """Record each statement the package sends to ClickHouse, with its seconds."""
    from laion_ingest import clickhouse
    execute = clickhouse._execute

    def timed(client, statement, params):
        t = time.perf_counter()
        try:
            return execute(client, statement, params)
        finally:
            log.append((" ".join(statement.split())[:60], round(time.perf_counter() - t, 3)))
    clickhouse._execute = timed


@stage
def load(shard: int, parquet: str, chdb: str) -> dict:
    """The package's load_shard into a fresh chdb directory, statement timings kept."""
    from laion_ingest.clickhouse import Chdb, ClickHouse
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
    sys.path.insert(0, str(ROOT / "tests"))
    from clickhouse_server import ClickHouseServer
    from s3_server import BUCKET, S3Server
    from laion_ingest.clickhouse import ClickHouse, Server
    shutil.rmtree(base, ignore_errors=True)
    with ClickHouseServer(Path(base) / "server") as server, S3Server(Path(base) / "s3") as s3:
        server.sql("CREATE DATABASE laion")  # clickhouse-local's `default` also shows the file system
        os.environ.update({"AIRFLOW_CONN_LAION_CLICKHOUSE": server.connection_uri("laion"), "AIRFLOW_CONN_LAION_S3":
                           s3.connection(), "LAION_STAGING_URL": f"s3://{BUCKET}/bench", "LAION_S3_CONN_ID": "laion_s3"})
        with ClickHouse(Server("laion_clickhouse")) as ch:
            result = _timed_load(ch, shard, parquet)
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        result["server_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return result


# ---------------------------------------------------------------- variants (bench code, not the package)

@stage
def write_variant(shard: int, src: str, out: str, fmt: str = "parquet", vec: str = "f16",
                  vec_compression: str = "none", vec_dict_stats: bool = False,
                  row_group: int = 16_384) -> dict:
    """convert_shard's loop written by pyarrow alone, with one option changed: file format, vector
    float type, vector compression, dictionary+statistics on vectors, row-group size. Reads the
    sources as it does. fmt='package' is convert_shard itself."""
    if fmt == "package":
        return convert(shard, src, out)
    img_name, text_name, meta_name = conv.shard_files(shard)
    meta = pq.ParquetFile(Path(src) / meta_name)
    schema = conv.staged_schema(pa.float16() if vec == "f16" else pa.float32())
    vector = schema.field("image_embedding").type
    plain = schema.names[:-2]
    if fmt == "parquet":  # options of a nested column are keyed by its leaf path
        leaves = ["image_embedding.list.element", "text_embedding.list.element"]
        writer = pq.ParquetWriter(out, schema, compression={n: "zstd" for n in plain} | {
            n: vec_compression for n in leaves}, use_dictionary=plain + leaves * vec_dict_stats,
            write_statistics=plain + leaves * vec_dict_stats)
    else:  # Arrow IPC file ("Feather v2"): buffers written as they are, no Parquet encoding
        compression = None if vec_compression == "none" else vec_compression
        writer = pa.ipc.new_file(out, schema, options=pa.ipc.IpcWriteOptions(compression=compression))
    start = 0
    with writer, conv._Npy(shard, src, img_name) as img, conv._Npy(shard, src, text_name) as text:
        for batch in meta.iter_batches(batch_size=row_group, columns=conv.METADATA.names, use_threads=False):
            n = batch.num_rows
            columns = [*conv.key_columns(shard, start, n), *conv._cast_metadata(shard, meta_name, batch),
                       _vectors(img, n, vector), _vectors(text, n, vector)]
            b = pa.record_batch(columns, schema=schema)
            writer.write_batch(b, row_group_size=row_group) if fmt == "parquet" else writer.write_batch(b)
            start += n
    return {"rows": start, "bytes": Path(out).stat().st_size}


def _null_laion(chdb: str):
    """A chdb session with laion's columns in a Null table `n`: reading costs, no storage."""
    from chdb import session
    from laion_ingest.clickhouse import Chdb, ClickHouse
    from laion_ingest.load import create_tables
    shutil.rmtree(chdb, ignore_errors=True)
    with ClickHouse(Chdb(Path(chdb))) as ch:
        create_tables(ch)
        ch.query("CREATE TABLE n AS laion ENGINE = Null")
    return session.Session(chdb)


@stage
def read_variant(path: str, fmt: str, chdb: str, settings: str = "storage_file_read_method = 'pread'") -> dict:
    """ClickHouse reading a converted file (every column, cast to laion's types) into a Null table."""
    s = _null_laion(chdb)
    started = time.perf_counter()
    s.query(f"INSERT INTO n SELECT * FROM file('{path}', {fmt}) SETTINGS {settings}")
    return {"work_seconds": time.perf_counter() - started}


@stage
def read_npy(paths: list, chdb: str) -> dict:
    """ClickHouse reading the source float16 .npy files itself (file(path, Npy)), one after the other."""
    s = _null_laion(chdb)
    started = time.perf_counter()
    for p, column in zip(paths, ("image_embedding", "text_embedding")):
        s.query(f"INSERT INTO n ({column}) SELECT array FROM file('{p}', Npy)"
                " SETTINGS storage_file_read_method = 'pread'")
    return {"work_seconds": time.perf_counter() - started}


@stage
def load_variant(shard: int, path: str, chdb: str, fmt: str = "Parquet", settings: str = "",
                 table_settings: str = "", declare_indexes: dict | None = None, optimize: bool = True) -> dict:
    """The load's SQL (stage table, INSERT ... FROM file, check, OPTIMIZE FINAL, REPLACE PARTITION)
    with the given insert settings and staging-table settings; each step timed. declare_indexes adds
    the HNSW indexes first (a backfill after the indexes exist), to see what
    materialize_skip_indexes_on_insert does."""
    from laion_ingest.clickhouse import Chdb, ClickHouse
    from laion_ingest.index import IndexParams, add_indexes
    from laion_ingest.load import create_tables
    shutil.rmtree(chdb, ignore_errors=True)
    steps = []
    with ClickHouse(Chdb(Path(chdb))) as ch:
        create_tables(ch)
        if declare_indexes is not None:
            add_indexes(ch, IndexParams(**declare_indexes))
        ch.query("CREATE TABLE stage AS laion" + (f" SETTINGS {table_settings}" if table_settings else ""))
        settings = settings or "materialize_skip_indexes_on_insert = 0"
        sql = [("insert", f"INSERT INTO stage SELECT * FROM file('{path}', {fmt}) SETTINGS {settings}"),
               ("check", "SELECT count(), uniqExact(id) FROM stage"),
               ("parts", "SELECT count(), sum(secondary_indices_compressed_bytes) FROM system.parts"
                         " WHERE table = 'stage' AND active")]
        sql += [("optimize", "OPTIMIZE TABLE stage FINAL")] * optimize
        sql += [("publish", f"ALTER TABLE laion REPLACE PARTITION {shard} FROM stage"),
                ("final", "SELECT count(), sum(rows), sum(bytes_on_disk), sum(secondary_indices_compressed_bytes)"
                          " FROM system.parts WHERE table = 'laion' AND active")]
        started = time.perf_counter()
        out = {}
        for name, q in sql:
            ch.query("SYSTEM JEMALLOC PURGE")  # give back freed memory, so each step's peak is its own
            reset_peak_rss()
            t, w = time.perf_counter(), written()
            out[name] = ch.query(q)
            steps.append((name, round(time.perf_counter() - t, 3), round(peak_rss_kb() / 1024), written() - w))
        seconds = time.perf_counter() - started
    parts, rows, size, index_bytes = out["final"][0]
    return {"rows": rows, "bytes": size, "parts": parts, "staged_parts": out["parts"][0][0],
            "staged_index_bytes": out["parts"][0][1], "index_bytes": index_bytes,
            "work_seconds": seconds, "steps": steps, "peak_kb": max(PEAKS)}


# ---------------------------------------------------------------- what this machine allows

@stage
def memory_probe(dest: str, gib: int = 2) -> dict:
    """How fast this machine gives a process memory it has not touched yet: `gib` GiB of fresh
    anonymous pages touched once, then `gib` GiB written to a new file (into the page cache, no
    fsync). Every byte a load or convert writes lands in such fresh page-cache pages."""
    import mmap
    chunk = b"\1" * (1 << 20)
    t = time.perf_counter()
    m = mmap.mmap(-1, gib << 30)
    for i in range(0, gib << 30, 1 << 20):
        m[i:i + (1 << 20)] = chunk
    touch = time.perf_counter() - t
    m.close()
    t = time.perf_counter()
    with open(dest, "wb") as f:
        for _ in range(gib << 10):
            f.write(chunk)
    write = time.perf_counter() - t
    os.unlink(dest)
    return {"touch_gib_s": gib / touch, "write_gib_s": gib / write}


@stage
def vectors_floor(shard: int, src: str, vec: str = "f16", batch_rows: int = conv.BATCH_ROWS) -> dict:
    """pyarrow writing only the two vector columns, typed as convert_shard types them, to /dev/null:
    the fastest pyarrow alone writes float16 fixed-size lists here, before metadata and the disk.
    vec='f32' writes them widened to float32, to tell pyarrow's float16 path from the list levels."""
    img_name, text_name, _ = conv.shard_files(shard)
    with conv._Npy(shard, src, img_name) as img, conv._Npy(shard, src, text_name) as text:
        dtype = np.dtype(np.float32) if vec == "f32" else img.dtype
        vector = pa.list_(pa.field("item", pa.from_numpy_dtype(dtype), nullable=False), conv.DIM)
        schema = pa.schema([pa.field("image_embedding", vector, nullable=False),
                            pa.field("text_embedding", vector, nullable=False)])
        with pq.ParquetWriter("/dev/null", schema, compression="none", use_dictionary=False,
                              write_statistics=False) as out:
            for start in range(0, img.rows, batch_rows):
                n = min(batch_rows, img.rows - start)
                columns = [_vectors(img, n, vector), _vectors(text, n, vector)]
                out.write_batch(pa.record_batch(columns, schema=schema), row_group_size=batch_rows)
    return {"rows": img.rows}


def _vectors(npy, n: int, vector: pa.DataType) -> pa.Array:
    """The next n rows of a .npy as pyarrow's fixed-size lists of vector's float type."""
    values = np.frombuffer(npy.read(n), npy.dtype).astype(vector.value_type.to_pandas_dtype(), copy=False)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), type=vector)


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
    from laion_ingest.clickhouse import Chdb, ClickHouse
    from laion_ingest.fetch import fetch_shard
    from laion_ingest.index import IndexParams, build_indexes
    from laion_ingest.load import create_tables, load_shard
    shutil.rmtree(chdb, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)

    def load(ch, shard):
        folder = Path(work) / f"shard_{shard}"
        fetch_shard(shard, url, folder)
        rows = conv.convert_shard(shard, folder, folder / "x.parquet")
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
    for shard in pipeline.plan(first, last):
        t = [time.perf_counter()]
        fetched = pipeline.fetch(Attempt(shard), url)
        t.append(time.perf_counter())
        n = pipeline.convert(Attempt(shard))
        t.append(time.perf_counter())
        attempt = Attempt(shard, source_bytes=fetched["files"], started_at=fetched["started_at"])
        rows += pipeline.load(attempt, n)
        t.append(time.perf_counter())
        per_shard.append([round(b - a, 4) for a, b in zip(t, t[1:])])  # fetch, convert, load seconds
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
    import logging
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
    main()
