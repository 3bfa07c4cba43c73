"""The quickstart: generate a small mirror of one of the LAION family's layouts, serve it on
127.0.0.1, run the real laion_ingest DAG on it with `airflow dags test` (embedded chdb), and show what
a user gets.

    make quickstart                          # laion400m, 4 shards of ~20,000 rows
    make quickstart SHARDS=8 ROWS=50000      # bigger
    DATASET=laion5b-100m make quickstart     # ClickHouse's 100M subset's layout (also laion2b-en, ...)
Everything lives under data/quickstart/ (mirror, Airflow home, chdb, work files); the database is
fresh on every run. Index parameters are small (M=16, ef_construction=64) so the build takes
seconds; the DAG's defaults are the seed's (64, 256).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from laion_ingest import datasets, settings
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.sample.clip_model import write_model
from laion_ingest.sample.mirror import sample_mirror
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search import id_vector, recall, row_vector, search

ROOT = Path(__file__).resolve().parents[1]



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=64)
    ap.add_argument("--dataset", choices=list(datasets.DATASETS), default="laion400m")
    ap.add_argument("--dir", type=Path, default=ROOT / "data" / "quickstart")
    args = ap.parse_args()

    dataset = datasets.get(args.dataset)
    base = args.dir.resolve()
    mirror = sample_mirror(base / f"mirror_{dataset.name}_{args.shards}x{args.rows}", args.shards, args.rows,
                           dataset=dataset.name)
    for fresh in ("chdb", "chdb.lock", "work"):
        path = base / fresh
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    env = {**os.environ, "AIRFLOW_HOME": str(base / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": "dags",
           "AIRFLOW__CORE__PLUGINS_FOLDER": "plugins", "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work")}
    airflow = str(Path(sys.executable).with_name("airflow"))
    if not (base / "airflow" / "airflow.db").exists():
        print("creating the Airflow metadata database (SQLite) ...", flush=True)
        subprocess.run([airflow, "db", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)

    with MirrorServer(mirror) as server:
        conf = {"dataset": dataset.name, "first_shard": 0, "last_shard": args.shards - 1, "source_url": server.url,
                "index_m": args.m, "index_ef_construction": args.ef_construction}
        print(f"mirror at {server.url}\nairflow dags test laion_ingest -c '{json.dumps(conf)}'", flush=True)
        started = time.monotonic()
        code = _run_dag(airflow, conf, env, base / "dag_test.log")
        print(f"DAG run finished in {time.monotonic() - started:.0f} s (exit {code}); full log: "
              f"{base / 'dag_test.log'}\n", flush=True)
    os.environ.update({k: env[k] for k in ("LAION_CHDB_PATH", "LAION_WORK_DIR")})
    # No CLIP weights here: the mirror's tiny model of the dataset's dimension answers text queries.
    model = dataset.model
    os.environ.setdefault(model.setting, str(write_model(base / f"clip-{model.dim}", dim=model.dim)))
    _report(dataset)
    return code


def _run_dag(airflow: str, conf: dict, env: dict, log_path: Path) -> int:
    """Run the DAG, keeping the full log in a file and echoing the pipeline's own lines."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([airflow, "dags", "test", "laion_ingest", "-c", json.dumps(conf)], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if "[laion_ingest." in line or "[DAG TEST] starting" in line:
                message = line.split("] ", 1)[-1].split(" loc=")[0].rsplit(" [", 1)[0]
                print("  " + message.strip(), flush=True)
        return proc.wait()


def _report(dataset: datasets.Dataset) -> None:
    table, image = dataset.table, dataset.vectors[0]
    with ClickHouse(dataset) as ch:
        shards, rows = ch.query("SELECT uniqExact(shard), count() FROM {search_table:Identifier}")[0]
        print(f"loaded: {shards} shards of {dataset.name}, {rows:,} rows in {table}")
        for name, _, type_full in ch.run("vector_index_definitions"):
            print(f"index {name}: {type_full}")
        pending = ch.run("vector_index_pending")
        print(f"index state: {'built on every shard' if not pending else f'missing on {len(pending)} shard(s)'}")
        quality = ch.query("SELECT kind, ef, k, recall, p50_ms, p95_ms, exact_p50_ms, chosen FROM {quality:Identifier}"
                           " WHERE run_id = (SELECT argMax(run_id, measured_at) FROM {quality:Identifier})"
                           " ORDER BY kind, ef")
        print("\nsearch quality, measured by the run's evaluate_search (20 queries per kind):")
        for kind, ef, k, rec, p50, p95, exact_ms, chosen in quality:
            print(f"  {kind:12} ef {ef:4}  recall@{k} {rec:.3f}  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms"
                  f"  (brute force {exact_ms:.1f} ms){'  <- chosen' if chosen else ''}")
        plots = sorted(settings.work_dir().glob("search_quality_*.png"), key=lambda f: f.stat().st_mtime)
        if plots:
            print(f"  plot: {plots[-1]}")
        encode = f"encode_text{dataset.model.sql_suffix}"
        text_query = (f"SELECT caption, url FROM {table}\n"
                      f"ORDER BY cosineDistance({image}, {encode}('a photo of a dog')) LIMIT 5")
        print(f"\nCLIP in SQL (model: {os.environ[dataset.model.setting]}):\n  " + text_query.replace("\n", "\n  "))
        for caption, url in ch.query(text_query):
            print(f"    {url}  {caption!r}")
        if "text_embedding" in dataset.vectors:
            target = row_vector(ch, "text_embedding", 0, 3)
            caption = ch.query("SELECT caption FROM {search_table:Identifier} WHERE shard = 0 AND row = 3")[0][0]
            print(f"\nquery: the text embedding of shard 0, row 3 ({caption!r}), against {image}")
        else:  # ClickHouse's docs page queries laion_5b_100m by the image vector of one row
            target = id_vector(ch, image, 9999)
            print(f"\nquery: the {image} of id 9999, as ClickHouse's LAION 5B docs page does")
        ann = search(ch, target, k=10)
        exact = search(ch, target, k=10, exact=True)
    for title, hits in (("HNSW index", ann), ("brute force", exact)):
        print(f"\ntop 10 by {title}:")
        for h in hits:
            print(f"  {h.distance:.4f}  {h.url}  {(h.caption or '')[:60]!r}")
    print(f"\nrecall@10 of the index against brute force: {recall(ann, exact):.2f}")


if __name__ == "__main__":
    sys.exit(main())
