"""Where things live and what they talk to, read from the environment.

Every setting has a default that works on one machine with the embedded engine (chdb); a user with
a ClickHouse server or an S3 bucket changes only environment variables or Airflow connections.
"""
from __future__ import annotations

import os
from pathlib import Path

LAION_URL = "https://deploy.laion.ai/8f83b608504d46bb81708ec86e912220/embeddings/"
SHARD_COUNT = 410  # img_emb_0 .. img_emb_409


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))


def source_url() -> str:
    """Base URL holding img_emb/, text_emb/ and metadata/; LAION_SOURCE_URL switches it to a mirror."""
    return os.environ.get("LAION_SOURCE_URL") or LAION_URL


def source_conn_id() -> str | None:
    """Airflow connection with the login and password of an authenticated mirror; unset: none."""
    return os.environ.get("LAION_SOURCE_CONN_ID") or None


def source_auth() -> tuple[str, str] | None:
    """HTTP basic credentials for the source, from the Airflow connection LAION_SOURCE_CONN_ID.
    (Airflow masks a connection's password in task logs once it has been read.)"""
    conn_id = source_conn_id()
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return conn.login or "", conn.password or ""


def min_download_rate() -> float:
    """Bytes/s under which a download is dropped and resumed (LAION_MIN_DOWNLOAD_RATE, 64 KiB/s)."""
    return float(os.environ.get("LAION_MIN_DOWNLOAD_RATE", 65536))


def download_rate_window() -> float:
    """Seconds over which the minimum rate is measured (LAION_DOWNLOAD_RATE_WINDOW, 60)."""
    return float(os.environ.get("LAION_DOWNLOAD_RATE_WINDOW", 60))


def task_timeout_hours() -> float:
    """execution_timeout of a task try, and so the longest a load can live (LAION_TASK_TIMEOUT_HOURS, 4)."""
    return float(os.environ.get("LAION_TASK_TIMEOUT_HOURS", 4))


def chdb_path() -> Path:
    """Data directory of the embedded ClickHouse (chdb)."""
    return Path(os.environ.get("LAION_CHDB_PATH") or _data_home() / "laion_ingest" / "chdb")


def chdb_server_settings() -> dict[str, str]:
    """Server settings of the embedded ClickHouse, LAION_CHDB_SERVER_SETTINGS="name=value,...": a
    server's config.xml has them, chdb has no config file. The one that matters is
    vector_similarity_index_cache_size (5 GB by default; `python -m laion_ingest plan` says how much)."""
    text = os.environ.get("LAION_CHDB_SERVER_SETTINGS", "")
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise ValueError(f"LAION_CHDB_SERVER_SETTINGS: {bad} is not name=value")
    return {name.strip(): value.strip() for name, value in pairs}


def work_dir() -> Path:
    """Downloads and converted Parquet, per shard; each shard's files are removed once it is loaded."""
    return Path(os.environ.get("LAION_WORK_DIR") or _data_home() / "laion_ingest" / "work")


def clickhouse_conn_id() -> str | None:
    """Airflow connection of a ClickHouse server; unset means the embedded chdb."""
    return os.environ.get("LAION_CLICKHOUSE_CONN_ID") or None


def cluster() -> str | None:
    """LAION_CLICKHOUSE_CLUSTER: the cluster (in the servers' remote_servers) to spread the shards over,
    with LAION_CLICKHOUSE_CONN_ID naming one of its nodes; unset: one server (or chdb)."""
    return os.environ.get("LAION_CLICKHOUSE_CLUSTER") or None


def staging_url() -> str | None:
    """s3://bucket/prefix where converted shards are staged for a server; unset means local files."""
    return os.environ.get("LAION_STAGING_URL") or None


def s3_conn_id() -> str:
    """Airflow connection holding the staging bucket's credentials (login, password, extra endpoint_url)."""
    return os.environ.get("LAION_S3_CONN_ID", "laion_s3")


def sql_dir() -> Path:
    """include/sql of this repository (the compose file mounts it beside plugins/)."""
    default = Path(__file__).resolve().parents[2] / "include" / "sql"
    return Path(os.environ.get("LAION_SQL_DIR") or default)
