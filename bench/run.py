"""The benchmark, in one run: `make bench` (= .venv/bin/python bench/run.py), or `--quick` to try it.

Generates shards of the real shapes (100,000 rows and 1,000,448 rows, the size of img_emb_0),
serves them on a loopback HTTP mirror, runs the seed's documented method on the 100,000-row shard
and our fetch, convert and load on both, measures the variants worth knowing (file formats and
options, insert settings, overlap), the HNSW index build with the seed's parameters and its
indexed-once evidence, and 410 tiny shards through the real DAG. Each measured stage runs in its own
process (bench/stages.py), so its peak RSS is its own. Writes bench/RESULTS.md (overwritten).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from provenance import changed_since, machine, package_digest

from laion_ingest.clickhouse import sql
from laion_ingest.sample.mirror import generate_shard, shard_rows
from laion_ingest.sample.server import MirrorServer

ROOT = Path(__file__).resolve().parents[1]


PY = sys.executable
SIZES = {  # small and big shard, index shards (two, then a backfill), tiny shards for the DAG
    "full": dict(small=100_000, big=1_000_448, index=[50_000, 50_000, 5_000], tiny=410, tiny_rows=50),
    "quick": dict(small=5_000, big=20_000, index=[300, 300, 100], tiny=12, tiny_rows=50),
}
REPEAT = 3  # the package's convert and load run 3 times per shard; RESULTS.md shows the median run


def sql_settings(name: str) -> str:
    """The SETTINGS clause of include/sql/<name>.sql's last statement: what the package runs with."""
    return " ".join(sql(name)[-1].split("SETTINGS", 1)[1].split())


# Load settings: the package's (read from its SQL) and what they replaced.
PACKAGE = sql_settings("stage_insert_file")
STAGE_TABLE = sql_settings("stage_create")
NO_MERGES = "max_bytes_to_merge_at_max_space_in_pool = 1, max_bytes_to_merge_at_min_space_in_pool = 1"
SKIP = "materialize_skip_indexes_on_insert = 0"
PREAD = "storage_file_read_method = 'pread'"
PREVIOUS = (f"{SKIP}, {PREAD}, input_format_parquet_memory_high_watermark = 134217728, max_insert_threads = 1,"
            " min_insert_block_size_bytes = 67108864")
COARSE = "index_granularity_bytes = 10485760"  # ClickHouse's default granules (laion now has 1 MiB)
ONE_BLOCK = ("max_insert_threads = 1, min_insert_block_size_rows = 2000000, min_insert_block_size_bytes = 0,"
             " max_insert_block_size = 2000000")
