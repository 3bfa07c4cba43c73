"""The DAG on a ClickHouse cluster (LAION_CLICKHOUSE_CLUSTER): two real servers on loopback named
in each other's remote_servers (no Keeper), shards staged in SeaweedFS, driven by `airflow dags
test`. The connection names the second node: any node may be the entry."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from clickhouse_server import (
    CLUSTER_GRANTS,
    PASSWORD,
    USER,
    ClickHouseServer,
    cluster_config,
)
from conftest import (
    CLUSTER,
    ROOT,
    cluster_variables,
    running_cluster,
    use_engine,
    with_engine,
)
from ports import free_port
from s3_server import BUCKET
from test_cli import cli
from test_dag import INDEX, last_run, run_dag
from test_dag import source_rows as shard_rows

from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.convert import ID_BASE
from laion_ingest.errors import PermanentError
from laion_ingest.index import IndexParams, build_indexes
from laion_ingest.ledger import Attempt
from laion_ingest.load import create_tables
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search import explain, recall, row_vector, search

LAION400M = datasets.get("laion400m")

pytestmark = pytest.mark.slow  # airflow standalone, a browser or a cluster: make test-fast leaves it out

SHARDS = range(4)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, mirror_dir, airflow_home, cluster_servers, s3):
    engine = cluster_variables(tmp_path_factory.mktemp("cluster_run"), cluster_servers, s3)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_engine(monkeypatch, engine)
        env = with_engine(airflow_home, engine)
        with MirrorServer(mirror_dir) as server:
            conf = {"first_shard": 0, "last_shard": SHARDS[-1], "source_url": server.url, **INDEX}
            first = run_dag(env, conf)
            yield {"env": env, "conf": conf, "first": first, "first_run": last_run(env), "src": mirror_dir,
                   "nodes": cluster_servers, "database": engine["AIRFLOW_CONN_LAION_CLICKHOUSE"].rsplit("/", 1)[1]}


def source_rows(run) -> int:
    return sum(shard_rows(run["src"], s) for s in SHARDS)


def on_node(run, node: int, statement: str) -> list[list[str]]:
    """A statement on one node as its administrator, in the run's database (TSV rows)."""
    text = run["nodes"][node].sql(statement.replace("{db}", run["database"]) + " FORMAT TSV")
    return [line.split("\t") for line in text.splitlines()]


def parts(run, node: int) -> list[list[str]]:
    return on_node(run, node, "SELECT partition, name, secondary_indices_compressed_bytes > 0 FROM system.parts"
                              " WHERE database = '{db}' AND table = 'laion_local' AND active AND rows > 0"
                              " ORDER BY toUInt16(partition)")


def test_the_range_loads_through_the_distributed_table(cluster_run):
    assert cluster_run["first"].returncode == 0, cluster_run["first"].stderr[-3000:]
    assert cluster_run["first_run"]["state"] == "success"
    with ClickHouse() as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (source_rows(cluster_run),) * 2
        assert ch.query("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'laion'") \
            == [("Distributed",)]


def test_without_keeper_the_ddl_runs_on_each_node(cluster_run):
    """The loopback servers have no Keeper session, so the run says so and creates the tables on each
    node itself (their presence on both nodes is what the other tests read)."""
    log = cluster_run["first"].stdout + cluster_run["first"].stderr
    assert "cluster laion_test: node has no Keeper session; DDL runs on each node" in log


