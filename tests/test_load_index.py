"""load and index against chdb: atomic replacement, nothing lost on failure, each part indexed once."""
from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from laion_ingest import datasets, pipeline, status
from laion_ingest import index as index_module
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.convert import convert_shard, staged_name
from laion_ingest.engines import QueryError
from laion_ingest.errors import DiskSpaceError, PermanentError, SettingError
from laion_ingest.index import IndexParams, build_indexes
from laion_ingest.ledger import Attempt, differing_shards, shard_status
from laion_ingest.load import create_tables, load_shard
from laion_ingest.sample.mirror import generate_shard
from laion_ingest.search import explain, recall, row_vector, search

LAION400M = datasets.get("laion400m")

SMALL = IndexParams(m=8, ef_construction=32)


def load(mirror, shard, try_number=1):
    attempt = Attempt(shard, try_number=try_number)
    pipeline.fetch(attempt, mirror.url)
    pipeline.convert(attempt)
    return pipeline.load(attempt)


def count(shard=None):
    with ClickHouse() as ch:
        where = "" if shard is None else f" WHERE shard = {int(shard)}"
        return ch.query("SELECT count(), uniqExact(id) FROM laion" + where)[0]


def test_reload_replaces_the_shard_without_duplicates(mirror, engine_env):
    rows = load(mirror, 0)
    assert count(0) == (rows, rows)
    load(mirror, 0, try_number=2)
    assert count(0) == (rows, rows)
    with ClickHouse() as ch:
        [status] = shard_status(ch)
        assert (status["loaded"], status["rows"], status["max_try"]) == (1, rows, 2)
        assert ch.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                        " AND name LIKE 'laion_stage_%'")[0][0] == 0
        # staged parts deleted, not parked
        assert ch.query("SELECT count() FROM system.dropped_tables WHERE database = currentDatabase()")[0][0] == 0
    assert not pipeline.shard_dir(LAION400M, 0).exists()  # downloads and Parquet removed after the load


