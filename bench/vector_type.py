"""Float32 or BFloat16 vectors in the table (LAION_VECTOR_TYPE): one generated LAION-400M shard (the
hard variant: overlapping clusters, so near-ties exist) loaded into a fresh chdb per type, and
measured: the load stage's time, the part's bytes on disk, the exact top 10 of text→image queries
against Float32's exact top 10 (what rescoring and brute force give), and recall@10 of the HNSW
index (bf16, M=16, ef_construction=64, ef 256) against Float32's exact top 10. And the lossless
alternative: the Float32 rows copied into tables whose vectors have a compression codec (the
package's are CODEC(NONE)), for their bytes on disk and brute-force latency.

    PYTHONPATH=tests .venv/bin/python bench/vector_type.py --rows 100000   # writes bench/VECTOR_TYPE.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from laion_ingest.sample.mirror import generate_mirror

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "vector_type"
TYPES = ("Float32", "BFloat16")
QUERIES = 50
INDEX = {"m": 16, "ef_construction": 64}
CODECS = ("ZSTD(1)", "ZSTD(3)")
# One type, in a process of its own (its own chdb and LAION_VECTOR_TYPE); prints one JSON line.
MEASURE = """
import json, statistics, sys, time
import numpy as np
from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.index import IndexParams, build_indexes
from laion_ingest.ledger import Attempt
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search import search
mirror, queries, index, codecs = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
with MirrorServer(mirror) as server:
    attempt = Attempt(0, datasets.get("laion400m"))
    pipeline.fetch(attempt, server.url)
    pipeline.convert(attempt)
    started = time.perf_counter()
    rows = pipeline.load(attempt)
    load_s = time.perf_counter() - started
