"""The laion_ingest DAG end to end through real Airflow (`airflow dags test`), real chdb and a real
HTTP mirror: one bad shard among good ones, then a re-run and a forced reload."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.mirror_server import MirrorServer
from laion_ingest.search import explain, row_vector, search

INDEX = {"index_m": 8, "index_ef_construction": 32}  # small graphs: seconds, not hours
BAD = 3


def run_dag(env: dict, conf: dict) -> subprocess.CompletedProcess:
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([airflow, "dags", "test", "laion_ingest", "-c", json.dumps(conf)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def source_rows(mirror: Path, shard: int) -> int:
    return pq.ParquetFile(mirror / f"metadata/metadata_{shard}.parquet").metadata.num_rows


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, mirror_dir, airflow_home):
    """Shards 0-3 where shard 3's image .npy has fewer rows than its metadata; one DAG run."""
    base = tmp_path_factory.mktemp("dag")
    src = base / "mirror"
    shutil.copytree(mirror_dir, src)
    short = np.load(src / f"img_emb/img_emb_{BAD}.npy")[:-5]
    np.save(src / f"img_emb/img_emb_{BAD}.npy", short)
    env = {**airflow_home, "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work")}
    with MirrorServer(src) as server:
        conf = {"first_shard": 0, "last_shard": BAD, "source_url": server.url, **INDEX}
        first = run_dag(env, conf)
        yield {"env": env, "src": src, "server": server, "conf": conf, "first": first}


def connect(loaded) -> ClickHouse:
    from laion_ingest.clickhouse import Chdb

    return ClickHouse(Chdb(Path(loaded["env"]["LAION_CHDB_PATH"])))


def test_good_shards_are_loaded_completely(loaded):
    expected = sum(source_rows(loaded["src"], s) for s in range(BAD))
    with connect(loaded) as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (expected, expected)
        assert [r[0] for r in ch.query("SELECT DISTINCT shard FROM laion ORDER BY shard")] == [0, 1, 2]
        assert ch.query("SELECT countIf(id != shard * 1000000000 + row) FROM laion")[0][0] == 0


def test_bad_shard_fails_clearly_and_loads_nothing(loaded):
    first = loaded["first"]
    log = first.stdout + first.stderr
    message = f"shard {BAD}: img_emb/img_emb_{BAD}.npy: has {source_rows(loaded['src'], BAD) - 5} rows"
    assert message in log
    assert f"1 shard(s) failed: [{BAD}]" in log  # the summary names it
    with connect(loaded) as ch:
        assert ch.query("SELECT count() FROM laion WHERE shard = {s:UInt16}", s=BAD)[0][0] == 0
        outcome, stage, tries, error = ch.query(
            "SELECT outcome, stage, try_number, error FROM laion_ledger WHERE shard = {s:UInt16}", s=BAD)[0]
    assert (outcome, stage, tries) == ("failed", "convert", 1)  # a permanent error spends no retries
    assert message in error


def test_captions_and_metadata_are_byte_exact(loaded):
    with connect(loaded) as ch:
        for shard in range(BAD):
            meta = pq.read_table(loaded["src"] / f"metadata/metadata_{shard}.parquet")
            got = ch.query("SELECT caption, url, key, exif, similarity, width FROM laion"
                           " WHERE shard = {s:UInt16} ORDER BY row", s=shard)
            for i, name in enumerate(("caption", "url", "key", "exif", "similarity", "width")):
                assert [r[i] for r in got] == meta.column(name).to_pylist(), name
            captions = meta.column("caption").to_pylist()
            text = "".join(c for c in captions if c)
            assert None in captions and "" in captions  # null and empty stay apart
            assert all(ch in text for ch in ('"', "'", "\t", "\n", "\r\n", "\\")) and not text.isascii()


def test_vectors_equal_the_source_float16_values(loaded):
    with connect(loaded) as ch:
        for shard, row in ((0, 0), (1, 17), (2, source_rows(loaded["src"], 2) - 1)):
            for kind in ("img", "text"):
                source = np.load(loaded["src"] / f"{kind}_emb/{kind}_emb_{shard}.npy", mmap_mode="r")[row]
                column = "image_embedding" if kind == "img" else "text_embedding"
                stored = np.array(row_vector(ch, column, shard, row), dtype=np.float32)
                assert np.array_equal(stored, source.astype(np.float32))


def test_indexes_exist_and_answer_the_ann_query(loaded):
    with connect(loaded) as ch:
        names = {r[0] for r in ch.run("vector_index_definitions")}
        assert names == {"image_index", "text_index"}
        assert ch.run("vector_index_pending") == []
        target = row_vector(ch, "text_embedding", 1, 3)
        plan = explain(ch, target)
        assert "vector_similarity" in plan and "image_index" in plan
        assert search(ch, target, k=10)[0].id == search(ch, target, k=10, exact=True)[0].id
        seed = ch.run("search_seed", target=target)  # the seed's query, unchanged
        assert len(seed) == 10 and seed[0][0] == search(ch, target, k=1)[0].url


def test_rerun_and_forced_reload_keep_the_row_count(loaded):
    env, conf = loaded["env"], loaded["conf"]
    with connect(loaded) as ch:
        before = ch.query("SELECT count() FROM laion")[0][0]
    again = run_dag(env, {**conf, "last_shard": 2})
    assert again.returncode == 0, again.stdout[-3000:]
    assert "skipping 3 shard(s) already loaded: [0, 1, 2]" in again.stdout + again.stderr
    forced = run_dag(env, {**conf, "first_shard": 1, "last_shard": 1, "force": True})
    assert forced.returncode == 0, forced.stdout[-3000:]
    with connect(loaded) as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (before, before)
        loads = ch.query("SELECT count() FROM laion_ledger WHERE shard = 1 AND outcome = 'loaded'")[0][0]
        assert loads == 2
        assert ch.run("vector_index_pending") == []  # the reloaded shard got its index again
