"""A whole dataset's shards (tiny ones: LAION-400M's 410, or laion2b-en's 2,314) through a real
`airflow standalone` (scheduler + LocalExecutor), triggered over REST as a user does, on the
embedded chdb and on a ClickHouse server with 1 and 4 shards in flight. One shard is missing from
the mirror (404) and one answers 503 eight times.

Recorded per run: wall time, time to the first loaded shard, the most shards holding files in the
work directory at once (sampled every 0.2 s), task instances per state, the wall time per shard,
the UI grid endpoints' latency and size while the run goes on, what the summary says, and the
pipeline's own cost per shard called directly (no Airflow) for the overhead.

    .venv/bin/python bench/scale.py            # about 25 minutes; writes bench/SCALE.md
    .venv/bin/python bench/scale.py --dataset laion2b-en --runs chdb   # 2,314 parts: bench/SCALE-laion2b-en.md
    .venv/bin/python bench/scale.py --quick    # 24 shards, chdb only: checks the script
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from laion_ingest import datasets
from laion_ingest.sample.mirror import generate_mirror
from laion_ingest.sample.server import MirrorServer

ROOT = Path(__file__).resolve().parents[1]


WORK = ROOT / "bench" / "work" / "scale"
ROWS = 20
MISSING, FLAKY = 7, 13  # shard 7's metadata is not on the mirror; shard 13's text_emb answers 503 8 times
INDEX = {"index_m": 8, "index_ef_construction": 32}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dataset", default="laion400m", choices=["laion400m", "laion2b-en"])
    ap.add_argument("--runs", default="chdb,server-1,server-4",
                    help="comma-separated: chdb, server-N (N shards in flight)")
    args = ap.parse_args()
    dataset = datasets.get(args.dataset)
    shards = 24 if args.quick else dataset.shards
    runs = ["chdb"] if args.quick else args.runs.split(",")
    shutil.rmtree(WORK, ignore_errors=True)
    mirror = WORK / "mirror"
    generate_mirror(mirror, range(shards), ROWS, dataset=dataset.name)
    missing, flaky = (dataset.files(shard) for shard in (MISSING, FLAKY))
    (mirror / missing[-1]).unlink()  # its metadata
    results = {"machine": machine(), "command": " ".join(["bench/scale.py", *sys.argv[1:]]),
               "dataset": dataset.name, "shards": shards, "rows_per_shard": ROWS,
               "runs": {}, "direct": direct_cost(dataset, mirror, min(shards, 40))}
    for name in runs:
        with MirrorServer(mirror, faults={"/" + flaky[1]: [503] * 8}) as server:
            results["runs"][name] = one_run(name, dataset, server.url, shards)
        (WORK / "scale.json").write_text(json.dumps(results, indent=1))
    suffix = "-quick" if args.quick else "" if dataset.name == "laion400m" else f"-{dataset.name}"
    out = ROOT / "bench" / f"SCALE{suffix}.md"
    out.write_text(report(results))
    print(f"wrote {out}")


def machine() -> dict:
    import airflow

    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "python": platform.python_version(), "airflow": airflow.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip()}


def direct_cost(dataset: datasets.Dataset, mirror: Path, shards: int) -> dict:
    """The pipeline's own work per shard, called in one process without Airflow (fresh chdb)."""
    base = WORK / "direct"
    env = {**os.environ, "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work")}
    code = ("import json, sys, time; from laion_ingest import datasets, pipeline\n"
            "from laion_ingest.ledger import Attempt\n"
            "t = time.perf_counter()\n"
            f"d = datasets.get({dataset.name!r})\n"
            f"for s in pipeline.plan(d, 0, {shards - 1}):\n"
            "    if s != %d:\n"
            "        a = Attempt(s, d); f = pipeline.fetch(a, sys.argv[1]); a.source_bytes = f['files']\n"
            "        pipeline.load(a, pipeline.convert(a))\n"
            "print(json.dumps(time.perf_counter() - t))\n") % MISSING
    with MirrorServer(mirror) as server:
        out = subprocess.run([sys.executable, "-c", code, server.url], env=env, cwd=ROOT / "plugins",
                             capture_output=True, text=True, check=True).stdout
    seconds = json.loads(out.strip().splitlines()[-1])
    return {"shards": shards - 1, "seconds": seconds, "per_shard": seconds / (shards - 1)}


