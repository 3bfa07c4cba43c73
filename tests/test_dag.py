"""The laion_ingest DAG end to end through real Airflow (`airflow dags test`), real chdb and a real
HTTP mirror: one bad shard among good ones, then a re-run and a forced reload."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, with_engine
from test_cli import cli
from test_load_index import NAN_PART

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search import explain, recall, row_vector, search

pytestmark = pytest.mark.slow  # airflow dags test, many runs: make test-fast leaves it out

INDEX = {"index_m": 8, "index_ef_construction": 32}  # small graphs: seconds, not hours
BAD = 3


def run_dag(env: dict, conf: dict) -> subprocess.CompletedProcess:
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([airflow, "dags", "test", "laion_ingest", "-c", json.dumps(conf)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def last_run(env: dict) -> dict:
    """The latest run of laion_ingest in Airflow's own database: its state, the summary's tries and
    the `laion` Asset events it published."""
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        run_id, state = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = 'laion_ingest'"
                                   " ORDER BY id DESC LIMIT 1").fetchone()
        tasks = dict(db.execute("SELECT task_id, state FROM task_instance WHERE run_id = ? AND map_index = -1",
                                (run_id,)).fetchall())
        [(summary_tries,)] = db.execute("SELECT try_number FROM task_instance WHERE run_id = ?"
                                        " AND task_id = 'summary'", (run_id,)).fetchall()
        [(events,)] = db.execute("SELECT count() FROM asset_event WHERE source_run_id = ?", (run_id,)).fetchall()
    return {"run_id": run_id, "state": state, "tasks": tasks, "summary_tries": summary_tries, "asset_events": events}


def source_rows(mirror: Path, shard: int) -> int:
    return pq.ParquetFile(mirror / f"metadata/metadata_{shard}.parquet").metadata.num_rows


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, mirror_dir, airflow_home, module_engine):
    """Shards 0-3 where shard 3's image .npy has fewer rows than its metadata; one DAG run."""
    base = tmp_path_factory.mktemp("dag")
    src = base / "mirror"
    shutil.copytree(mirror_dir, src)
    short = np.load(src / f"img_emb/img_emb_{BAD}.npy")[:-5]
    np.save(src / f"img_emb/img_emb_{BAD}.npy", short)
    env = with_engine(airflow_home, module_engine)
    with MirrorServer(src) as server:
        conf = {"first_shard": 0, "last_shard": BAD, "source_url": server.url, **INDEX}
        first = run_dag(env, conf)
        yield {"env": env, "src": src, "server": server, "conf": conf, "first": first, "first_run": last_run(env)}


def connect(loaded) -> ClickHouse:
    return ClickHouse()  # the module's engine, from the environment


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


def test_a_failed_shard_fails_the_run_at_once_and_publishes_no_asset(loaded):
    run = loaded["first_run"]
    assert run["state"] == "failed" and run["tasks"]["summary"] == "failed"
    assert run["summary_tries"] == 1  # "shards failed" is final: no retries of the summary
    assert run["asset_events"] == 0  # the table is not whole: downstream DAGs are not triggered


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
        assert recall(search(ch, target, k=10), search(ch, target, k=10, exact=True)) >= 0.8  # approximate
        # the run measured the index it built (evaluate_search) and search uses its choice
        quality = ch.query("SELECT kind, count(), max(queries), sum(chosen) FROM laion_search_quality GROUP BY kind"
                           " ORDER BY kind")
        assert quality == [("image→image", 5, 20, 1), ("text→image", 5, 20, 1)]
        seed = ch.run("search_seed", target=target)  # the seed's query, unchanged
        assert len(seed) == 10 and seed[0][0] == search(ch, target, k=1)[0].url
    assert loaded["first_run"]["tasks"]["evaluate_search"] == "success"
    assert "plot: " in loaded["first"].stdout + loaded["first"].stderr


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
    run = last_run(env)
    assert run["state"] == "success" and run["asset_events"] == 1  # whole and indexed: published


