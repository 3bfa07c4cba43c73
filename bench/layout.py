"""Parts against search, on the embedded engine with the index cache sized to hold every graph.
Each part (one per shard, as the loader leaves them) has its own HNSW graph, searched on its own:
measured are recall@10 against an exact scan and the p50/p95 latency of 50 text→image queries, at
ClickHouse's default hnsw_candidate_list_size_for_search (256).

Two questions, two modes:
- the same rows cut into 10, 40 or 100 parts (should shards be merged?) -> bench/LAYOUT.md;
- a node holding 1, 10, 100 or 410 parts of a fixed size (what does each part a node holds add to a
  query?) -> bench/LAYOUT-parts.md, whose per-part cost `plan` quotes (sizing.QUERY_MS_PER_PART).

    .venv/bin/python bench/layout.py                          # about 10 minutes
    .venv/bin/python bench/layout.py --rows-per-part 2000     # about 15 minutes
    .venv/bin/python bench/layout.py --rows 20000 --parts 4,8 # a quick check
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORK = ROOT / "bench" / "work" / "layout"
INDEX = dict(m=16, ef_construction=64)  # small graphs: the build is not what is measured
QUERIES = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help="rows in all, cut into --parts (default 200,000)")
    ap.add_argument("--rows-per-part", type=int, help="instead: parts of this many rows each")
    ap.add_argument("--parts", help="part counts (default 10,40,100; with --rows-per-part 1,10,100,410)")
    args = ap.parse_args()
    counts = [int(n) for n in (args.parts or ("1,10,100,410" if args.rows_per_part else "10,40,100")).split(",")]
    results = [measure(args.rows_per_part or args.rows // n, n) for n in counts]
    if args.rows_per_part:  # the report keeps every size and count measured (bench/work/layout-parts.json)
        stored = WORK / "layout-parts.json"
        sizes = json.loads(stored.read_text()) if stored.exists() else {}
        measured = {r["parts"]: r for r in sizes.get(str(args.rows_per_part), []) + results}
        sizes[str(args.rows_per_part)] = [measured[n] for n in sorted(measured)]
        stored.write_text(json.dumps(sizes, indent=1))
        out = ROOT / "bench" / "LAYOUT-parts.md"
        out.write_text(parts_report({int(size): rows for size, rows in sizes.items()}))
    else:
        (WORK / "layout.json").write_text(json.dumps(results, indent=1))
        out = ROOT / "bench" / "LAYOUT.md"
        out.write_text(report(args.rows, results))
    print(f"wrote {out}")


def measure(per_part: int, parts: int) -> dict:
    """One layout, in a process of its own (its own chdb directory and settings)."""
    d = WORK / f"parts_{parts}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    env = {**os.environ, "LAION_CHDB_PATH": str(d / "chdb"),
           "LAION_CHDB_SERVER_SETTINGS": f"vector_similarity_index_cache_size={8 << 30}"}
    done = subprocess.run([sys.executable, __file__, "--one", str(per_part), str(parts)], env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def one(per_part: int, parts: int) -> dict:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.index import IndexParams, build_indexes
    from laion_ingest.load import create_tables
    from laion_ingest.search import recall, search

    with ClickHouse() as ch:
        create_tables(ch)
        # Unit vectors with the mirror's structure are not needed to compare layouts: random unit
        # vectors, the text vector near its image vector, as in CLIP.
        ch.query(f"""INSERT INTO laion (id, shard, row, image_path, url, key, image_embedding, text_embedding)
            SELECT number, intDiv(number, {per_part}), number % {per_part}, '', '', '',
                   arrayMap(x -> x / sqrt(arraySum(a -> a * a, v)), v) AS image,
                   arrayMap((x, y) -> x + 0.5 * y, image,
                            arrayMap(i -> randNormal(0, 0.044, i + number * 1024), range(512)))
            FROM (SELECT number, arrayMap(i -> randNormal(0, 1, i + number * 512), range(512)) AS v
                  FROM numbers({per_part * parts}))
            SETTINGS max_insert_block_size = {per_part}, min_insert_block_size_rows = {per_part},
                     materialize_skip_indexes_on_insert = 0""")
        ch.query("OPTIMIZE TABLE laion FINAL")  # one part per partition, as loads leave them
        n_parts = ch.query("SELECT count() FROM system.parts WHERE database = currentDatabase()"
                           " AND table = 'laion' AND active")[0][0]
        started = time.monotonic()
        build_indexes(ch, IndexParams(**INDEX), poll_seconds=1)
        build_s = time.monotonic() - started
        targets = [t for (t,) in ch.query(f"SELECT text_embedding FROM laion ORDER BY cityHash64(id) LIMIT {QUERIES}")]
        for target in targets[:5]:  # warm the index cache
            search(ch, target, k=10, ef=256)
        ms, recalls = [], []
        for target in targets:
            t = time.perf_counter()
            ann = search(ch, target, k=10, ef=256)
            ms.append(1000 * (time.perf_counter() - t))
            recalls.append(recall(ann, search(ch, target, k=10, exact=True)))
        exact_ms = []
        for target in targets[:10]:
            t = time.perf_counter()
            search(ch, target, k=10, exact=True)
            exact_ms.append(1000 * (time.perf_counter() - t))
        misses = ch.query("SELECT value FROM system.events WHERE event = 'VectorSimilarityIndexCacheMisses'")
    ms.sort()
    return {"parts": n_parts, "rows": per_part * parts, "build_s": round(build_s, 1),
            "recall": statistics.fmean(recalls), "p50_ms": ms[len(ms) // 2], "p95_ms": ms[int(0.95 * (len(ms) - 1))],
            "exact_p50_ms": sorted(exact_ms)[len(exact_ms) // 2], "cache_misses": misses[0][0] if misses else 0}


def report(rows: int, results: list[dict]) -> str:
    base = results[0]
    lines = ["# Parts against search", "",
             f"`.venv/bin/python bench/layout.py` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,"
             f" {os.cpu_count()} cores, chdb (ClickHouse 26.9). {rows:,} rows of random unit vectors (text near"
             f" image), index bf16, M={INDEX['m']}, ef_construction={INDEX['ef_construction']},"
             f" vector_similarity_index_cache_size 8 GiB (every graph cached); {QUERIES} text→image queries,"
             " k=10, hnsw_candidate_list_size_for_search 256.", "",
             "| parts | rows a part | index build | recall@10 | p50 | p95 | p50 vs the fewest parts | brute force p50 |"
             " index cache misses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['parts']} | {r['rows'] // r['parts']:,} | {r['build_s']} s | {r['recall']:.3f} |"
                     f" {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['p50_ms'] / base['p50_ms']:.1f}× |"
                     f" {r['exact_p50_ms']:.1f} ms | {r['cache_misses']} |")
    return "\n".join(lines) + "\n"


def parts_report(sizes: dict[int, list[dict]]) -> str:
    """A table per part size, and the least-squares line p50 = fixed + per_part × parts through it."""
    lines = ["# What each part a node holds adds to a query", "",
             "`.venv/bin/python bench/layout.py --rows-per-part N --parts ...`, each section's command below"
             f" (the last on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC), {os.cpu_count()} cores, chdb"
             f" (ClickHouse 26.9). Parts of N random unit vectors (512-d, text near image), index bf16,"
             f" M={INDEX['m']}, ef_construction={INDEX['ef_construction']}, vector_similarity_index_cache_size 8 GiB"
             f" (every graph cached); {QUERIES} text→image queries, k=10, hnsw_candidate_list_size_for_search 256."]
    for per_part, results in sorted(sizes.items()):
        counts = ",".join(str(r["parts"]) for r in results)
        lines += ["", f"## Parts of {per_part:,} rows", "",
                  f"`.venv/bin/python bench/layout.py --rows-per-part {per_part} --parts {counts}`", "",
                  "| parts on the node | rows | recall@10 | p50 | p95 | brute force p50 | index cache misses |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['parts']} | {r['rows']:,} | {r['recall']:.3f} | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms |"
                  f" {r['exact_p50_ms']:.1f} ms | {r['cache_misses']} |" for r in results]
        if len(results) > 1:
            slope, fixed = statistics.linear_regression([r["parts"] for r in results], [r["p50_ms"] for r in results])
            lines += ["", f"Least squares through the p50s: **{fixed:.1f} ms + {slope:.2f} ms per part** on"
                      f" {os.cpu_count()} cores."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