def engine(name: str, base: Path, stack: list) -> dict[str, str]:
    env = {"LAION_WORK_DIR": str(base / "work")}
    if name == "chdb":
        return {**env, "LAION_CHDB_PATH": str(base / "chdb")}
    from clickhouse_server import ClickHouseServer
    from s3_server import BUCKET, S3Server

    server, s3 = ClickHouseServer(base / "clickhouse").__enter__(), S3Server(base / "s3").__enter__()
    stack += [server, s3]
    server.sql("CREATE DATABASE bench")
    in_flight = name.split("-")[1]
    return {**env, "LAION_CLICKHOUSE_CONN_ID": "laion_clickhouse",
            "AIRFLOW_CONN_LAION_CLICKHOUSE": server.connection_uri("bench"),
            "LAION_STAGING_URL": f"s3://{BUCKET}/bench", "LAION_S3_CONN_ID": "laion_s3",
            "AIRFLOW_CONN_LAION_S3": s3.connection(),
            "LAION_MAX_SHARDS_IN_FLIGHT": in_flight}


def one_run(name: str, dataset: datasets.Dataset, url: str, shards: int) -> dict:
    from standalone import Standalone

    print(f"[{time.strftime('%H:%M:%S')}] {name}: {shards} shards ...", flush=True)
    base = WORK / name
    (base / "home").mkdir(parents=True)
    stack: list = []
    try:
        env = engine(name, base, stack)
        airflow = Standalone(base / "home", env)
        stack.append(airflow)
        disk = DiskSampler(Path(env["LAION_WORK_DIR"]))
        started = time.time()
        r = airflow.trigger({"dataset": dataset.name, "first_shard": 0, "last_shard": shards - 1,
                             "source_url": url, **INDEX})
        r.raise_for_status()
        run_id = r.json()["dag_run_id"]
        grid = GridSampler(airflow, run_id)
        state = airflow.wait_for_run(run_id, timeout=4 * 3600)
        grid.stop(), disk.stop()
        result = summarize_run(airflow, run_id, state, started)
        result.update(disk=disk.result(), grid=grid.result())
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {json.dumps(result)[:600]}", flush=True)
        return result
    finally:
        for thing in reversed(stack):
            thing.stop() if hasattr(thing, "stop") else thing.__exit__(None, None, None)


class DiskSampler(threading.Thread):
    """How many shards hold files in the work directory, and their bytes, every 0.2 s."""

    def __init__(self, work: Path):
        super().__init__(daemon=True)
        self.work, self.samples, self.done = work, [], threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.2):
            shards, size = 0, 0
            for d in self.work.glob("*/shard_*"):
                try:
                    files = [f.stat().st_size for f in d.rglob("*") if f.is_file()] if d.is_dir() else []
                except FileNotFoundError:  # the shard was loaded and its directory removed meanwhile
                    files = []
                shards += bool(files)
                size += sum(files)
            self.samples.append((time.time(), shards, size))

    def stop(self) -> None:
        self.done.set()
        self.join()

    def result(self) -> dict:
        return {"samples": len(self.samples), "max_shards": max((s[1] for s in self.samples), default=0),
                "max_bytes": max((s[2] for s in self.samples), default=0)}