def test_refused_index_parameters_fail_the_run_saying_what_to_do(loaded):
    refused = run_dag(loaded["env"], {**loaded["conf"], "last_shard": 2, "index_m": 12})
    log = refused.stdout + refused.stderr
    assert "to rebuild it with the new parameters run: ALTER TABLE laion DROP INDEX image_index" in log
    assert "the vector indexes were not built" in log
    run = last_run(loaded["env"])
    assert run["state"] == "failed" and run["tasks"]["add_vector_indexes"] == "failed"
    assert (run["summary_tries"], run["asset_events"]) == (1, 0)


def test_an_index_build_that_fails_fails_the_run_naming_the_shard(loaded):
    with connect(loaded) as ch:  # a part whose vectors are NaN: ClickHouse cannot build its graph
        ch.query(NAN_PART)
    failed = run_dag(loaded["env"], {**loaded["conf"], "last_shard": 2})
    log = failed.stdout + failed.stderr
    assert "shard 9: vector index build failed" in log and "non-finite values" in log
    assert "the vector indexes were not built" in log
    run = last_run(loaded["env"])
    assert run["state"] == "failed" and (run["summary_tries"], run["asset_events"]) == (1, 0)
    with connect(loaded) as ch:
        ch.query("ALTER TABLE laion DROP PARTITION 9")


def test_a_range_over_airflows_map_limit_is_refused_before_anything_loads(loaded):
    """laion2b-en's 2,314 shards are over Airflow's default max_map_length of 1024: a deployment
    that did not raise it is told which setting to raise, by the run's first task."""
    env = {**loaded["env"], "AIRFLOW__CORE__MAX_MAP_LENGTH": "2"}
    refused = run_dag(env, {**loaded["conf"], "force": True})
    log = refused.stdout + refused.stderr
    assert "4 shards to load is more than Airflow's [core] max_map_length of 2" in log
    run = last_run(env)
    assert run["state"] == "failed" and run["tasks"]["plan_shards"] == "failed"
    with connect(loaded) as ch:
        assert ch.query("SELECT count() FROM laion_ledger WHERE run_id = {r:String}", r=run["run_id"])[0][0] == 0


def test_the_dag_indexes_with_the_tuned_setting_when_asked(loaded, request):
    """index_setting = tuned: the setting `tune` recommended, read from <table>_tune, and the summary
    says which and what tune measured; before any tune run, the run fails saying to run it."""
    conf = {**loaded["conf"], "last_shard": 2, "index_setting": "tuned"}
    refused = run_dag(loaded["env"], conf)
    assert "tune has recommended no setting for laion400m: run `python -m laion_ingest tune" in refused.stdout
    assert last_run(loaded["env"])["tasks"]["add_vector_indexes"] == "failed"
    cli("tune", "--m", "8,16", "--ef-construction", "32,64", "--quantizations", "bf16", "--queries", "10",
        "--target-recall", "0.8", env=loaded["env"])
    with connect(loaded) as ch:
        [(m, ef_construction, quantization)] = ch.query(
            "SELECT m, ef_construction, quantization FROM laion_tune WHERE recommended")
        drop = "ALTER TABLE {}laion DROP INDEX image_index, DROP INDEX text_index SETTINGS mutations_sync = 2"
        if ch.is_server:  # as its administrator would: the package's user may not drop indexes
            request.getfixturevalue("clickhouse_server").sql(drop.format(ch.database + "."))
        else:
            ch.query(drop.format(""))
    tuned = run_dag(loaded["env"], conf)
    assert tuned.returncode == 0, tuned.stdout[-3000:]
    assert f"'{quantization}', {m}, {ef_construction}) (tuned on shard 0: recall@10" in tuned.stdout
    with connect(loaded) as ch:
        types = {t for (t,) in ch.query("SELECT type_full FROM system.data_skipping_indices"
                                        " WHERE database = currentDatabase() AND table = 'laion'")}
        assert types == {f"vector_similarity('hnsw', 'cosineDistance', 512, '{quantization}', {m}, {ef_construction})"}
        assert ch.run("vector_index_pending") == []
