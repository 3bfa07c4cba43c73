"""Shared fixtures: a generated LAION-format mirror served over loopback HTTP, the two engines a
loading test runs on, and an Airflow home for running the real DAG with `airflow dags test`.

Engines: "chdb" is the embedded default (a fresh data directory); "server" is a real ClickHouse
server on 127.0.0.1 (clickhouse_server.py) reached through an Airflow connection, with a fresh
database, and shards staged in a real S3 server (SeaweedFS), as a user with a server runs it.
Each is a set of environment variables, so the same test drives the package in-process, through
`airflow dags test` or through `airflow standalone`.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from clickhouse_server import (
    CLUSTER_GRANTS,
    ClickHouseServer,
    cluster_config,
    s3_collection_config,
    udf_config,
)
from ports import free_port
from s3_server import BUCKET, S3Server

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.clip_udf import install as install_clip_udf
from laion_ingest.sample.clip_model import write_model
from laion_ingest.sample.mirror import generate_mirror
from laion_ingest.sample.server import MirrorServer

ROOT = Path(__file__).resolve().parents[1]



MIRROR_ROWS = 3000  # nominal; actual counts are not round (see mirror.shard_rows)
ENGINES = ["chdb", "server"]
_databases = itertools.count()


@pytest.fixture(scope="session")
def mirror_dir(tmp_path_factory) -> Path:
    """Four shards in the LAION file layout; tests must not modify it (copy it first)."""
    out = tmp_path_factory.mktemp("mirror")
    generate_mirror(out, range(4), MIRROR_ROWS)
    return out


@pytest.fixture(scope="session")
def mirror(mirror_dir):
    with MirrorServer(mirror_dir) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """The mirror's tiny CLIP (sample/clip_model.py), in the real model's directory layout."""
    return write_model(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_clip_l14(tmp_path_factory) -> Path:
    """The tiny CLIP of ViT-L/14's shape (768-d), for the LAION-5B mirrors."""
    return write_model(tmp_path_factory.mktemp("tiny_clip_l14"), dim=768)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory, tiny_clip, tiny_clip_l14):
    """The test server, with encode_text()/encode_image() (and *_l14) installed as a server's admin would."""
    base = tmp_path_factory.mktemp("clickhouse_server")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LAION_CLIP_MODEL_DIR", str(tiny_clip))
        monkeypatch.setenv("LAION_CLIP_L14_MODEL_DIR", str(tiny_clip_l14))
        udf = install_clip_udf(base / "user_scripts")
    with ClickHouseServer(base, udf_config(udf) + s3_collection_config()) as server:
        yield server


CLUSTER = "laion_test"