def test_with_keeper_the_ddl_is_one_on_cluster_statement(cluster_run):
    """What a cluster with Keeper is sent instead: each statement once, ON CLUSTER, right after the
    table it creates or alters, and with the database spelled out where another node reads it. Checked
    by ClickHouse's own parser (formatQuery); the loopback servers cannot run it (no Keeper), and say
    so, which shows it took the ON CLUSTER path."""
    db = cluster_run["database"]
    with ClickHouse() as ch:
        statements = {file: ch.on_cluster_statements(file, fragments, **params) for file, fragments, params in (
            ("create_laion", {"vector_type": "Float32"}, {}), ("create_laion_distributed", {}, {"database": db}),
            ("vector_index_add", {}, {"name": "image_index", "column": "image_embedding", **asdict(IndexParams())}))}
        formatted = {f: [ch.query("SELECT formatQuery({s:String})", s=s)[0][0] for s in statements[f]]
                     for f in statements}
        assert formatted["create_laion"][0].startswith(
            "CREATE TABLE IF NOT EXISTS laion_local ON CLUSTER laion_test\n")
        assert formatted["create_laion_distributed"] == [
            f"CREATE TABLE IF NOT EXISTS {db}.laion ON CLUSTER laion_test AS {db}.laion_local\n"
            f"ENGINE = Distributed(laion_test, {db}, laion_local, shard)"]
        assert formatted["vector_index_add"][0].startswith(
            "ALTER TABLE laion_local ON CLUSTER laion_test\n    (ADD INDEX IF NOT EXISTS image_index image_embedding"
            " TYPE vector_similarity('hnsw', {metric:String}, 512, {quantization:String}, 64, 256)")
        with pytest.raises(Exception, match="Replicated DDL queries are disabled"):
            ch.query(statements["create_laion"][0])


def test_a_cluster_missing_from_remote_servers_or_with_replicas_is_refused_before_anything_is_made(
        tmp_path, monkeypatch):
    """A misspelt LAION_CLICKHOUSE_CLUSTER is named with the clusters the node knows. A cluster with
    replicas is refused: laion_local is a plain MergeTree loaded on one node per shard, so a
    Distributed read could go to a replica with an empty copy and silently miss the shard's rows."""
    port = free_port()
    replicas = (f"<remote_servers><laion_replicated><shard><replica><host>127.0.0.1</host><port>{port}</port></replica>"
                f"<replica><host>127.0.0.1</host><port>{free_port()}</port></replica></shard></laion_replicated>"
                "</remote_servers>")
    with ClickHouseServer(tmp_path / "node", replicas, tcp_port=port, grants=CLUSTER_GRANTS) as server:
        server.sql("CREATE DATABASE refused")
        monkeypatch.setenv("LAION_CLICKHOUSE_CONN_ID", "laion_clickhouse")
        monkeypatch.setenv("AIRFLOW_CONN_LAION_CLICKHOUSE", server.connection_uri("refused"))
        for cluster, problem in (("laion_replicted", "cluster laion_replicted is not in the remote_servers of the"
                                                     " connection's node, which has: .*laion_replicated"),
                                 ("laion_replicated", "cluster laion_replicated has up to 2 replicas per shard")):
            monkeypatch.setenv("LAION_CLICKHOUSE_CLUSTER", cluster)
            with ClickHouse() as ch, pytest.raises(PermanentError, match=problem):
                create_tables(ch)
        assert server.sql("SELECT count() FROM system.tables WHERE database = 'refused'").strip() == "0"


def test_each_shard_is_whole_on_the_node_the_rule_gives(cluster_run):
    """shard modulo the number of nodes, in remote_servers' order: 0 and 2 on the first, 1 and 3 on
    the second; one part each, disjoint."""
    assert [p[0] for p in parts(cluster_run, 0)] == ["0", "2"]
    assert [p[0] for p in parts(cluster_run, 1)] == ["1", "3"]