def test_a_failed_reload_keeps_the_loaded_shard(mirror, engine_env):
    rows = load(mirror, 1)
    attempt = Attempt(1, try_number=2)
    pipeline.fetch(attempt, mirror.url)
    pipeline.convert(attempt)
    staged = pipeline.shard_dir(LAION400M, 1) / staged_name(LAION400M, 1)
    staged.write_bytes(staged.read_bytes()[: staged.stat().st_size // 2])  # torn file: ClickHouse's read fails
    with pytest.raises(QueryError):
        pipeline.load(attempt, rows)  # the row count as convert reported it: the file is ClickHouse's to read
    assert count(1) == (rows, rows)
    with ClickHouse() as ch:
        [status] = shard_status(ch)
        assert status["last_outcome"] == "failed" and status["loaded"] and "load" in ch.query(
            "SELECT stage FROM laion_ledger WHERE outcome = 'failed'")[0]
        assert ch.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                        " AND name LIKE 'laion_stage_%'")[0][0] == 0


def test_a_shard_larger_than_an_insert_block_is_published_as_one_part(ch, tmp_path):
    # 20,000+ rows are 80 MB of Float32 vectors: the insert writes three 32 MB blocks, and the staging
    # table never merges in the background, so only the load's OPTIMIZE can make them one part.
    rows = generate_shard(tmp_path / "src", 5, 20_000)
    convert_shard(LAION400M, 5, tmp_path / "src", tmp_path / "laion_5.parquet")
    create_tables(ch)
    assert load_shard(ch, 5, tmp_path / "laion_5.parquet", rows) == rows
    assert ch.query("SELECT count(), sum(rows) FROM system.parts WHERE database = currentDatabase()"
                    " AND table = 'laion' AND active") == [(1, rows)]
    source = np.load(tmp_path / "src/img_emb/img_emb_5.npy", mmap_mode="r")
    for row in (0, rows // 2, rows - 1):  # one row from each insert block, in place and exact
        [(vector,)] = ch.query(f"SELECT image_embedding FROM laion WHERE id = {5 * 10**9 + row}")
        assert np.array_equal(np.asarray(vector, dtype=np.float32), source[row].astype(np.float32))


def test_a_row_count_mismatch_is_not_published(mirror, engine_env):
    attempt = Attempt(2)
    pipeline.fetch(attempt, mirror.url)
    rows = pipeline.convert(attempt)
    with pytest.raises(PermanentError, match=f"staged {rows} rows"):
        pipeline.load(attempt, rows + 1)
    with ClickHouse() as ch:
        assert ch.query("SELECT count() FROM laion")[0][0] == 0


def index_bytes():
    with ClickHouse() as ch:
        return dict(ch.query("SELECT partition, sum(secondary_indices_compressed_bytes) FROM system.parts"
                             " WHERE database = currentDatabase() AND table = 'laion' AND active AND rows > 0"
                             " GROUP BY partition"))


def materialize_commands():
    with ClickHouse() as ch:
        return sorted(r[0] for r in ch.query("SELECT command FROM system.mutations"
                                             " WHERE database = currentDatabase() AND table = 'laion'"))


def test_each_part_is_indexed_exactly_once(mirror, engine_env):
    load(mirror, 0)
    load(mirror, 1)
    assert set(index_bytes().values()) == {0}  # loads build no index
    with ClickHouse() as ch:
        assert build_indexes(ch, SMALL) == [0, 1]
    assert all(v > 0 for v in index_bytes().values())
    load(mirror, 2)  # a backfill after the indexes exist: its part arrives without them
    assert index_bytes()["2"] == 0
    with ClickHouse() as ch:
        assert build_indexes(ch, SMALL) == [2]
        assert build_indexes(ch, SMALL) == []
        assert ch.query("SELECT partition, count() FROM system.parts WHERE database = currentDatabase()"
                        " AND table = 'laion' AND active"
                        " AND rows > 0 GROUP BY partition ORDER BY partition") == [("0", 1), ("1", 1), ("2", 1)]
    assert materialize_commands() == sorted(  # one build per index and part, ever: every part's, then the backfill's
        f"(MATERIALIZE INDEX {name}{scope})" for name in ("image_index", "text_index")
        for scope in ("", " IN PARTITION 2"))


def unfinished_mutations(ch):
    """Asked on the caller's connection: chdb holds its data directory for one open engine at a time."""
    return ch.query("SELECT count() FROM system.mutations WHERE database = currentDatabase()"
                    " AND table = 'laion' AND NOT is_done")[0][0]


def test_a_backfill_of_more_parts_than_the_mutation_limit_is_built_in_waves(mirror, engine_env, monkeypatch, request):
    """ClickHouse refuses an ALTER past number_of_mutations_to_throw unfinished mutations (1,000 by
    default; laion2b-en has 2,314 parts): here 2, with mutations held, and waves of one part (its two
    indexes' mutations). The limit is set and merges held as a server's admin would: the package's
    user has no such grant."""
    load(mirror, 0)
    with ClickHouse() as ch:
        build_indexes(ch, SMALL)
    for shard in (1, 2, 3):
        load(mirror, shard)
    monkeypatch.setattr(index_module, "MUTATIONS_IN_FLIGHT", 1)
    with ClickHouse() as ch:
        admin, table = ch.query, "laion"
        if ch.is_server:
            admin = request.getfixturevalue("clickhouse_server").sql
            table = ch.query("SELECT currentDatabase()")[0][0] + ".laion"
        admin(f"ALTER TABLE {table} MODIFY SETTING number_of_mutations_to_delay = 0, number_of_mutations_to_throw = 2")
        admin(f"SYSTEM STOP MERGES {table}")  # mutations wait: the first wave stays in flight
        assert index_module.submit_builds(ch) == [1, 2, 3]
        assert unfinished_mutations(ch) == 2
        assert not index_module.advance_builds(ch, [1, 2, 3])
        assert unfinished_mutations(ch) == 2  # nothing more while the wave is full
        admin(f"SYSTEM START MERGES {table}")
        deadline = time.monotonic() + 120
        while not index_module.advance_builds(ch, [1, 2, 3]):
            assert time.monotonic() < deadline, "the index builds did not finish"
            time.sleep(0.2)
    assert all(v > 0 for v in index_bytes().values()) and len(index_bytes()) == 4
    assert len(materialize_commands()) == 2 * (1 + 3)  # every part's first build, then one per backfilled part

# Shard 9's part, ten rows whose vectors are NaN: ClickHouse cannot build its graph. Inserted as our
# loads insert, without building indexes on insert.
NAN_PART = ("INSERT INTO laion (id, shard, row, image_embedding, text_embedding)"
            " SELECT 9000000000 + number, 9, number, arrayMap(i -> nan, range(512)), arrayMap(i -> nan, range(512))"
            " FROM numbers(10)"
            " SETTINGS materialize_skip_indexes_on_insert = 0")


def test_a_first_build_that_fails_names_the_shard(mirror, engine_env):
    load(mirror, 0)
    with ClickHouse() as ch:
        ch.query(NAN_PART)
        with pytest.raises(RuntimeError, match=r"shard 9: vector index build failed .*non-finite"):
            build_indexes(ch, SMALL)
        assert unfinished_mutations(ch) == 0  # killed, not retried in the background forever


def test_other_index_parameters_are_refused_with_the_fix(mirror, engine_env):
    load(mirror, 0)
    with ClickHouse() as ch:
        build_indexes(ch, SMALL)
        with pytest.raises(PermanentError, match="ALTER TABLE laion DROP INDEX image_index"):
            build_indexes(ch, IndexParams())


def test_bfloat16_storage_halves_the_vectors_and_a_table_keeps_its_type(mirror, mirror_dir, engine_env, monkeypatch):
    """LAION_VECTOR_TYPE=BFloat16: vectors stored as Array(BFloat16), each value the source's float16
    cut to bfloat16 (ClickHouse truncates to 8 significant bits), half the bytes of Float32 on disk;
    the index is built on them and search answers through it. Switching the setting afterwards is
    refused, naming both types, with nothing loaded; a value that is no type is refused naming it."""
    monkeypatch.setenv("LAION_VECTOR_TYPE", "BFloat16")
    rows = load(mirror, 1)
    source = np.load(mirror_dir / "img_emb" / "img_emb_1.npy")[[0, 7, rows - 1]].astype(np.float32)
    with ClickHouse() as ch:
        assert ch.query("SELECT DISTINCT type FROM system.columns WHERE database = currentDatabase()"
                        " AND table = 'laion' AND name LIKE '%_embedding'") == [("Array(BFloat16)",)]
        stored = np.array([row_vector(ch, "image_embedding", 1, row) for row in (0, 7, rows - 1)], dtype=np.float32)
        assert np.array_equal(stored, (source.view(np.uint32) & 0xFFFF0000).view(np.float32))
        [(part_bytes,)] = ch.query("SELECT sum(data_uncompressed_bytes) FROM system.parts"
                                   " WHERE database = currentDatabase() AND table = 'laion' AND active")
        float32_vectors = rows * 2 * 512 * 4
        assert float32_vectors / 2 < part_bytes < 0.6 * float32_vectors  # 2 bytes a value, and the metadata
        build_indexes(ch, SMALL)
        target = row_vector(ch, "text_embedding", 1, 3)
        assert "image_index" in explain(ch, target)
        assert recall(search(ch, target, k=10), search(ch, target, k=10, exact=True)) >= 0.8
    monkeypatch.setenv("LAION_VECTOR_TYPE", "Float32")
    with pytest.raises(SettingError, match=r"LAION_VECTOR_TYPE is Float32, but laion.image_embedding was created as"
                                           r" Array\(BFloat16\)"):
        load(mirror, 2)
    assert count(2) == (0, 0)
    monkeypatch.setenv("LAION_VECTOR_TYPE", "float16")
    with pytest.raises(SettingError, match="LAION_VECTOR_TYPE: 'float16' is not one of Float32, BFloat16"):
        load(mirror, 2)


def test_four_loads_at_once_on_a_server(mirror, engine_env):
    """What LAION_MAX_SHARDS_IN_FLIGHT=4 does on a server: four task processes loading at once."""
    if "LAION_CLICKHOUSE_CONN_ID" not in engine_env:
        pytest.skip("chdb admits one process per data directory: its loads queue (test_cli)")
    rows = {}
    for shard in range(4):
        attempt = Attempt(shard)
        pipeline.fetch(attempt, mirror.url)
        rows[shard] = pipeline.convert(attempt)
    env = dict(os.environ)
    loads = [subprocess.Popen([sys.executable, "-m", "laion_ingest", "load", str(shard)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for shard in rows]
    results = [p.communicate(timeout=300) for p in loads]
    assert [p.returncode for p in loads] == [0] * 4, [err[-2000:] for _, err in results]
    total = sum(rows.values())
    assert count() == (total, total)
    with ClickHouse() as ch:
        assert ch.query("SELECT partition, count(), sum(rows) FROM system.parts WHERE database = currentDatabase()"
                        " AND table = 'laion' AND active GROUP BY partition ORDER BY partition") == [
            (str(s), 1, n) for s, n in rows.items()]
        assert sorted(ch.query("SELECT shard FROM laion_ledger WHERE outcome = 'loaded'")) == [(s,) for s in rows]
        assert ch.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                        " AND name LIKE 'laion_stage_%'")[0][0] == 0


def test_a_shard_published_twice_is_seen_and_loaded_again(mirror, engine_env):
    """The state a crash inside REPLACE PARTITION left (two active parts, every row twice) while the
    ledger said "loaded": the next plan sees it from the parts' metadata and loads the shard again."""
    rows = load(mirror, 0)
    with ClickHouse() as ch:
        ch.query("CREATE TABLE twin AS laion")
        ch.query("INSERT INTO twin SELECT * FROM laion WHERE shard = 0")
        ch.query("ALTER TABLE laion ATTACH PARTITION 0 FROM twin")
        ch.query("DROP TABLE twin SYNC")
    assert count(0) == (2 * rows, rows)
    with ClickHouse() as ch:
        assert differing_shards(ch, shard_status(ch)) == {
            0: f"the table holds {2 * rows} rows in 2 part(s), the ledger loaded {rows}"}
    assert "differs from its source: shard 0" in status.report(LAION400M)
    assert pipeline.plan(LAION400M, 0, 0) == [0]
    load(mirror, 0, try_number=2)
    assert count(0) == (rows, rows)
    with ClickHouse() as ch:
        assert differing_shards(ch, shard_status(ch)) == {}
    assert pipeline.plan(LAION400M, 0, 0) == []


def test_reloads_leave_one_copy_of_the_shard_on_disk(mirror, engine_env):
    load(mirror, 0)
    with ClickHouse() as ch:
        [(one_copy,)] = ch.query("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase()"
                                 " AND table = 'laion' AND active")
    for try_number in range(2, 6):
        load(mirror, 0, try_number=try_number)
    deadline = time.monotonic() + 60  # a server deletes them in its background (create_laion.sql)
    while True:
        with ClickHouse() as ch:
            outdated = ch.run("outdated_parts")[0][0]
        if not outdated or "LAION_CHDB_PATH" in engine_env or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert outdated == 0  # on chdb at once: the load waited for them
    if "LAION_CHDB_PATH" in engine_env:
        store = sum(f.stat().st_size for f in Path(engine_env["LAION_CHDB_PATH"]).rglob("*") if f.is_file())
        assert store < 1.5 * one_copy  # it was 5 copies: each reload left the shard it replaced


def test_a_load_the_disk_cannot_hold_is_refused_before_it_starts(mirror, engine_env, monkeypatch):
    attempt = Attempt(1)
    pipeline.fetch(attempt, mirror.url)
    rows = pipeline.convert(attempt)
    # rows of a terabyte each: a disk far too small
    monkeypatch.setattr(datasets.Dataset, "table_bytes_per_row", property(lambda dataset: 10**12))
    with pytest.raises(DiskSpaceError, match=rf"shard 1: loading {rows:,} rows needs about [\d,.]+ GB free on"
                                             r" ClickHouse's disk \(/.*\), which has [\d,.]+ GB"):
        pipeline.load(attempt)
    assert count() == (0, 0)
    assert pipeline.shard_dir(LAION400M, 1).exists()  # kept for the retry



def test_two_loads_of_a_shard_at_once_load_it_once_and_neither_fails(mirror, engine_env):
    """A run and the command line loading one shard: the second waits for the first, then sees the
    shard loaded instead of failing on the file the first removed (a false "failed" in the ledger)."""
    attempt = Attempt(2)
    pipeline.fetch(attempt, mirror.url)
    rows = pipeline.convert(attempt)
    env = dict(os.environ)
    loads = [subprocess.Popen([sys.executable, "-m", "laion_ingest", "load", "2"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in loads]
    assert [p.returncode for p in loads] == [0, 0], [err[-2000:] for _, err in results]
    assert sorted(int(out) for out, _ in results) == [rows, rows]
    assert count(2) == (rows, rows)
    with ClickHouse() as ch:
        assert ch.query("SELECT outcome FROM laion_ledger WHERE shard = 2") == [("loaded",)]


def test_a_table_left_by_a_drop_that_crashed_is_deleted_on_the_next_open(chdb_env):
    """A load killed inside DROP ... SYNC leaves the staging table's data under metadata_dropped/
    and store/; the embedded engine deletes it when it next opens the directory."""
    path = chdb_env["LAION_CHDB_PATH"]
    crash = ("import os, clickhouse_connect;"
             f"c = clickhouse_connect.get_client(interface='chdb', path={path!r});"
             "c.command('CREATE TABLE laion_stage_3 (a String) ENGINE = MergeTree ORDER BY a');"
             "c.command('INSERT INTO laion_stage_3 SELECT randomPrintableASCII(1000) FROM numbers(20000)');"
             "c.command('DROP TABLE laion_stage_3'); os._exit(9)")
    subprocess.run([sys.executable, "-c", crash], check=False, timeout=120)
    assert list(Path(path, "metadata_dropped").iterdir())  # the leftover, as a crash leaves it
    deadline = time.monotonic() + 30
    while True:
        with ClickHouse() as ch:
            left = ch.query("SELECT count() FROM system.dropped_tables")[0][0]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert left == 0 and not list(Path(path, "metadata_dropped").iterdir())


def test_the_index_stage_warns_when_the_cache_cannot_hold_the_graphs(mirror, chdb_env, monkeypatch, caplog):
    """The plan's formula is checked against the index files ClickHouse wrote, and the index stage
    warns, naming the setting, when vector_similarity_index_cache_size (set for chdb through
    LAION_CHDB_SERVER_SETTINGS) is smaller than the graphs."""
    monkeypatch.setenv("LAION_CHDB_SERVER_SETTINGS", "vector_similarity_index_cache_size=1000000")
    rows = load(mirror, 0)
    caplog.set_level(logging.WARNING, logger="laion_ingest.index")
    with ClickHouse() as ch:
        build_indexes(ch, SMALL)
        on_disk = ch.query("SELECT sum(data_compressed_bytes) FROM system.data_skipping_indices"
                           " WHERE database = currentDatabase() AND table = 'laion' AND name = 'image_index'")[0][0]
    assert abs(on_disk - index_module.index_bytes(rows, SMALL, 512)) < 0.1 * on_disk
    assert "vector_similarity_index_cache_size is 0.0 GB: raise it in the server's config to at least" in caplog.text
    caplog.clear()  # once tune has measured the setting on the user's data, the check uses its bytes per row
    with ClickHouse() as ch:
        ch.run("create_tune_results")
        ch.run("tune_record", run_id="r", shard=0, rows=rows, column="image_embedding", target_recall=0.9,
               recommended=0, rescore_multiplier=0, build_rows_per_s=1000.0, index_bytes_per_row=10_000.0,
               ef_search=64, recall_at_10=0.95, p50_ms=1.0, **dataclasses.asdict(SMALL))
        index_module.check_capacity(ch, SMALL, index_module.measured_cost(ch, SMALL))
    measured = 2 * rows * 10_000 * index_module.CACHE_PER_INDEX_BYTE / 1e9
    assert f"need about {measured:.1f} GB of index cache (measured by tune on shard 0 ({rows:,} rows, " in caplog.text
