"""ClickHouse's HNSW build against the same library standalone: ClickHouse's vector_similarity index
is usearch's HNSW; here usearch from PyPI builds graphs of the same vectors with the same metric,
quantization, M, ef_construction and cores, so the ratio is what ClickHouse adds (reading the part,
its thread pool, writing the index files) over the physical limit of the algorithm on this machine.

One generated LAION-400M shard (the hard variant) is loaded into chdb; per setting, both columns'
graphs are built by `index.build_indexes` (wall time, the part's mutation) and by usearch's
`Index.add(..., threads=cores)` on the shard's float16 vectors widened to float32.

    make bench-index   # installs usearch into .venv, then: bench/index_build.py --rows 100000
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from laion_ingest.sample.mirror import generate_mirror

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "index_build"
SETTINGS = ((16, 64), (64, 256))  # (M, ef_construction): a small graph and the seed's
# ClickHouse's side, in a process of its own (its own chdb); prints one JSON line per setting.
CLICKHOUSE = """
import json, sys, time
from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.index import IndexParams, build_indexes
from laion_ingest.ledger import Attempt
from laion_ingest.sample.server import MirrorServer
with MirrorServer(sys.argv[1]) as server:
    rows = pipeline.ingest(Attempt(0, datasets.get("laion400m")), server.url)
for m, ef_construction in json.loads(sys.argv[2]):
    with ClickHouse() as ch:
        ch.query("ALTER TABLE laion DROP INDEX IF EXISTS image_index, DROP INDEX IF EXISTS text_index")
        started = time.perf_counter()
        build_indexes(ch, IndexParams(m=m, ef_construction=ef_construction), poll_seconds=0.2)
        seconds = time.perf_counter() - started
        [(index_bytes,)] = ch.query("SELECT sum(secondary_indices_uncompressed_bytes) FROM system.parts"
                                    " WHERE database = currentDatabase() AND table = 'laion' AND active")
    print(json.dumps({"m": m, "ef_construction": ef_construction, "rows": rows, "seconds": seconds,
                      "index_bytes": index_bytes}), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    mirror = WORK / "mirror"
    generate_mirror(mirror, [0], args.rows, hard=True)
    env = {**os.environ, "LAION_CHDB_PATH": str(WORK / "chdb"), "LAION_WORK_DIR": str(WORK / "work")}
    out = subprocess.run([sys.executable, "-c", CLICKHOUSE, str(mirror), json.dumps(SETTINGS)], env=env, check=True,
                         capture_output=True, text=True).stdout
    clickhouse = [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]
    columns = [np.load(mirror / f"{kind}_emb" / f"{kind}_emb_0.npy").astype(np.float32) for kind in ("img", "text")]
    results = []
    for ch in clickhouse:
        standalone = usearch_build(columns, ch["m"], ch["ef_construction"])
        results.append({**ch, "usearch_seconds": standalone[0], "usearch_bytes": standalone[1]})
        print(json.dumps(results[-1]), flush=True)
    out = ROOT / "bench" / "INDEX-usearch.md"
    out.write_text(report(args.rows, results))
    print(f"wrote {out}")


def usearch_build(columns: list[np.ndarray], m: int, ef_construction: int) -> tuple[float, int]:
    """Seconds to build one bf16 cosine graph per column with all cores, and the graphs' bytes."""
    from usearch.index import Index

    seconds, size = 0.0, 0
    for vectors in columns:
        index = Index(ndim=vectors.shape[1], metric="cos", dtype="bf16", connectivity=m, expansion_add=ef_construction)
        started = time.perf_counter()
        index.add(np.arange(len(vectors)), vectors, threads=os.cpu_count())
        seconds += time.perf_counter() - started
        size += index.memory_usage
    return seconds, size


def report(rows: int, results: list[dict]) -> str:
    from usearch import __version__ as usearch_version

    cores = os.cpu_count()
    lines = ["# ClickHouse's HNSW build against usearch standalone", "",
             f"`PYTHONPATH=tests .venv/bin/python bench/index_build.py --rows {rows}` (what `make bench-index` runs) on"
             f" {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {cores} cores, Python"
             f" {platform.python_version()}, chdb (ClickHouse 26.9) and usearch {usearch_version}. One generated"
             f" LAION-400M shard of {results[0]['rows']:,} rows (hard variant, 512-d), both columns' graphs, bf16,"
             " cosine, all cores for both.", "",
             "| M | ef_construction | ClickHouse | rows/s per core | usearch | rows/s per core |"
             " ClickHouse ÷ usearch (time) | index bytes ClickHouse ÷ usearch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        built = 2 * r["rows"]  # both columns
        lines.append(f"| {r['m']} | {r['ef_construction']} | {r['seconds']:.1f} s |"
                     f" {built / r['seconds'] / cores:,.0f} |"
                     f" {r['usearch_seconds']:.1f} s | {built / r['usearch_seconds'] / cores:,.0f} |"
                     f" {r['seconds'] / r['usearch_seconds']:.2f}× | {r['index_bytes'] / r['usearch_bytes']:.2f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
