"""The command line, as a user runs it: every stage has --help, and a shard goes through
fetch, convert, load, index, search and status outside Airflow."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from laion_ingest.engines import Chdb, EngineBusy

STAGES = ["mirror", "serve", "fetch", "convert", "load", "index", "search", "status", "plan", "evaluate", "clip-check",
          "tune", "clip-udf", "clip-export", "rebalance"]


def cli(*args, env=None, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "laion_ingest", *args], env=env, capture_output=True,
                            text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage):
    assert "usage: python -m laion_ingest " + stage in cli(stage, "--help").stdout


def test_a_shard_through_every_stage(mirror, engine_env):
    for shard in (0, 1):
        sizes = json.loads(cli("fetch", str(shard), "--source-url", mirror.url).stdout)
        assert set(sizes["files"]) == {f"img_emb/img_emb_{shard}.npy", f"text_emb/text_emb_{shard}.npy",
                                       f"metadata/metadata_{shard}.parquet"}
        rows = int(cli("convert", str(shard)).stdout)
        assert int(cli("load", str(shard)).stdout) == rows
    cli("index", "--m", "8", "--ef-construction", "32")
    out = cli("search", "--shard", "1", "--row", "3", "--compare").stdout
    assert "top 10 by HNSW index:" in out and "top 10 by brute force:" in out and "recall@10: " in out
    out = cli("search", "--shard", "1", "--row", "3", "--nsfw", "UNLIKELY", "--nsfw", "UNSURE",
              "--min-similarity", "0.2", "--min-width", "128", "-k", "5", "--compare").stdout
    assert out.count("\n  ") == 10 and "recall@5: " in out  # 5 hits by each method
    out = cli("evaluate", "--queries", "5", "--ef", "16,64").stdout
    assert out.count("recall@10") == 4 and "chosen hnsw_candidate_list_size_for_search: " in out
    assert Path(out.rsplit("plot: ", 1)[1].strip()).read_bytes()[:4] == b"\x89PNG"
    status = cli("status").stdout
    assert "shards loaded: 2 of 410" in status and "ETA: " in status


def test_status_names_failing_shards_with_their_error(mirror, engine_env):
    result = cli("fetch", "3", "--source-url", mirror.url + "nowhere/", check=False)
    assert result.returncode != 0 and "shard 3: img_emb/img_emb_3.npy: HTTP 404" in result.stderr
    status = json.loads(cli("status", "--json").stdout)
    assert status["shards_loaded"] == 0
    assert status["failing"][0]["shard"] == 3 and "HTTP 404" in status["failing"][0]["last_error"]


def test_a_second_process_waits_for_the_chdb_directory(chdb_env):
    """chdb admits one process per data directory: the second one queues, saying who holds it."""
    holder = Chdb(Path(chdb_env["LAION_CHDB_PATH"]))
    env = dict(os.environ)
    waiting = subprocess.Popen([sys.executable, "-m", "laion_ingest", "status"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=3)  # blocked while this test holds the directory
    finally:
        holder.close()  # release it, as a finished task does
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and "shards loaded: 0 of 410" in out
    assert f"waiting for the chdb data directory {chdb_env['LAION_CHDB_PATH']}, held by pid {os.getpid()}" in err


@pytest.mark.parametrize("args, status, problem", [
    (["fetch", "65536"], 2, "argument shard: 65,536 is out of range (0..65,535)"),
    (["load", "-1"], 2, "argument shard: -1 is out of range (0..65,535)"),
    (["convert", "2.0"], 2, "argument shard: '2.0' is not a whole number"),
    (["search", "-k", str(2**40)], 2, f"argument -k: {2**40:,} is out of range (1..10,000)"),
    (["index", "--m", "0"], 2, "argument --m: 0 is out of range (2..512)"),
    (["plan", "--shards", "5-3"], 2, "argument --shards: '5-3': 5 is after 3"),
    # The range a dataset has is its own: 410 is past laion400m's last shard, not laion2b-en's.
    (["fetch", "410"], 1, "shards 410..410 are outside laion400m, whose shards are 0..409"),
    (["plan", "--shards", "0-410"], 1, "shards 0..410 are outside laion400m, whose shards are 0..409"),
    (["plan", "--dataset", "laion2b-en", "--shards", "2300-2314"], 1, "laion2b-en, whose shards are 0..2313"),
    (["status", "--dataset", "laion3b"], 2, "argument --dataset: invalid choice: 'laion3b'"),
])
def test_out_of_range_numbers_are_refused_naming_the_value(args, status, problem):
    result = cli(*args, check=False)
    assert result.returncode == status and problem in result.stderr, result.stderr[-300:]


def test_a_symlinked_chdb_path_takes_the_same_lock(chdb_env, tmp_path):
    real = Path(chdb_env["LAION_CHDB_PATH"])
    link = tmp_path / "link_to_chdb"
    holder = Chdb(real)
    try:
        link.symlink_to(real)
        with pytest.raises(EngineBusy):
            Chdb(link, lock_timeout=1)
    finally:
        holder.close()


def test_plan_sizes_the_whole_data_set_with_the_seed_index():
    """The issue's figure: ~614 GB of RAM per index column for 400M rows at bf16, M=64 (ClickHouse's
    formula); 410 shards are ~410M rows. It opens no engine. BFloat16 vectors halve the table's
    rows on disk; a query's latency grows with the parts a node holds, so more nodes answer faster."""
    nowhere = {"LAION_CHDB_PATH": "/nonexistent/never-created"}
    out = cli("plan", "--shards", "0-409", env=nowhere).stdout
    assert "index RAM per column: 630 GB in all" in out
    assert "fits 1 node(s) of 256 GB RAM: no (nodes needed at 256 GB: 7)" in out
    assert "index build: about 216 core-hours" in out
    assert "table on disk: 1,721 GB of rows + 1,260 GB of indexes (vectors in Float32, LAION_VECTOR_TYPE" in out
    bf16 = cli("plan", "--shards", "0-409", env={**nowhere, "LAION_VECTOR_TYPE": "BFloat16"}).stdout
    assert "table on disk: 881 GB of rows + 1,260 GB of indexes (vectors in BFloat16)" in bf16
    seven = cli("plan", "--shards", "0-409", "--nodes", "7", env=nowhere).stdout
    latency = [float(re.search(r"a query on a node holding (\d+) parts: ~([\d,]+) ms on 2 cores", o)[2].replace(
        ",", "")) for o in (out, seven)]
    assert "a query on a node holding 410 parts" in out and "a query on a node holding 59 parts" in seven
    assert latency[1] < latency[0] / 5
    out = cli("plan", "--shards", "0-9", "--m", "16", "--ef-construction", "64", "--quantization", "i8").stdout
    assert "vector_similarity('hnsw', 'cosineDistance', 512, 'i8', 16, 64)" in out
    assert "fits 1 node(s) of 256 GB RAM: yes" in out