class GridSampler(threading.Thread):
    """The Airflow UI's grid calls (structure, runs, task-instance summaries) every 5 s, timed."""

    def __init__(self, airflow, run_id: str):
        super().__init__(daemon=True)
        self.airflow, self.run_id, self.calls, self.done = airflow, run_id, [], threading.Event()
        self.start()

    def run(self) -> None:
        paths = {"structure": ("/ui/grid/structure/laion_ingest", {}),
                 "runs": ("/ui/grid/runs/laion_ingest", {}),
                 "ti_summaries": ("/ui/grid/ti_summaries/laion_ingest", {"run_ids": self.run_id})}
        while not self.done.wait(5):
            for what, (path, params) in paths.items():
                t = time.perf_counter()
                r = self.airflow.http.get(self.airflow.url + path, params=params, timeout=60)
                self.calls.append((what, r.status_code, time.perf_counter() - t, len(r.content)))

    def stop(self) -> None:
        self.done.set()
        self.join()

    def result(self) -> dict:
        out = {}
        for what in ("structure", "runs", "ti_summaries"):
            calls = [c for c in self.calls if c[0] == what]
            if calls:
                secs = sorted(c[2] for c in calls)
                out[what] = {"calls": len(calls), "errors": sum(c[1] != 200 for c in calls),
                             "p50_ms": 1000 * secs[len(secs) // 2], "max_ms": 1000 * secs[-1],
                             "max_bytes": max(c[3] for c in calls)}
        return out


def task_instances(airflow, run_id: str) -> list[dict]:
    tis, offset = [], 0
    while True:
        page = airflow.api("GET", f"/dags/laion_ingest/dagRuns/{run_id}/taskInstances",
                           params={"limit": 100, "offset": offset}).json()
        tis += page["task_instances"]
        offset += 100
        if offset >= page["total_entries"]:
            return tis


def summarize_run(airflow, run_id: str, state: str, triggered: float) -> dict:
    run = airflow.api("GET", f"/dags/laion_ingest/dagRuns/{run_id}").json()
    t0 = _ts(run["start_date"])
    tis = task_instances(airflow, run_id)
    shard_tasks = sorted({ti["task_id"] for ti in tis if ti["map_index"] >= 0})
    load_task = "shard.load" if "shard.load" in shard_tasks else shard_tasks[-1]
    loads = [ti for ti in tis if ti["task_id"] == load_task and ti["state"] == "success"]
    ends = sorted(_ts(ti["end_date"]) for ti in loads)
    mapped = [ti for ti in tis if ti["map_index"] >= 0]
    starts = [_ts(ti["start_date"]) for ti in mapped if ti["start_date"]]
    queued = [(_ts(ti["start_date"]) - _ts(ti["queued_when"])) for ti in mapped
              if ti["start_date"] and ti["queued_when"]]
    busy = sum(ti["duration"] or 0 for ti in mapped)
    summary_log = airflow.task_log(run_id, "summary", 1)
    retried = sorted((ti["task_id"], ti["map_index"], ti["try_number"], ti["state"]) for ti in mapped
                     if ti["try_number"] > 1 or ti["state"] != "success")
    return {
        "state": state, "trigger_to_start_s": t0 - triggered, "wall_s": _ts(run["end_date"]) - t0,
        "first_loaded_s": ends[0] - t0 if ends else None, "shards_loaded": len(loads),
        "last_loaded_s": ends[-1] - t0 if ends else None,
        "shard_stage_s": (ends[-1] - min(starts)) if ends else None,
        "task_instances": len(tis), "states": {t: dict(Counter(ti["state"] for ti in tis if ti["task_id"] == t))
                                               for t in sorted({ti["task_id"] for ti in tis})},
        "task_seconds_per_shard": busy / max(len(loads), 1),
        "queued_to_start_p50_s": statistics.median(queued) if queued else None,
        "not_first_try_or_failed": retried,
        "summary_names_missing": f"[{MISSING}]" in summary_log and "404" in summary_log,
        "summary_says": (re.findall(r"\d+ shard\(s\) failed: \[[^\]]*\]", summary_log) or [""])[0],
    }


def _ts(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def report(res: dict) -> str:
    m = res["machine"]
    d = res["direct"]
    lines = [
        f"# {res['shards']} shards of {res['dataset']} through a real scheduler", "",
        f"`PYTHONPATH=tests .venv/bin/python {res['command']}` on {m['date']}, commit {m['commit']},"
        f" {m['cores']} cores,"
        f" Airflow {m['airflow']} (`airflow standalone`: scheduler + LocalExecutor), Python {m['python']}.",
        f"{res['shards']} shards of {res['rows_per_shard']} rows, triggered over REST with the defaults"
        f" (index M=8, ef_construction=32). Shard {MISSING}'s metadata is missing on the mirror (404);"
        f" shard {FLAKY}'s text_emb answers 503 eight times. Airflow's [core] max_map_length: 4096,"
        " as docker-compose.yaml sets it.", "",
        f"The pipeline's own work, called directly in one process: {d['per_shard']:.2f} s per shard"
        f" ({d['shards']} shards).", "",
        "| run | state | wall | first shard loaded | last shard loaded | per shard (wall) | task s per shard"
        " | queued→running p50 | most shards on disk | most bytes on disk | task instances |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["runs"].items():
        per_shard = r["shard_stage_s"] / max(r["shards_loaded"], 1) if r["shard_stage_s"] else 0
        lines.append(f"| {name} | {r['state']} | {r['wall_s']:.0f} s | {r['first_loaded_s']:.1f} s |"
                     f" {r['last_loaded_s']:.0f} s | {per_shard:.2f} s | {r['task_seconds_per_shard']:.2f} s |"
                     f" {r['queued_to_start_p50_s']:.1f} s | {r['disk']['max_shards']} |"
                     f" {r['disk']['max_bytes'] / 1e6:.1f} MB | {r['task_instances']} |")
    lines += ["", "Task instances per state, and what the summary said:", ""]
    for name, r in res["runs"].items():
        lines.append(f"- **{name}**: {json.dumps(r['states'])}; not on first try or failed:"
                     f" {r['not_first_try_or_failed']}; summary: `{r['summary_says']}`")
    lines += ["", "The UI's grid endpoints, called every 5 s during the run:", "",
              "| run | endpoint | calls | errors | p50 | max | largest response |", "|---|---|---|---|---|---|---|"]
    for name, r in res["runs"].items():
        for what, g in r["grid"].items():
            lines.append(f"| {name} | {what} | {g['calls']} | {g['errors']} | {g['p50_ms']:.0f} ms |"
                         f" {g['max_ms']:.0f} ms | {g['max_bytes'] / 1e3:.0f} kB |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
