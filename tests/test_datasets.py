"""The LAION family through the real DAG (`airflow dags test`), on both engines: LAION-5B's 768-d
parts in the-eye's layout (laion2b-en: 4-digit numbers, laion2B-en-metadata/, md5) and ClickHouse's
public 100M subset (laion5b-100m: 10M-row Parquet files read in place, in slices of row groups), each
from a generated mirror in the exact published layout; then search on a 768-d table by text, image and
stored row with the ViT-L/14-shaped tiny model, and the docs' query of the subset, unchanged.
"""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import with_engine
from test_cli import cli
from test_dag import INDEX, last_run, run_dag

from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import ShardFileError
from laion_ingest.ledger import Attempt
from laion_ingest.sample.mirror import generate_mirror
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search import explain, id_vector, search

pytestmark = pytest.mark.slow  # airflow dags test: make test-fast leaves it out

EN, SUBSET, MULTI = (datasets.get(name) for name in ("laion2b-en", "laion5b-100m", "laion2b-multi"))
DOCS_QUERY = ("SELECT id, url FROM laion_5b_100m ORDER BY cosineDistance(vector,"
              " (SELECT vector FROM laion_5b_100m WHERE id = 9999)) LIMIT 20")


@pytest.fixture(scope="module")
def family(tmp_path_factory, airflow_home, module_engine, tiny_clip_l14):
    """laion2b-en parts 0-1 and laion5b-100m's first file (shards 0-9, 1,000 rows a slice, so that id
    9999 exists), each loaded by one DAG run on the module's engine."""
    base = tmp_path_factory.mktemp("family")
    env = with_engine({**airflow_home, "LAION_CLIP_L14_MODEL_DIR": str(tiny_clip_l14)}, module_engine)
    runs = {}
    for dataset, shards, rows in ((EN, range(2), 3000), (SUBSET, range(10), 1000)):
        counts = generate_mirror(base / dataset.name, shards, rows, dataset=dataset.name)
        with MirrorServer(base / dataset.name) as server:
            conf = {"dataset": dataset.name, "first_shard": shards[0], "last_shard": shards[-1],
                    "source_url": server.url, **INDEX}
            result = run_dag(env, conf)
            assert result.returncode == 0, result.stdout[-3000:]
        runs[dataset.name] = {"conf": conf, "counts": counts, "run": last_run(env), "mirror": base / dataset.name}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LAION_CLIP_L14_MODEL_DIR", str(tiny_clip_l14))
        yield {"env": env, "runs": runs}


def test_laion2b_en_loads_its_768_d_parts_exactly(family):
    run = family["runs"]["laion2b-en"]
    assert run["run"]["state"] == "success" and run["run"]["asset_events"] == 1
    mirror = run["mirror"]
    with ClickHouse(EN) as ch:
        assert ch.query("SELECT count(), uniqExact(id), min(length(image_embedding)), max(length(text_embedding))"
                        " FROM laion2b_en")[0] == (sum(run["counts"].values()),) * 2 + (768, 768)
        for shard in (0, 1):
            stored = ch.query("SELECT image_embedding, text_embedding, caption, md5 FROM laion2b_en"
                              " WHERE shard = {s:UInt16} ORDER BY row", s=shard)
            images = np.load(mirror / f"img_emb/img_emb_{shard:04d}.npy")
            texts = np.load(mirror / f"text_emb/text_emb_{shard:04d}.npy")
            meta = pq.read_table(mirror / f"laion2B-en-metadata/metadata_{shard:04d}.parquet")
            assert np.array_equal(np.array([r[0] for r in stored], np.float32), images.astype(np.float32))
            assert np.array_equal(np.array([r[1] for r in stored], np.float32), texts.astype(np.float32))
            assert [r[2] for r in stored] == meta.column("caption").to_pylist()  # byte-exact, NULL stays NULL
            assert [r[3] for r in stored] == meta.column("md5").to_pylist()
        assert ch.query("SELECT name FROM system.columns WHERE database = currentDatabase()"
                        " AND table = 'laion2b_en' AND name = 'shard_id'") == []  # LAION-5B's metadata has none
        target = ch.query("SELECT text_embedding FROM laion2b_en WHERE shard = 1 AND row = 5")[0][0]
        assert "image_index" in explain(ch, target)


def test_laion5b_100m_reads_each_slice_in_place_keeping_the_files_ids(family):
    run = family["runs"]["laion5b-100m"]
    assert run["run"]["state"] == "success"
    source = pq.read_table(run["mirror"] / "laion5b_100m_part_1_of_10.parquet")
    with ClickHouse(SUBSET) as ch:
        assert ch.query("SELECT count(), uniqExact(id), uniqExact(shard) FROM laion_5b_100m")[0] == \
            (source.num_rows, source.num_rows, 10)
        per_slice = dict(ch.query("SELECT shard, count() FROM laion_5b_100m GROUP BY shard"))
        assert per_slice == run["counts"]  # each slice its two row groups, none twice
        stored = ch.query("SELECT id, caption, vector FROM laion_5b_100m ORDER BY id")
        assert [r[0] for r in stored] == source.column("id").to_pylist()
        assert [r[1] for r in stored] == source.column("caption").to_pylist()
        assert np.array_equal(np.array([r[2] for r in stored], np.float32),
                              np.array(source.column("vector").to_pylist(), np.float32))
        # Each slice one part with its graph; the docs' query, unchanged, through the index.
        assert ch.query("SELECT count(), countIf(secondary_indices_compressed_bytes > 0) FROM system.parts"
                        " WHERE database = currentDatabase() AND table = 'laion_5b_100m' AND active")[0] == (10, 10)
        plan = "\n".join(r[0] for r in ch.query("EXPLAIN indexes = 1 " + DOCS_QUERY))
        assert "vector_index" in plan, plan
        hits = ch.query(DOCS_QUERY)
        assert len(hits) == 20 and hits[0][0] == 9999


