"""The variants bench/run.py compares with the package's own stages (registered in stages.py's
STAGES, run one per process like them): other staged formats and options, ClickHouse reading them,
the load's SQL with other settings, and what this machine's memory and pyarrow allow.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from stages import PEAKS, convert, peak_rss_kb, reset_peak_rss, stage, written

from laion_ingest import convert as conv
from laion_ingest import datasets

LAION400M = datasets.get("laion400m")
DIM = LAION400M.dim


@stage
def write_variant(shard: int, src: str, out: str, fmt: str = "parquet", vec: str = "f16",
                  vec_compression: str = "none", vec_dict_stats: bool = False,
                  row_group: int = 16_384) -> dict:
    """convert_shard's loop written by pyarrow alone, with one option changed: file format, vector
    float type, vector compression, dictionary+statistics on vectors, row-group size. Reads the
    sources as it does. fmt='package' is convert_shard itself."""
    if fmt == "package":
        return convert(shard, src, out)
    img_name, text_name, meta_name = LAION400M.files(shard)
    meta = pq.ParquetFile(Path(src) / meta_name)
    schema = conv.staged_schema(LAION400M, pa.float16() if vec == "f16" else pa.float32())
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
    with writer, conv.NpyRows(shard, src, img_name, DIM) as img, conv.NpyRows(shard, src, text_name, DIM) as text:
        for batch in meta.iter_batches(batch_size=row_group, columns=LAION400M.metadata.names, use_threads=False):
            n = batch.num_rows
            columns = [*conv.key_columns(shard, start, n), *conv.cast_metadata(LAION400M, shard, meta_name, batch),
                       _vectors(img, n, vector), _vectors(text, n, vector)]
            b = pa.record_batch(columns, schema=schema)
            writer.write_batch(b, row_group_size=row_group) if fmt == "parquet" else writer.write_batch(b)
            start += n
    return {"rows": start, "bytes": Path(out).stat().st_size}


def _null_laion(chdb: str):
    """A chdb session with laion's columns in a Null table `n`: reading costs, no storage."""
    from chdb import session

    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.engines import Chdb
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
    for p, column in zip(paths, ("image_embedding", "text_embedding"), strict=True):
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
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.engines import Chdb
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
    img_name, text_name, _ = LAION400M.files(shard)
    with conv.NpyRows(shard, src, img_name, DIM) as img, conv.NpyRows(shard, src, text_name, DIM) as text:
        dtype = np.dtype(np.float32) if vec == "f32" else img.dtype
        vector = pa.list_(pa.field("item", pa.from_numpy_dtype(dtype), nullable=False), DIM)
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
