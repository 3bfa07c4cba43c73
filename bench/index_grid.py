"""The HNSW grid as `tune` walks it, on one generated shard of each of the mirror's variants: easy
(128 clusters, the default sample) and hard (`mirror --hard`: 4,096 clusters, a power-law spectrum,
text vectors offset from their images), so that the recommendation is seen not to be an artefact of
easy data. Each variant loads into a fresh chdb; tune runs with its defaults (the whole grid, 50
queries, target 0.95, --max-hours 1) unless --m/--ef-construction narrow it to key candidates (the
seed's setting is always measured). Runs kept from before tune had a time budget had none.

Each run's results are kept in bench/INDEX.json under its command, and bench/INDEX.md is rendered
from every kept run, so runs at several sizes sit in one report. A run's "note" in INDEX.json
(written by hand) says what else shared the machine:

    PYTHONPATH=tests .venv/bin/python bench/index_grid.py --rows 100000
    PYTHONPATH=tests .venv/bin/python bench/index_grid.py --rows 1000000 --variants hard
    PYTHONPATH=tests .venv/bin/python bench/index_grid.py --rows 1000000 --variants hard --m 8,16 --ef-construction 64
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
RESULTS = ROOT / "bench" / "INDEX.json"
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
    ap.add_argument("--variants", default="easy,hard")
    ap.add_argument("--m", help="tune's --m (default: its whole grid)")
    ap.add_argument("--ef-construction", help="tune's --ef-construction (default: its whole grid)")
    args = ap.parse_args()
    narrow = [*(["--m", args.m] if args.m else []), *(["--ef-construction", args.ef_construction]
                                                      if args.ef_construction else [])]
    shutil.rmtree(WORK, ignore_errors=True)
    sections = []
    for variant in args.variants.split(","):
        base = WORK / variant
        generate_mirror(base / "mirror", [0], args.rows, hard=variant == "hard")
        env = {**os.environ, "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work")}
        subprocess.run([sys.executable, "-c", LOAD, str(base / "mirror")], env=env, check=True, capture_output=True)
        started = time.perf_counter()
        # Narrowed runs of one size keep a plot each: the narrowing is in the name.
        plot = f"INDEX-{variant}-{args.rows // 1000}k{'-'.join(['', *narrow[1::2]]).replace(',', '_')}.png"
        out = subprocess.run([sys.executable, "-m", "laion_ingest", "tune", "--json", "--plot",
                              str(ROOT / "bench" / plot), *narrow], env=env, check=True,
                             stdout=subprocess.PIPE, text=True).stdout  # tune's progress goes to stderr
        report, result = out.rsplit("\n", 2)[0], json.loads(out.strip().splitlines()[-1])
        minutes = (time.perf_counter() - started) / 60
        print(f"{variant}: {minutes:.1f} min; recommended {result['recommended']}", flush=True)
        sections.append({"variant": variant, "minutes": minutes, "candidates": len(result["candidates"]),
                         "skipped": len(result["skipped"]),
                         "report": "\n".join(line for line in report.splitlines()
                                             if not line.startswith("Pareto front:")), "plot": plot})
    command = " ".join(["bench/index_grid.py", *sys.argv[1:]])
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    kept[command] = {"date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC", "cores": os.cpu_count(),
                     "python": platform.python_version(), "rows": args.rows, "whole_grid": not narrow,
                     "sections": sections}
    RESULTS.write_text(json.dumps(kept, indent=1))
    (ROOT / "bench" / "INDEX.md").write_text(render(kept))
    print(f"wrote {ROOT / 'bench' / 'INDEX.md'}")


HEADER = """# The HNSW grid, measured by tune

One generated LAION-400M shard (512-d) per variant, loaded into a fresh chdb; tune walks its grid on
it. Build rates are per core (max_threads); the plan rows project
one shard's measurements to 410 shards. **Synthetic vectors are not CLIP's: run
`python -m laion_ingest tune` on your own first shard before you build 410.** ClickHouse's build
against usearch standalone (the physical limit) is in [INDEX-usearch.md](INDEX-usearch.md); a query's
latency at 1-410 parts a node in [LAYOUT-parts.md](LAYOUT-parts.md).
"""


def render(kept: dict) -> str:
    """The whole-grid runs first, then the key candidates, each by rows."""
    lines = [HEADER]
    for command, run in sorted(kept.items(), key=lambda kv: (not kv[1]["whole_grid"], kv[1]["rows"])):
        what = "the whole grid" if run["whole_grid"] else "key candidates"
        lines += [f"## {what} at {run['rows']:,} rows", "",
                  f"`PYTHONPATH=tests .venv/bin/python {command}` on {run['date']}, {run['cores']} cores,"
                  f" Python {run['python']}, chdb.", "", *([run["note"], ""] if run.get("note") else [])]
        for s in run["sections"]:
            skipped = f", {s['skipped']} skipped by tune's time budget" if s.get("skipped") else ""
            lines += [f"### {s['variant']}: {s['candidates']} candidates measured{skipped}"
                      f" in {s['minutes']:.1f} min", "",
                      s["report"], "", f"![{s['variant']}]({s['plot']})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
