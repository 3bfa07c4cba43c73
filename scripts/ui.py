"""`make ui`: Airflow standalone on the embedded default with this repo's DAG and the search page,
the quickstart's kind of sample loaded and indexed, until Ctrl-C.

    make ui                      # http://127.0.0.1:8080, login printed
    make ui PORT=9090 SHARDS=4
The mirror's image URLs point at its own server (127.0.0.1:IMAGE_PORT, a picture per row), and
the tiny CLIP of the mirror answers text and image queries (LAION_CLIP_MODEL_DIR overrides it).
Everything lives under data/ui/; the database is kept between runs and loaded once.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from standalone import Standalone  # the test suite's driver of `airflow standalone` (PYTHONPATH=tests)

from laion_ingest.sample.clip_model import write_model
from laion_ingest.sample.mirror import sample_mirror
from laion_ingest.sample.server import MirrorServer

ROOT = Path(__file__).resolve().parents[1]



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--image-port", type=int, default=8799)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dir", type=Path, default=ROOT / "data" / "ui")
    args = ap.parse_args()

    base = args.dir.resolve()
    mirror = sample_mirror(base / f"mirror_{args.shards}x{args.rows}_{args.image_port}", args.shards, args.rows,
                           image_url=f"http://127.0.0.1:{args.image_port}/")
    (base / "airflow").mkdir(parents=True, exist_ok=True)
    env = {"LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work"),
           "LAION_CLIP_MODEL_DIR": os.environ.get("LAION_CLIP_MODEL_DIR") or str(write_model(base / "clip"))}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # like Ctrl-C: stop standalone's processes too
    with MirrorServer(mirror, port=args.image_port) as source:
        print(f"starting airflow standalone on http://127.0.0.1:{args.port}"
              f" (log: {base / 'airflow' / 'standalone.log'}) ...",
              flush=True)
        server = Standalone(base / "airflow", env, port=args.port)
        try:
            runs = server.api("GET", "/dags/laion_ingest/dagRuns").json()["dag_runs"]
            if not any(r["state"] == "success" for r in runs):
                conf = {"first_shard": 0, "last_shard": args.shards - 1, "source_url": source.url,
                        "index_m": 16, "index_ef_construction": 64}
                run = server.trigger(conf).json()
                print(f"loading the sample: run {run['dag_run_id']} (watch it in the UI) ...", flush=True)
                print(f"  {server.wait_for_run(run['dag_run_id'], timeout=1800)}", flush=True)
            print(f"\nAirflow:     {server.url}   login: admin / {server.password}\n"
                  f"DAG:         {server.url}/dags/laion_ingest\n"
                  f"Search page: {server.url}/plugin/laion-search   (Search in the navigation)\n"
                  "Ctrl-C stops it.", flush=True)
            server.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