LOAD_VARIANTS = [  # (label, format, insert settings, staging-table settings, run OPTIMIZE FINAL)
    ("ClickHouse's defaults (file() memory-maps its input, 2 threads, 256 MB blocks, background merges,"
     " 10 MiB granules)", "Parquet", "", COARSE, True),
    ("the previous package: + pread, 128 MB reader watermark, 1 insert thread, 64 MB blocks", "Parquet",
     PREVIOUS, COARSE, True),
    ("+ no background merges in the staging table", "Parquet", PREVIOUS, f"{COARSE}, {NO_MERGES}", True),
    ("+ 1 MiB granules", "Parquet", PREVIOUS, NO_MERGES, True),
    ("+ 1 parsing thread, 32 MB blocks", "Parquet", PACKAGE, NO_MERGES, True),
    ("+ Compact staged parts (the package)", "Parquet", PACKAGE, STAGE_TABLE, True),
    ("+ a horizontal merge (not taken: its memory grows with the number of staged parts)", "Parquet", PACKAGE,
     f"{STAGE_TABLE}, enable_vertical_merge_algorithm = 0", True),
    ("Arrow IPC input, the whole shard as one insert block (one part: no OPTIMIZE)", "Arrow",
     f"{SKIP}, {PREAD}, {ONE_BLOCK}", "", False),
]
WRITE_VARIANTS = [  # (label, write_variant options, ClickHouse format)
    ("Parquet f16, 16k row groups, the package (pyarrow; vectors plain, uncompressed)", {"fmt": "package"}, "Parquet"),
    ("Parquet f32 vectors", {"vec": "f32"}, "Parquet"),
    ("Parquet f16, vectors zstd", {"vec_compression": "zstd"}, "Parquet"),
    ("Parquet f16, vectors lz4", {"vec_compression": "lz4"}, "Parquet"),
    ("Parquet f16, dictionary + statistics on vectors", {"vec_dict_stats": True}, "Parquet"),
    ("Parquet f16, 8k row groups", {"row_group": 8_192}, "Parquet"),
    ("Parquet f16, 64k row groups", {"row_group": 65_536}, "Parquet"),
    ("Arrow IPC f16, uncompressed", {"fmt": "arrow"}, "Arrow"),
    ("Arrow IPC f16, lz4", {"fmt": "arrow", "vec_compression": "lz4"}, "Arrow"),
    ("Arrow IPC f32, uncompressed", {"fmt": "arrow", "vec": "f32"}, "Arrow"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks that the script works")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work", help="scratch directory")
    ap.add_argument("--out", type=Path, help="results file (default bench/RESULTS.md; --quick: work dir)")
    ap.add_argument("--render", action="store_true", help="only rewrite the results file from work/results.json")
    args = ap.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    work = args.work.resolve()
    out = args.out or (work / "RESULTS-quick.md" if args.quick else ROOT / "bench" / "RESULTS.md")
    import report
    if args.render:
        out.write_text(report.render(json.loads((work / "results.json").read_text())))
        return
    started = time.time()
    r = {"size": size, "machine": machine(work), "date": datetime.datetime.now().astimezone().isoformat(" ", "seconds"),
         "package": {"digest_start": package_digest()}}

    mirrors = work / "mirrors"
    log("generating mirrors ...")
    exact_shard(mirrors / "small", 0, size["small"])
    exact_shard(mirrors / "big", 0, size["big"])
    for shard, rows in enumerate(size["index"]):
        exact_shard(mirrors / "index", shard, rows)
    for shard in range(size["tiny"]):
        exact_shard(mirrors / "tiny", shard, size["tiny_rows"])

    with MirrorServer(mirrors) as server:
        url = server.url
        r["seed"] = seed(work / "seed", url + "small/")
        r["ours"] = {k: ours(work / k, url + f"{k}/", k) for k in ("small", "big")}
        r["write"] = write_variants(work)
        r["load"] = load_variants(work)
        r["perf"] = perf_profile(work)
        r["overlap"] = overlap(work, url + "big/")
        r["on_insert"] = on_insert(work, url + "index/")
        r["index"] = stage("index_build", url=url + "index/", shards=list(range(len(size["index"]))),
                           work=str(work / "index" / "work"), chdb=str(work / "index" / "chdb"))
        r["dag"] = orchestration(work, url + "tiny/", size["tiny"])
    r["total_minutes"] = (time.time() - started) / 60
    r["package"]["digest_end"] = package_digest()
    r["package"]["changed"] = changed_since(started)
    (work / "results.json").write_text(json.dumps(r, indent=1, default=str))
    out.write_text(report.render(r))
    log(f"wrote {out} ({r['total_minutes']:.1f} min)")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage(name: str, quiet: bool = False, **kwargs) -> dict:
    """Run bench/stages.py NAME in a fresh process after a sync (so earlier writes are not flushed
    during this stage); returns its BENCH_RESULT plus the load average around it."""
    os.sync()
    load_before = os.getloadavg()[0]
    proc = subprocess.run([PY, str(ROOT / "bench" / "stages.py"), name, json.dumps(kwargs)],
                          capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"stage {name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1].split(" ", 1)[1])
    result["load_avg"] = (load_before, os.getloadavg()[0])
    result["at"] = time.time() - result["seconds"]
    if not quiet:
        log(f"{name}: {result['seconds']:.2f} s, {result['rss_mb']:.0f} MB"
            + (f", {result['rows'] / result['seconds']:,.0f} rows/s" if result.get("rows") else ""))
    return result


def fresh(*paths: Path) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def exact_shard(folder: Path, shard: int, rows: int) -> None:
    """generate_shard with exactly `rows` rows (it adds a per-shard offset to the nominal size);
    kept across runs when already there."""
    marker = folder / f".shard_{shard}.rows"
    if not marker.exists() or marker.read_text() != str(rows):
        assert generate_shard(folder, shard, rows - shard_rows(0, shard)) == rows
        marker.write_text(str(rows))


def seed(d: Path, url: str) -> dict:
    log("seed's method on the small shard ...")
    fresh(d)
    return {"download": stage("seed_download", url=url, shard=0, dest=str(d / "files")),
            "csv": stage("seed_csv", src=str(d / "files"), shard=0, csv=str(d / "0.csv")),
            "insert": stage("seed_insert", csv=str(d / "0.csv"), chdb=str(d / "chdb"))}


def ours(d: Path, url: str, key: str) -> dict:
    """The package's stages (convert and load REPEAT times), pyarrow alone on the vectors, and
    configuration B (Arrow IPC staging) on the same shard."""
    log(f"our stages on the {key} shard ...")
    fresh(d)
    files, parquet, arrow = d / "files", d / "laion_0.parquet", d / "laion_0.arrow"
    res = {"fetch": stage("fetch", url=url, shard=0, dest=str(files))}
    res["convert_runs"] = []
    for _ in range(REPEAT):
        fresh(parquet)  # deleting the previous run's file is not convert's work
        res["convert_runs"].append(stage("convert", shard=0, src=str(files), out=str(parquet)))
    res["load_runs"], res["probes"] = [], []
    for _ in range(REPEAT):
        res["probes"].append(stage("memory_probe", quiet=True, dest=str(d / "probe")))
        res["load_runs"].append(stage("load", shard=0, parquet=str(parquet), chdb=str(d / "chdb")))
        fresh(d / "chdb")
    res["convert"], res["load"] = median(res["convert_runs"]), median(res["load_runs"])
    res["load_server"] = stage("load_server", shard=0, parquet=str(parquet), base=str(d / "server"))
    res["vectors_floor"] = stage("vectors_floor", shard=0, src=str(files))
    res["vectors_floor_f32"] = stage("vectors_floor", shard=0, src=str(files), vec="f32")
    if key == "big":
        res["convert_profile"] = stage("convert", quiet=True, shard=0, src=str(files), out=str(d / "p.parquet"),
                                       profile=True)
        fresh(d / "p.parquet")
    res["convert_arrow"] = stage("write_variant", shard=0, src=str(files), out=str(arrow), fmt="arrow")
    res["load_arrow"] = stage("load_variant", shard=0, path=str(arrow), fmt="Arrow", chdb=str(d / "chdb"),
                              settings=PACKAGE, table_settings=STAGE_TABLE)
    fresh(d / "chdb")
    return res


def median(runs: list) -> dict:
    """The run with the median seconds, with the highest peak RSS of all runs and the range of seconds."""
    mid = sorted(runs, key=lambda s: s["seconds"])[len(runs) // 2]
    return {**mid, "rss_mb": max(s["rss_mb"] for s in runs), "range": [min(s["seconds"] for s in runs),
                                                                       max(s["seconds"] for s in runs)]}


def write_variants(work: Path) -> list:
    """Each file option on the small shard: write time and size, then ClickHouse reading it."""
    log("convert variants on the small shard ...")
    files, out = work / "small" / "files", []
    for label, opts, fmt in WRITE_VARIANTS:
        path = work / "variant.out"
        fresh(path)
        w = stage("write_variant", quiet=True, shard=0, src=str(files), out=str(path), **opts)
        rd = stage("read_variant", quiet=True, path=str(path), fmt=fmt, chdb=str(work / "read_chdb"))
        out.append({"label": label, "write": w, "read": rd})
    npy = [str(files / f) for f in ("img_emb/img_emb_0.npy", "text_emb/text_emb_0.npy")]
    out.append({"label": "no conversion: ClickHouse reads both .npy (file(p, Npy))", "write": None,
                "read": stage("read_npy", quiet=True, paths=npy, chdb=str(work / "read_chdb"))})
    fresh(work / "variant.out", work / "read_chdb")
    return out


def load_variants(work: Path) -> list:
    log("load variants on the big shard ...")
    out = []
    for label, fmt, settings, table_settings, optimize in LOAD_VARIANTS:
        path = work / "big" / ("laion_0.parquet" if fmt == "Parquet" else "laion_0.arrow")
        res = stage("load_variant", shard=0, path=str(path), fmt=fmt, settings=settings, table_settings=table_settings,
                    optimize=optimize, chdb=str(work / "lv_chdb"))
        out.append({"label": label, "settings": settings, **res})
        fresh(work / "lv_chdb")
    return out


def perf_profile(work: Path) -> dict | None:
    """Where a load's CPU goes, by `perf record` (chdb's symbols are stripped: by library, and the
    kernel's functions by name). Skipped when perf is not installed."""
    if not shutil.which("perf"):
        return None
    log("perf profile of a load ...")
    data = work / "perf.data"
    args = dict(shard=0, path=str(work / "big" / "laion_0.parquet"), chdb=str(work / "lv_chdb"),
                settings=PACKAGE, table_settings=STAGE_TABLE)
    os.sync()
    subprocess.run(["perf", "record", "-q", "-F", "199", "-o", str(data), "--", PY, str(ROOT / "bench" / "stages.py"),
                    "load_variant", json.dumps(args)], cwd=ROOT, capture_output=True, check=True)
    fresh(work / "lv_chdb")

    def top(sort: str, n: int) -> list:
        text = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio"],
                              capture_output=True, text=True).stdout
        rows = [re.match(r"\s+([\d.]+)%\s+(.*?)\s*$", line) for line in text.splitlines()]
        return [(float(m[1]), " ".join(m[2].split()).removesuffix(" - -")) for m in rows if m][:n]
    out = {"dso": top("dso", 4), "symbols": [x for x in top("dso,symbol", 40) if "[k]" in x[1]][:5]}
    fresh(data)
    return out


def overlap(work: Path, url: str) -> dict:
    """Downloading one shard while converting another (what the DAG's mapped tasks do) against
    the two one after the other."""
    log("overlap of download and conversion ...")
    d = work / "overlap"
    fresh(d)
    args = [dict(url=url, shard=0, dest=str(d / "files")),
            dict(shard=0, src=str(work / "big" / "files"), out=str(d / "x.parquet"))]
    started = time.perf_counter()
    procs = [subprocess.Popen([PY, str(ROOT / "bench" / "stages.py"), name, json.dumps(a)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
             for name, a in zip(("fetch", "convert"), args, strict=True)]
    results = [json.loads(p.communicate()[0].splitlines()[-1].split(" ", 1)[1]) for p in procs]
    wall = time.perf_counter() - started
    fresh(d)
    return {"wall": wall, "fetch": results[0], "convert": results[1]}


def on_insert(work: Path, url: str) -> list:
    """A shard loaded after the HNSW indexes exist: materialize_skip_indexes_on_insert 0 (the
    package) against 1 (ClickHouse's default), with the seed's index parameters."""
    log("materialize_skip_indexes_on_insert ...")
    d = work / "on_insert"
    fresh(d)
    stage("fetch", quiet=True, url=url, shard=2, dest=str(d / "files"))
    stage("convert", quiet=True, shard=2, src=str(d / "files"), out=str(d / "x.parquet"))
    out = []
    for value in (0, 1):
        res = stage("load_variant", shard=2, path=str(d / "x.parquet"), chdb=str(d / "chdb"),
                    settings=f"materialize_skip_indexes_on_insert = {value}", declare_indexes={})
        out.append({"value": value, **res})
    fresh(d)
    return out


def orchestration(work: Path, url: str, shards: int) -> dict:
    """The tiny shards through the real DAG (`airflow dags test`), and the same pipeline calls
    made directly in one process; the difference per shard is Airflow's overhead."""
    log(f"{shards} tiny shards, directly and through the DAG ...")
    d = work / "dag"
    fresh(d)
    direct = stage("tiny_direct", url=url, first=0, last=shards - 1, work=str(d / "direct_work"),
                   chdb=str(d / "direct_chdb"))
    env = {**os.environ, "AIRFLOW_HOME": str(d / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": "dags",
           "AIRFLOW__CORE__PLUGINS_FOLDER": "plugins", "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "LAION_CHDB_PATH": str(d / "chdb"), "LAION_WORK_DIR": str(d / "work")}
    airflow = str(Path(PY).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    conf = {"first_shard": 0, "last_shard": shards - 1, "source_url": url, "build_indexes": False}
    started = time.perf_counter()
    with open(d / "dag_test.log", "w") as f:
        code = subprocess.run([airflow, "dags", "test", "laion_ingest", "-c", json.dumps(conf)], cwd=ROOT,
                              env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    text = (d / "dag_test.log").read_text()
    os.environ.update(LAION_CHDB_PATH=env["LAION_CHDB_PATH"])
    from laion_ingest.clickhouse import ClickHouse
    with ClickHouse() as ch:
        loaded, rows = ch.query("SELECT uniqExact(shard), count() FROM laion")[0]
    log(f"DAG: {wall:.0f} s, exit {code}, {loaded} shards loaded")
    return {"direct": direct, "dag_wall": wall, "exit": code, "shards": shards, "loaded": loaded, "rows": rows,
            "tasks": text.count("[DAG TEST] end task")}


if __name__ == "__main__":
    main()