def test_both_indexes_are_built_on_both_nodes_and_ann_matches_brute_force(cluster_run):
    for node in (0, 1):
        assert all(built == "1" for _, _, built in parts(cluster_run, node))
        assert sorted(r[0] for r in on_node(cluster_run, node, "SELECT name FROM system.data_skipping_indices"
                                            " WHERE database = '{db}' AND table = 'laion_local'")) \
            == ["image_index", "text_index"]
    with ClickHouse() as ch:  # approximate: asserted over queries, as one query's near-ties may swap
        found = []
        for shard in SHARDS:
            for row in range(5, 500, 50):
                target = row_vector(ch, "text_embedding", shard, row)
                ann, exact = search(ch, target, k=10), search(ch, target, k=10, exact=True)
                found.append((recall(ann, exact), {h.id // ID_BASE for h in ann}))
        assert sum(r for r, _ in found) / len(found) >= 0.9
        assert set().union(*(shards for _, shards in found)) == set(SHARDS)  # both nodes' parts answer
        assert "image_index" in explain(ch, target)


def test_a_second_run_adds_nothing_and_a_forced_reload_touches_only_its_node(cluster_run):
    env, conf = cluster_run["env"], cluster_run["conf"]
    before = [parts(cluster_run, 0), parts(cluster_run, 1)]
    again = run_dag(env, conf)
    assert again.returncode == 0 and "skipping 4 shard(s) already loaded" in again.stdout + again.stderr
    assert [parts(cluster_run, 0), parts(cluster_run, 1)] == before
    reload = run_dag(env, {**conf, "first_shard": 1, "last_shard": 1, "force": True})
    assert reload.returncode == 0, reload.stderr[-3000:]
    assert parts(cluster_run, 0) == before[0]  # the other node untouched
    after = parts(cluster_run, 1)
    blocks = lambda part: part[1].split("_")[1:3]  # noqa: E731  (a mutation elsewhere renames, not rewrites)
    assert [p[0] for p in after] == ["1", "3"]
    assert blocks(after[1]) == blocks(before[1][1]) and blocks(after[0]) != blocks(before[1][0])
    assert after[0][2] == "1"  # the reloaded part got its indexes again
    with ClickHouse() as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (source_rows(cluster_run),) * 2


def test_a_node_stopped_mid_run_fails_only_its_shards_and_a_rerun_loads_what_is_missing(
        tmp_path, mirror_dir, airflow_home, s3):
    """Its own cluster, since it stops the first node in the middle of a run over 0-3: while shard 2's
    download is held by the mirror. (`airflow dags test` runs the mapped shards in no fixed order, so
    the first node's shards loaded before the stop are read from it then.) Shard 2 and any of the first
    node's shards after it fail after a retry, the second node's shards 1 and 3 load and stay intact,
    the summary names the failed ones, and once the node is back the same trigger loads only those."""
    with running_cluster(tmp_path / "nodes") as servers, pytest.MonkeyPatch.context() as monkeypatch:
        engine = cluster_variables(tmp_path, servers, s3)
        use_engine(monkeypatch, engine)
        env = {**with_engine(airflow_home, engine), "LAION_TASK_RETRIES": "1", "LAION_TASK_RETRY_DELAY": "1"}
        run = {"nodes": servers, "database": engine["AIRFLOW_CONN_LAION_CLICKHOUSE"].rsplit("/", 1)[1],
               "src": mirror_dir}
        with MirrorServer(mirror_dir, faults={"/img_emb/img_emb_2.npy": ["hold"]}) as server:
            conf = {"first_shard": 0, "last_shard": SHARDS[-1], "source_url": server.url, **INDEX}
            dag = start_dag(env, conf, tmp_path / "dag.log")
            assert server.held.wait(timeout=300), "shard 2's download never started"
            loaded_before = {int(p[0]) for p in parts(run, 0)}  # 0 if its task ran before shard 2's, else nothing
            servers[0].stop()
            server.release()
            dag.wait(timeout=600)
            log = (tmp_path / "dag.log").read_text()
            failed = sorted({0, 2} - loaded_before)
            assert dag.returncode != 0 and last_run(env)["state"] == "failed"
            assert f"{len(failed)} shard(s) failed: {failed}" in log, log[-3000:]
            assert "its node, 1 of cluster laion_test, did not answer" in log
            assert [p[0] for p in parts(run, 1)] == ["1", "3"]  # the other node's shards, intact
            with ClickHouse() as ch:
                tries = ch.query("SELECT shard, max(try_number) FROM laion_ledger WHERE outcome = 'failed'"
                                 " GROUP BY shard ORDER BY shard")
                assert tries == [(shard, 2) for shard in failed]  # retried, then failed
            servers[0].start()
            again = run_dag(env, conf)
            assert again.returncode == 0, again.stderr[-3000:]
            skipped = sorted(set(SHARDS) - set(failed))
            assert f"skipping {len(skipped)} shard(s) already loaded: {skipped}" in again.stdout + again.stderr
            assert [p[0] for p in parts(run, 0)] == ["0", "2"]
            with ClickHouse() as ch:
                assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (source_rows(run),) * 2


def test_after_a_node_is_added_rebalance_moves_the_shards_the_rule_now_gives_it(tmp_path, mirror_dir, s3,
                                                                                 monkeypatch):
    """Shards 0-3 are loaded and indexed while the cluster has one node; then a second node joins its
    remote_servers. Loads keep shards where they are; `rebalance` moves 1 and 3 (shard modulo 2) to
    the new node with their indexes, and reads through laion stay exact. A move that stopped after its
    copy (a shard on both nodes) is finished by the next rebalance, or by the reload the plan asks for;
    then nothing is left to move."""
    http, tcp = [free_port(), free_port()], [free_port(), free_port()]
    node1 = ClickHouseServer(tmp_path / "node1", cluster_config(CLUSTER, tcp[:1]), http[0], tcp[0], CLUSTER_GRANTS)
    with node1:
        node1.sql("CREATE DATABASE grown")
        use_engine(monkeypatch, {
            "LAION_WORK_DIR": str(tmp_path / "work"), "LAION_CLICKHOUSE_CONN_ID": "laion_clickhouse",
            "LAION_CLICKHOUSE_CLUSTER": CLUSTER, "AIRFLOW_CONN_LAION_CLICKHOUSE": node1.connection_uri("grown"),
            "LAION_STAGING_URL": f"s3://{BUCKET}/grown", "LAION_S3_CONN_ID": "laion_s3",
            "AIRFLOW_CONN_LAION_S3": s3.connection()})
        with MirrorServer(mirror_dir) as mirror:
            for shard in SHARDS:
                pipeline.ingest(Attempt(shard), mirror.url)
        with ClickHouse() as ch:
            build_indexes(ch, IndexParams(m=8, ef_construction=32))
    both = cluster_config(CLUSTER, tcp)
    with ClickHouseServer(tmp_path / "node1", both, http[0], tcp[0], CLUSTER_GRANTS) as node1, \
            ClickHouseServer(tmp_path / "node2", both, http[1], tcp[1], CLUSTER_GRANTS) as node2:
        node2.sql("CREATE DATABASE grown")
        run = {"nodes": [node1, node2], "database": "grown", "src": mirror_dir}
        assert pipeline.plan(LAION400M, 0, 3) == []  # loads keep shards where they are
        moved = cli("rebalance")
        assert "2 of 4 shard(s) to move" in moved.stderr, moved.stderr[-3000:]
        assert [p[0] for p in parts(run, 0)] == ["0", "2"] and [p[0] for p in parts(run, 1)] == ["1", "3"]
        assert all(built == "1" for node in (0, 1) for *_, built in parts(run, node))  # moved with indexes
        with ClickHouse() as ch:
            assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (source_rows(run),) * 2
            target = row_vector(ch, "text_embedding", 3, 5)
            assert "image_index" in explain(ch, target)
            assert search(ch, target, "text_embedding", k=1)[0].id == 3 * 10**9 + 5
        copy_back = lambda shard: node1.sql(  # noqa: E731  as a move that stopped before its drop leaves it
            f"INSERT INTO grown.laion_local SELECT * FROM remote('127.0.0.1:{tcp[1]}', grown.laion_local,"
            f" '{USER}', '{PASSWORD}') WHERE shard = {shard}")
        copy_back(3)
        assert "1 of 4 shard(s) to move" in cli("rebalance").stderr
        assert [p[0] for p in parts(run, 0)] == ["0", "2"] and [p[0] for p in parts(run, 1)] == ["1", "3"]
        copy_back(1)  # the plan sees it in two parts, and its reload leaves it on its rule's node only
        assert pipeline.plan(LAION400M, 0, 3) == [1]
        with MirrorServer(mirror_dir) as mirror:
            pipeline.ingest(Attempt(1), mirror.url)
        assert [p[0] for p in parts(run, 0)] == ["0", "2"] and [p[0] for p in parts(run, 1)] == ["1", "3"]
        assert "0 of 4 shard(s) to move" in cli("rebalance").stderr
        with ClickHouse() as ch:
            assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (source_rows(run),) * 2


def start_dag(env: dict, conf: dict, log: Path) -> subprocess.Popen:
    """`airflow dags test` in the background, its output in a file (a pipe nobody reads would fill up)."""
    with open(log, "w") as out:
        return subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "dags", "test", "laion_ingest", "-c",
                                 json.dumps(conf)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