text = np.load(mirror + "/text_emb/text_emb_0.npy", mmap_mode="r")
targets = [text[r].astype(np.float32).tolist() for r in range(0, rows, rows // queries)][:queries]
with ClickHouse() as ch:
    [(disk,)] = ch.query("SELECT sum(bytes_on_disk) FROM system.parts"
                         " WHERE database = currentDatabase() AND table = 'laion' AND active")
    exact, exact_ms = [], []
    for t in targets:
        started = time.perf_counter()
        exact.append([h.id for h in search(ch, t, k=10, exact=True)])
        exact_ms.append(1000 * (time.perf_counter() - started))
    def scan_p50(table):
        ms = []
        for t in targets:
            started = time.perf_counter()
            ch.query(f"SELECT id FROM {table} ORDER BY cosineDistance(image_embedding, {{t:Array(Float32)}}) LIMIT 10",
                     t=t)
            ms.append(1000 * (time.perf_counter() - started))
        return statistics.median(ms)
    compressed = {"NONE": {"disk_bytes": disk, "scan_p50_ms": scan_p50("laion")}} if codecs else {}
    for codec in codecs:
        ch.query("DROP TABLE IF EXISTS laion_codec")
        ch.query("CREATE TABLE laion_codec AS laion")
        ch.query(f"ALTER TABLE laion_codec MODIFY COLUMN image_embedding Array(Float32) CODEC({codec}),"
                 f" MODIFY COLUMN text_embedding Array(Float32) CODEC({codec})")
        started = time.perf_counter()
        ch.query("INSERT INTO laion_codec SELECT * FROM laion")
        ch.query("OPTIMIZE TABLE laion_codec FINAL")
        insert_s = time.perf_counter() - started
        [(codec_disk,)] = ch.query("SELECT sum(bytes_on_disk) FROM system.parts"
                                   " WHERE database = currentDatabase() AND table = 'laion_codec' AND active")
        compressed[codec] = {"disk_bytes": codec_disk, "insert_s": insert_s, "scan_p50_ms": scan_p50("laion_codec")}
    build_indexes(ch, IndexParams(**index), poll_seconds=1)
    ann = [[h.id for h in search(ch, t, k=10, ef=256)] for t in targets]
print(json.dumps({"rows": rows, "load_s": load_s, "disk_bytes": disk, "compressed": compressed,
                  "exact": exact, "ann": ann, "exact_p50_ms": statistics.median(exact_ms)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    generate_mirror(WORK / "mirror", [0], args.rows, hard=True)
    results = {}
    for vector_type in TYPES:
        base = WORK / vector_type
        env = {**os.environ, "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work"),
               "LAION_VECTOR_TYPE": vector_type}
        codecs = CODECS if vector_type == "Float32" else ()
        out = subprocess.run([sys.executable, "-c", MEASURE, str(WORK / "mirror"), str(QUERIES), json.dumps(INDEX),
                              json.dumps(codecs)], env=env, check=True, capture_output=True, text=True).stdout
        results[vector_type] = json.loads(out.strip().splitlines()[-1])
        print(vector_type, {k: v for k, v in results[vector_type].items() if k not in ("exact", "ann")}, flush=True)
    out = ROOT / "bench" / "VECTOR_TYPE.md"
    out.write_text(report(args.rows, results))
    print(f"wrote {out}")


def overlap(found: list[list[int]], truth: list[list[int]]) -> float:
    """Mean share of each query's true top 10 that `found` holds."""
    return statistics.fmean(len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True))


def report(rows: int, results: dict) -> str:
    f32, truth = results["Float32"], results["Float32"]["exact"]
    lines = ["# Float32 or BFloat16 vectors", "",
             f"`PYTHONPATH=tests .venv/bin/python bench/vector_type.py --rows {rows}` on"
             f" {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python"
             f" {platform.python_version()}, chdb (ClickHouse 26.9). One generated LAION-400M shard of"
             f" {f32['rows']:,} rows (the hard variant: overlapping clusters, 512-d float16 sources) loaded per"
             f" type; {QUERIES} text→image queries, k=10; the index bf16, M={INDEX['m']},"
             f" ef_construction={INDEX['ef_construction']}, searched at ef 256. Truth is Float32's exact scan,"
             " which holds the float16 sources exactly.", "",
             "| vectors | load stage | rows/s | part on disk | bytes a row on disk | exact top 10 = Float32's |"
             " index recall@10 | brute force p50 |", "|---|---|---|---|---|---|---|---|"]
    for vector_type in TYPES:
        r = results[vector_type]
        lines.append(f"| {vector_type} | {r['load_s']:.1f} s | {r['rows'] / r['load_s']:,.0f} |"
                     f" {r['disk_bytes'] / 1e6:,.0f} MB | {r['disk_bytes'] / r['rows']:,.0f} |"
                     f" {overlap(r['exact'], truth):.3f} | {overlap(r['ann'], truth):.3f} |"
                     f" {r['exact_p50_ms']:.1f} ms |")
    bf16 = results["BFloat16"]
    lines += ["", f"BFloat16 against Float32: {bf16['disk_bytes'] / f32['disk_bytes']:.2f}× the disk,"
              f" {(bf16['rows'] / bf16['load_s']) / (f32['rows'] / f32['load_s']):.2f}× the load rate,"
              f" {bf16['exact_p50_ms'] / f32['exact_p50_ms']:.2f}× the brute-force latency."]
    codecs, plain = f32["compressed"], f32["compressed"]["NONE"]
    lines += ["", "The lossless alternative, Float32 with a codec (the rows copied from the Float32 table by"
              " INSERT ... SELECT and merged into one part; the scan is `ORDER BY cosineDistance(...) LIMIT 10`"
              " without the index):", "",
              "| vectors | copy and merge | part on disk | vs CODEC(NONE) | brute-force scan p50 | vs CODEC(NONE) |",
              "|---|---|---|---|---|---|"]
    for codec, c in codecs.items():
        name = "Float32 CODEC(NONE), the package's" if codec == "NONE" else f"Float32 CODEC({codec})"
        copied = f"{c['insert_s']:.1f} s" if "insert_s" in c else "(loaded)"
        lines.append(f"| {name} | {copied} | {c['disk_bytes'] / 1e6:,.0f} MB |"
                     f" {c['disk_bytes'] / plain['disk_bytes']:.2f}× | {c['scan_p50_ms']:.1f} ms |"
                     f" {c['scan_p50_ms'] / plain['scan_p50_ms']:.2f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
