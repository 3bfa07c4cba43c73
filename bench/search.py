"""Per query, warm, on the quickstart's sample (4 shards of ~20,000 rows, M=16, ef_construction=64):
how long a text query takes to encode, to search, and in all, on the embedded engine.

    .venv/bin/python bench/search.py                          # the mirror's tiny CLIP; writes bench/SEARCH.md
    .venv/bin/python bench/search.py --model-dir DIR          # a real or full-size model (clip.py's layout)
    .venv/bin/python bench/search.py --model-dir DIR --label "ViT-B/32, random weights"

The model directory may hold OpenAI's CLIP (Qdrant/clip-ViT-B-32-text/-vision) or the full-size
random-weight export of bench/clip_export.py: the weights do not change the time. Each run adds its
section to bench/SEARCH.md, naming the model. Measured, after 3 warm-up queries, over 50 queries:
- the package's search path: `clip.text_encoder(model)` in the process, then `search.search` with the
  vector as a query parameter (what the CLI and the search page do);
- the same query in SQL with `encode_text()`, an executable_pool function: a warm pool process;
- the seed's way, `encode_text()` as an `executable` function: a process and a model load per query.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORK = ROOT / "bench" / "work" / "search"
SHARDS, ROWS = 4, 20_000
QUERIES = [f"a photo of a {a} {n}" for a in ("red", "small", "vintage", "happy", "old") for n in
           ("dog", "cat", "house", "car", "chair", "guitar", "pizza", "beach", "book", "lamp")]
SQL = ("SELECT id FROM laion ORDER BY cosineDistance(image_embedding, {fn}({q:String})) LIMIT 10"
       " SETTINGS hnsw_candidate_list_size_for_search = 256")
SEED_XML = """<functions><function><type>executable</type><name>seed_encode_text</name>
<return_type>Array(Float32)</return_type><return_name>result</return_name>
<argument><type>String</type><name>text</name></argument><format>RowBinary</format>
<command>laion_clip_udf text</command><send_chunk_header>1</send_chunk_header>
<command_read_timeout>120000</command_read_timeout></function></functions>
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=None, help="default: the mirror's tiny CLIP")
    ap.add_argument("--label", default=None, help="the model's name in SEARCH.md")
    ap.add_argument("--seed-queries", type=int, default=10, help="queries through the seed's executable function")
    args = ap.parse_args()

    from laion_ingest.sample.clip_model import write_model

    model = (args.model_dir or write_model(WORK / "tiny_clip")).resolve()
    os.environ.update(LAION_CLIP_MODEL_DIR=str(model), LAION_CHDB_PATH=str(WORK / "chdb"),
                      LAION_WORK_DIR=str(WORK / "files"))
    load_sample()
    label = args.label or ("the mirror's tiny CLIP" if args.model_dir is None else str(model))
    rows = measure(args.seed_queries)
    section = report(label, model, rows)
    out = ROOT / "bench" / "SEARCH.md"
    previous = out.read_text() if out.exists() else HEADER
    out.write_text(previous + section)
    print(section)


HEADER = """# Search latency: CLIP text queries (bench/search.py)

Each section is one run of `bench/search.py`, on the quickstart's sample (4 shards of ~20,000 rows,
index bf16 M=16 ef_construction=64, hnsw_candidate_list_size_for_search 256, embedded chdb), warm.
"""


def load_sample() -> None:
    """The quickstart's sample, loaded and indexed once into bench/work/search/."""
    from laion_ingest import pipeline
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.index import IndexParams, build_indexes
    from laion_ingest.ledger import Attempt
    from laion_ingest.load import create_tables
    from laion_ingest.sample.mirror import sample_mirror
    from laion_ingest.sample.server import MirrorServer

    with ClickHouse() as ch:
        create_tables(ch)
        if ch.query("SELECT uniqExact(shard) FROM laion")[0][0] == SHARDS:
            return
    with MirrorServer(sample_mirror(WORK / "mirror", SHARDS, ROWS)) as server:
        for shard in range(SHARDS):
            pipeline.ingest(Attempt(shard), server.url)
    with ClickHouse() as ch:
        build_indexes(ch, IndexParams(m=16, ef_construction=64))


def measure(seed_queries: int) -> list[tuple[str, list[float]]]:
    from laion_ingest import clip, datasets
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.search import search

    udf = WORK / "chdb.udf"  # where the engine installs encode_text(); the seed's function goes beside it
    udf.mkdir(parents=True, exist_ok=True)
    (udf / "seed_functions.xml").write_text(SEED_XML)
    started = time.perf_counter()
    encoder = clip.text_encoder(datasets.VIT_B_32)
    load_ms = 1000 * (time.perf_counter() - started)
    encode, knn, total, in_sql, seed = [], [], [], [], []
    with ClickHouse() as ch:
        for i, query in enumerate(QUERIES[:3] + QUERIES):
            t0 = time.perf_counter()
            vector = encoder([query])[0]
            t1 = time.perf_counter()
            search(ch, vector, k=10, ef=256)
            t2 = time.perf_counter()
            ch.query(SQL.replace("{fn}", "encode_text"), q=query)
            t3 = time.perf_counter()
            if i >= 3:
                encode.append(1000 * (t1 - t0))
                knn.append(1000 * (t2 - t1))
                total.append(1000 * (t2 - t0))
                in_sql.append(1000 * (t3 - t2))
        for query in QUERIES[:seed_queries]:
            t0 = time.perf_counter()
            ch.query(SQL.replace("{fn}", "seed_encode_text"), q=query)
            seed.append(1000 * (time.perf_counter() - t0))
    return [("model load (once per process)", [load_ms]), ("text encode", encode), ("kNN (HNSW index)", knn),
            ("total: encode + kNN", total), ("SQL with encode_text() (executable_pool)", in_sql),
            ("SQL with the seed's executable encode_text()", seed)]


def report(label: str, model: Path, rows: list[tuple[str, list[float]]]) -> str:
    size = sum(f.stat().st_size for f in model.rglob("*.onnx")) / 2**20
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    lines = [f"\n## {label}\n",
             f"{datetime.date.today()}, {platform.node()}: {os.cpu_count()} cores ({cpu}), Python "
             f"{platform.python_version()}; model files {size:.1f} MB ({model}).\n",
             "| per query | queries | median ms | p95 ms |", "|---|---|---|---|"]
    for name, values in rows:
        p95 = statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]
        lines.append(f"| {name} | {len(values)} | {statistics.median(values):.1f} | {p95:.1f} |")
    by_name = dict(rows)
    ratio = statistics.median(by_name["SQL with the seed's executable encode_text()"]) / \
        statistics.median(by_name["SQL with encode_text() (executable_pool)"])
    lines.append(f"\nThe seed's `executable` function is {ratio:.0f}× slower per query than the pool.\n")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