def test_a_rerun_adds_nothing_and_a_forced_reload_replaces_one_slice(family):
    env, run = family["env"], family["runs"]["laion5b-100m"]
    with ClickHouse(SUBSET) as ch:
        before = ch.query("SELECT partition, name FROM system.parts WHERE database = currentDatabase()"
                          " AND table = 'laion_5b_100m' AND active AND rows > 0 ORDER BY toUInt16(partition)")
    with MirrorServer(run["mirror"]) as server:
        conf = {**run["conf"], "source_url": server.url}
        assert run_dag(env, conf).returncode == 0
        assert run_dag(env, {**conf, "first_shard": 3, "last_shard": 3, "force": True}).returncode == 0
    with ClickHouse(SUBSET) as ch:
        after = ch.query("SELECT partition, name FROM system.parts WHERE database = currentDatabase()"
                         " AND table = 'laion_5b_100m' AND active AND rows > 0 ORDER BY toUInt16(partition)")
        assert ch.query("SELECT count(), uniqExact(id) FROM laion_5b_100m")[0] == (sum(run["counts"].values()),) * 2
    # A mutation renames every part (its version suffix): what changed is the part's blocks, its data.
    changed = [shard for (shard, name), (_, old) in zip(after, before, strict=True)
               if name.rsplit("_", 1)[0] != old.rsplit("_", 1)[0]]
    assert changed == ["3"]


def test_a_768_d_table_is_searched_by_text_image_and_stored_row(family, tiny_clip_l14):
    env = family["env"]
    out = cli("search", "--dataset", "laion2b-en", "--text", "a photo of a dog", "--json", "-k", "10", env=env).stdout
    captions = [line for line in out.splitlines() if "dog" in line]
    assert len(out.splitlines()) == 10 and len(captions) >= 6
    assert "recall@10: " in cli("search", "--dataset", "laion5b-100m", "--id", "9999", "--compare", env=env).stdout
    with ClickHouse(SUBSET) as ch:
        [(url,)] = ch.query("SELECT url FROM laion_5b_100m WHERE id = 12")
        in_sql = ch.query("SELECT id FROM laion_5b_100m ORDER BY cosineDistance(vector,"
                          " encode_text_l14('a photo of a dog')) LIMIT 5")
        assert len(in_sql) == 5
        assert len(id_vector(ch, None, 12)) == 768
        with pytest.raises(Exception, match="the query vector has 512 values, but laion5b-100m's vectors are 768-d"):
            search(ch, [0.1] * 512)


def test_a_model_of_another_dimension_is_refused_naming_both(family, tiny_clip):
    bad = cli("search", "--dataset", "laion2b-en", "--text", "a dog", check=False,
              env={**family["env"], "LAION_CLIP_L14_MODEL_DIR": str(tiny_clip)})
    assert bad.returncode == 1
    assert "LAION_CLIP_L14_MODEL_DIR holds a model of 512-d vectors, but ViT-L/14's are 768-d" in bad.stderr


def test_a_subset_without_text_vectors_and_a_dimension_mismatch(tmp_path, engine_env):
    """laion2b-multi publishes image vectors alone: its table has no text_embedding. A part whose
    vectors are 512-d, in a 768-d dataset, is refused naming the file and both dimensions."""
    generate_mirror(tmp_path / "multi", [3], 500, dataset="laion2b-multi")
    with MirrorServer(tmp_path / "multi") as server:
        rows = pipeline.ingest(Attempt(3, MULTI), server.url)
    with ClickHouse(MULTI) as ch:
        assert ch.query("SELECT count(), uniqExact(id), max(length(image_embedding)) FROM laion2b_multi")[0] == \
            (rows, rows, 768)
        columns = {name for (name,) in ch.query("SELECT name FROM system.columns WHERE database = currentDatabase()"
                                                " AND table = 'laion2b_multi'")}
        assert "text_embedding" not in columns and "md5" in columns
    generate_mirror(tmp_path / "b32", [4], 500)  # LAION-400M's 512-d files, named as laion2b-multi's
    shutil.copy(tmp_path / "b32/img_emb/img_emb_4.npy", tmp_path / "multi/img_emb/img_emb_0004.npy")
    shutil.copy(tmp_path / "multi/laion2B-multi-metadata/metadata_0003.parquet",
                tmp_path / "multi/laion2B-multi-metadata/metadata_0004.parquet")
    with MirrorServer(tmp_path / "multi") as server, pytest.raises(ShardFileError) as refused:
        pipeline.ingest(Attempt(4, MULTI), server.url)
    assert "shard 4: img_emb/img_emb_0004.npy: shape (635, 512), expected (rows, 768)" in str(refused.value)