@contextmanager
def running_cluster(base: Path):
    """Two servers on loopback forming the cluster `laion_test` (remote_servers; no Keeper)."""
    ports = [(free_port(), free_port()) for _ in range(2)]
    config = cluster_config(CLUSTER, [tcp for _, tcp in ports])
    servers = []
    try:
        for i, (http, tcp) in enumerate(ports):
            servers.append(ClickHouseServer(base / f"node{i + 1}", config, http, tcp, CLUSTER_GRANTS).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def cluster_servers(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    with S3Server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


ENGINE_VARIABLES = ("LAION_CHDB_PATH", "LAION_CLICKHOUSE_CONN_ID", "AIRFLOW_CONN_LAION_CLICKHOUSE",
                    "LAION_CLICKHOUSE_CLUSTER", "LAION_STAGING_URL", "LAION_S3_CONN_ID", "AIRFLOW_CONN_LAION_S3")


def engine_variables(engine: str, base: Path, request) -> dict[str, str]:
    """Environment that points the package at a fresh, private place on one engine."""
    env = {"LAION_WORK_DIR": str(base / "work"), "LAION_RETRY_INITIAL_DELAY": "0.05"}
    if engine == "chdb":
        return {**env, "LAION_CHDB_PATH": str(base / "chdb")}
    server, s3 = request.getfixturevalue("clickhouse_server"), request.getfixturevalue("s3")
    database = f"test_{next(_databases)}"
    server.sql(f"CREATE DATABASE {database}")
    return {**env, "LAION_CLICKHOUSE_CONN_ID": "laion_clickhouse",
            "AIRFLOW_CONN_LAION_CLICKHOUSE": server.connection_uri(database),
            "LAION_STAGING_URL": f"s3://{BUCKET}/{database}", "LAION_S3_CONN_ID": "laion_s3",
            "AIRFLOW_CONN_LAION_S3": s3.connection()}


def cluster_variables(base: Path, servers, s3) -> dict[str, str]:
    """The package on the cluster: a fresh database on both nodes, the connection to the second node
    (any node may be the entry), shards staged in S3."""
    database = f"test_{next(_databases)}"
    for server in servers:
        server.sql(f"CREATE DATABASE {database}")
    return {"LAION_WORK_DIR": str(base / "work"), "LAION_RETRY_INITIAL_DELAY": "0.05",
            "LAION_CLICKHOUSE_CONN_ID": "laion_clickhouse", "LAION_CLICKHOUSE_CLUSTER": CLUSTER,
            "AIRFLOW_CONN_LAION_CLICKHOUSE": servers[1].connection_uri(database),
            "LAION_STAGING_URL": f"s3://{BUCKET}/{database}", "LAION_S3_CONN_ID": "laion_s3",
            "AIRFLOW_CONN_LAION_S3": s3.connection()}


def with_engine(env: dict[str, str], engine: dict[str, str]) -> dict[str, str]:
    """A subprocess environment on one engine: env's variables but no other engine's."""
    return {**{k: v for k, v in env.items() if k not in ENGINE_VARIABLES}, **engine}


def use_engine(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ENGINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=ENGINES)
def engine_env(request, tmp_path, monkeypatch) -> dict[str, str]:
    """This test's own engine (each loading test runs on both), set in the environment."""
    env = engine_variables(request.param, tmp_path, request)
    use_engine(monkeypatch, env)
    return env


@pytest.fixture
def chdb_env(tmp_path, monkeypatch) -> dict[str, str]:
    """A private embedded engine, for tests about chdb itself or that load nothing."""
    env = engine_variables("chdb", tmp_path, None)
    use_engine(monkeypatch, env)
    return env


@pytest.fixture(scope="module", params=ENGINES)
def module_engine(request, tmp_path_factory) -> dict[str, str]:
    """One engine for a whole module's shared run; the environment is set for the module."""
    env = engine_variables(request.param, tmp_path_factory.mktemp(request.param), request)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_engine(monkeypatch, env)
        yield env


@pytest.fixture
def ch(engine_env):
    with ClickHouse() as conn:
        yield conn


@pytest.fixture(scope="session")
def ui_standalone(tmp_path_factory, tiny_clip, tiny_clip_l14):
    """`airflow standalone` on chdb with the mirrors' tiny CLIPs (512-d and 768-d), and a mirror of two
    shards whose image URLs its server draws: (server, mirror). Loaded by the tests that need rows
    (test_ui.py)."""
    from standalone import Standalone

    base = tmp_path_factory.mktemp("ui")
    (base / "home").mkdir()
    port = free_port()
    generate_mirror(base / "mirror", range(2), MIRROR_ROWS, image_url=f"http://127.0.0.1:{port}/")
    with MirrorServer(base / "mirror", port=port) as mirror:
        server = Standalone(base / "home", {
            "LAION_CHDB_PATH": str(base / "chdb"), "LAION_WORK_DIR": str(base / "work"),
            "LAION_TASK_RETRY_DELAY": "1", "LAION_INDEX_POLL_SECONDS": "1", "LAION_CLIP_MODEL_DIR": str(tiny_clip),
            "LAION_CLIP_L14_MODEL_DIR": str(tiny_clip_l14)})
        try:
            yield server, mirror
        finally:
            server.stop()


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> dict[str, str]:
    """Environment for the airflow CLI: a migrated SQLite home, this repo's dags/ and plugins/."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ,
           "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__MAX_MAP_LENGTH": "4096",  # as docker-compose.yaml sets it: laion2b-en has 2,314 shards
           "AIRFLOW__CORE__DAGS_FOLDER": "dags",
           "AIRFLOW__CORE__PLUGINS_FOLDER": "plugins",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "LAION_TASK_RETRY_DELAY": "1", "LAION_INDEX_POLL_SECONDS": "1",
           "LAION_RETRY_INITIAL_DELAY": "0.05"}
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return env
