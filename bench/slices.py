"""Memory of loading the 100M subset's slices (laion5b-100m): the package's slice load, read by
ClickHouse from the mirror over HTTP, against the docs' way (`INSERT INTO ... SELECT * FROM
url(file)`, the whole file at once), on one ClickHouse server, at several file sizes.

Per file size: the slice's INSERT peak memory and bytes read (system.query_log), the worker's peak
RSS (its process, which downloads nothing), and the docs' INSERT of the whole file when the disk
can hold its table beside the file. A file of the real subset is 10M rows in 10 slices of 1M:

    PYTHONPATH=tests .venv/bin/python bench/slices.py     # 10k-100k rows a slice, about 5 minutes
    PYTHONPATH=tests .venv/bin/python bench/slices.py --sizes 10000,30000,100000,1000000   # + a real
        # slice: a 33 GB file, about 10 minutes

Either writes bench/SLICES.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from laion_ingest import datasets
from laion_ingest.sample.mirror import generate_parquet_file
from laion_ingest.sample.server import MirrorServer

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "slices"
SUBSET = datasets.get("laion5b-100m")
# ClickHouse's "LAION 5B dataset" page: its table, loaded with INSERT ... SELECT * FROM s3(file).
DOCS_TABLE = """CREATE TABLE bench.docs_way (id UInt32, image_path String, caption String,
  NSFW Nullable(String) DEFAULT 'unknown', similarity Float32, LICENSE Nullable(String), url String, key String,
  status LowCardinality(String), width Int32, height Int32, original_width Int32, original_height Int32,
  exif Nullable(String), md5 String, vector Array(Float32) CODEC(NONE)) ENGINE = MergeTree ORDER BY id"""
# One slice through the package, in a process of its own: its peak RSS is the worker's.
WORKER = """
import json, resource, sys
from laion_ingest import datasets, pipeline
from laion_ingest.ledger import Attempt
rows = pipeline.ingest(Attempt(int(sys.argv[2]), datasets.get("laion5b-100m")), sys.argv[1])
print(json.dumps({"rows": rows, "worker_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,30000,100000", help="rows per slice (a file is 10 slices)")
    sizes = [int(n) for n in parser.parse_args().sizes.split(",")]
    shutil.rmtree(WORK, ignore_errors=True)
    stack: list = []
    results = {"command": " ".join(["bench/slices.py", *sys.argv[1:]]),
               "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
               "cores": os.cpu_count(), "sizes": []}
    try:
        env, server = _server(stack)
        for rows in sizes:
            mirror = WORK / f"mirror_{rows}"
            generate_parquet_file(mirror, SUBSET, 0, rows)
            name, _ = SUBSET.parquet_file(0)
            file_bytes = (mirror / name).stat().st_size
            # The docs' table holds the whole file again (vectors uncompressed): run it only if it fits.
            docs_fits = shutil.disk_usage(WORK).free > 1.2 * file_bytes
            with MirrorServer(mirror) as http:
                worker = subprocess.run([sys.executable, "-c", WORKER, http.url, "3"], env=env, check=True,
                                        capture_output=True, text=True, cwd=ROOT)
                one = json.loads(worker.stdout.strip().splitlines()[-1])
                if docs_fits:
                    server.sql(DOCS_TABLE)
                    server.sql(f"INSERT INTO bench.docs_way SELECT * FROM url('{http.url}{name}', Parquet)"
                               " SETTINGS log_comment = 'docs_way'")
                    server.sql("DROP TABLE bench.docs_way SYNC")
            shutil.rmtree(mirror)
            server.sql("SYSTEM FLUSH LOGS")
            peak = _query_log(server, "log_comment = '' AND query LIKE 'INSERT INTO%stage%'")
            docs = _query_log(server, "log_comment = 'docs_way'") if docs_fits else None
            results["sizes"].append({"rows_per_slice": one["rows"], "file_mb": file_bytes / 1e6,
                                     "worker_peak_mb": one["worker_peak_mb"], "slice": peak, "docs_way": docs})
            print(json.dumps(results["sizes"][-1]), flush=True)
            server.sql("TRUNCATE TABLE system.query_log")
    finally:
        for thing in reversed(stack):
            thing.__exit__(None, None, None)
    (ROOT / "bench" / "SLICES.md").write_text(report(results))
    print(f"wrote {ROOT / 'bench' / 'SLICES.md'}")


def _server(stack: list):
    """A test server with its query log on (for each statement's peak memory), staging in S3."""
    from clickhouse_server import ClickHouseServer
    from s3_server import BUCKET, S3Server

    log = "<query_log><database>system</database><table>query_log</table></query_log>"
    server = ClickHouseServer(WORK / "clickhouse", extra_config=log).__enter__()
    s3 = S3Server(WORK / "s3").__enter__()
    stack += [server, s3]
    server.sql("CREATE DATABASE bench")
    return {**os.environ, "LAION_WORK_DIR": str(WORK / "work"), "LAION_CLICKHOUSE_CONN_ID": "laion_clickhouse",
            "AIRFLOW_CONN_LAION_CLICKHOUSE": server.connection_uri("bench"), "LAION_STAGING_URL": f"s3://{BUCKET}/b",
            "LAION_S3_CONN_ID": "laion_s3", "AIRFLOW_CONN_LAION_S3": s3.connection()}, server


def _query_log(server, where: str) -> dict:
    out = server.sql("SELECT max(memory_usage), max(read_bytes), max(query_duration_ms) FROM system.query_log"
                     f" WHERE type = 'QueryFinish' AND {where} FORMAT JSONCompact")
    memory, read, ms = json.loads(out)["data"][0]
    return {"peak_mb": int(memory) / 1e6, "read_mb": int(read) / 1e6, "seconds": ms / 1000}


def report(res: dict) -> str:
    lines = [
        "# Loading the 100M subset's slices: memory", "",
        f"`PYTHONPATH=tests .venv/bin/python {res['command']}` on {res['date']}, {res['cores']} cores, one"
        " ClickHouse server (tests/clickhouse_server.py) reading a generated `laion5b_100m_part_1_of_10.parquet`"
        " (768-d, 10 slices, row groups of at most 4,096 rows) from a loopback HTTP mirror. The slice is"
        " shard 3 (the file's fourth tenth); the docs' way inserts the whole file in one statement.", "",
        "| rows per slice | file | worker peak RSS | slice INSERT peak | slice bytes read | docs' whole-file"
        " INSERT peak | docs' bytes read |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in res["sizes"]:
        docs = s["docs_way"]
        docs_cells = (f"{docs['peak_mb']:,.0f} MB | {docs['read_mb']:,.0f} MB" if docs
                      else "not run: its table would not fit on the disk beside the file | -")
        lines.append(f"| {s['rows_per_slice']:,} | {s['file_mb']:,.0f} MB | {s['worker_peak_mb']:,.0f} MB |"
                     f" {s['slice']['peak_mb']:,.0f} MB | {s['slice']['read_mb']:,.0f} MB | {docs_cells} |")
    lines += ["", "The worker's peak is its interpreter and imports: it downloads nothing, whatever the file."
              " The slice's INSERT reads only its row groups (pruned by the footer's id statistics) and its"
              " peak grows far slower than its rows (bounded blocks and the reader's 128 MB watermark);"
              " the docs' INSERT reads the whole file at once."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
