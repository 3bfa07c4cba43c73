"""The HNSW grid as `tune` walks it, on one generated shard of each of the mirror's variants: easy
(128 clusters, the default sample) and hard (`mirror --hard`: 4,096 clusters, a power-law spectrum,
text vectors offset from their images), so that the recommendation is seen not to be an artefact of
easy data. Each variant loads into a fresh chdb; tune runs with its defaults (the whole grid, 50
queries, target 0.95).

    PYTHONPATH=tests .venv/bin/python bench/index_grid.py --rows 100000   # writes bench/INDEX.md
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

from laion_ingest.sample.mirror import generate_mirror

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "index_grid"
LOAD = """
import sys
from laion_ingest import datasets, pipeline
from laion_ingest.ledger import Attempt
from laion_ingest.sample.server import MirrorServer
with MirrorServer(sys.argv[1]) as server:
    print(pipeline.ingest(Attempt(0, datasets.get("laion400m")), server.url))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    sections = []
    for variant in ("easy", "hard"):
        base = WORK / variant
        generate_mirror(base / "mirror", [0], args.rows, hard=variant == "hard")
        env = {**os.environ, "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work")}
        subprocess.run([sys.executable, "-c", LOAD, str(base / "mirror")], env=env, check=True, capture_output=True)
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "laion_ingest", "tune", "--json", "--plot",
                              str(ROOT / "bench" / f"INDEX-{variant}.png")], env=env, check=True,
                             capture_output=True, text=True).stdout
        report, result = out.rsplit("\n", 2)[0], json.loads(out.strip().splitlines()[-1])
        minutes = (time.perf_counter() - started) / 60
        print(f"{variant}: {minutes:.1f} min; recommended {result['recommended']}", flush=True)
        sections += [f"## {variant}: {len(result['candidates'])} candidates measured in {minutes:.1f} min", "",
                     "\n".join(line for line in report.splitlines() if not line.startswith("Pareto front:")), "",
                     f"![{variant}](INDEX-{variant}.png)", ""]
    header = [
        "# The HNSW grid, measured by tune", "",
        f"`PYTHONPATH=tests .venv/bin/python bench/index_grid.py --rows {args.rows}` on"
        f" {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, chdb; one generated LAION-400M shard of ~{args.rows:,} rows (512-d) per"
        " variant. Build rates are per core (max_threads); the plan rows project one shard's measurements"
        " to 410 shards. **Synthetic vectors are not CLIP's: run `python -m laion_ingest tune` on your own"
        " first shard before you build 410.**", ""]
    (ROOT / "bench" / "INDEX.md").write_text("\n".join(header + sections))
    print(f"wrote {ROOT / 'bench' / 'INDEX.md'}")


if __name__ == "__main__":
    main()
