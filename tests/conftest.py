"""Shared fixtures: a generated LAION-format mirror served over loopback HTTP, a fresh chdb data
directory per test, and an Airflow home for running the real DAG with `airflow dags test`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from laion_ingest.clickhouse import ClickHouse  # noqa: E402
from laion_ingest.mirror import generate_mirror  # noqa: E402
from laion_ingest.mirror_server import MirrorServer  # noqa: E402

MIRROR_ROWS = 3000  # nominal; actual counts are not round (see mirror.shard_rows)


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


@pytest.fixture
def engine_env(tmp_path, monkeypatch) -> Path:
    """A private chdb data directory and work directory for this test."""
    monkeypatch.setenv("LAION_CHDB_PATH", str(tmp_path / "chdb"))
    monkeypatch.setenv("LAION_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("LAION_STAGING_URL", raising=False)
    monkeypatch.delenv("LAION_CLICKHOUSE_CONN_ID", raising=False)
    monkeypatch.setenv("LAION_RETRY_INITIAL_DELAY", "0.05")
    return tmp_path


@pytest.fixture
def ch(engine_env):
    with ClickHouse() as conn:
        yield conn


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> dict[str, str]:
    """Environment for the airflow CLI: a migrated SQLite home, this repo's dags/ and plugins/."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ,
           "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__DAGS_FOLDER": "dags",
           "AIRFLOW__CORE__PLUGINS_FOLDER": "plugins",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "LAION_TASK_RETRY_DELAY": "1",
           "LAION_RETRY_INITIAL_DELAY": "0.05"}
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return env
