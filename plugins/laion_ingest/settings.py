"""Every setting the package reads, with its default and its check: the one place that knows the
LAION_* environment variables, and the checks that input fields share with them.

Every setting has a default that works on one machine with the embedded engine (chdb); a user with
a ClickHouse server or an S3 bucket changes only environment variables or Airflow connections. A
value the package cannot use is refused with a SettingError naming the variable (or the field) and
the range it must be in, when it is first read: at DAG parse for the DAG's own settings, before
any network I/O for the rest.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from laion_ingest.errors import SettingError
from laion_ingest.redaction import redact

MAX_URL_LENGTH = 2048
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# The checks, for settings and input fields alike.

def number(name: str | None, value: object, low: float | None = None, high: float | None = None,
           whole: bool = False) -> int | float:
    """value (text or a number) as a finite number in low..high, whole if asked; else a SettingError
    naming `name` (argparse names its argument itself: None). Text such as "1e3" is a number, not a
    whole number."""
    kind, name = "a whole number" if whole else "a number", f"{name}: " if name else ""
    try:
        parsed = int(value) if whole and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name}{str(value)[:40]!r} is not {kind}") from None
    if whole and isinstance(value, float) and not value.is_integer():
        raise SettingError(f"{name}{value!r} is not {kind}")
    if not math.isfinite(parsed):
        raise SettingError(f"{name}{value!r} is not a finite number")
    if (low is not None and parsed < low) or (high is not None and parsed > high):
        bounds = f"{_n(low)}..{_n(high)}" if low is not None and high is not None else \
            f">= {_n(low)}" if low is not None else f"<= {_n(high)}"
        raise SettingError(f"{name}{_n(parsed)} is out of range ({bounds})")
    return int(parsed) if whole else parsed


def _n(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


def source_url_value(name: str, url: str) -> str:
    """An http(s) or s3:// base URL without credentials, of sane length; refused naming `name`, the
    password masked. Credentials belong in Airflow connections: LAION_SOURCE_CONN_ID for an
    authenticated mirror, LAION_S3_CONN_ID for a bucket."""
    shown = redact(url)[:200]
    if len(url) > MAX_URL_LENGTH:
        raise SettingError(f"{name}: a URL of {len(url):,} characters is longer than {MAX_URL_LENGTH:,}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  raises on a port that is not a number
    except ValueError as exc:
        raise SettingError(f"{name}: {shown!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https", "s3") or not parts.hostname:
        raise SettingError(f"{name} must be an http://, https:// or s3:// URL, not {shown!r}")
    if parts.username is not None or parts.password is not None:
        raise SettingError(f"{name} {shown} carries credentials: remove them from the URL and put them in"
                           " an Airflow connection named by LAION_SOURCE_CONN_ID (login and password)")
    return url


def _text(name: str) -> str | None:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or None


def _number(name: str, default: float, **limits) -> int | float:
    text = _text(name)
    return default if text is None else number(name, text, **limits)


def _identifier(name: str, what: str) -> str | None:
    """A name ClickHouse takes as an identifier (it is written into SQL), or None when unset."""
    text = _text(name)
    if text is not None and not IDENTIFIER.fullmatch(text):
        raise SettingError(f"{name}: {text[:80]!r} is not {what}")
    return text


def _path(name: str, default: Path) -> Path:
    return Path(_text(name) or default)


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


# The dataset and its source.

def dataset() -> str:
    """The dataset a run or a command works on unless told otherwise (LAION_DATASET, laion400m)."""
    from laion_ingest.datasets import get

    return get(_text("LAION_DATASET") or "laion400m").name


def source_url(dataset_name: str) -> str:
    """The folder holding a dataset's files: LAION_SOURCE_URL, a mirror of LAION_DATASET's, for that
    dataset; the dataset's public location for the others."""
    from laion_ingest.datasets import get

    mirror = _text("LAION_SOURCE_URL") if dataset_name == dataset() else None
    return source_url_value("LAION_SOURCE_URL", mirror) if mirror else get(dataset_name).default_url


VECTOR_TYPES = {"Float32": 4, "BFloat16": 2}  # bytes a value


def vector_type() -> str:
    """The type a new table stores vector values in (LAION_VECTOR_TYPE): Float32, exact for LAION's
    float16 sources, or BFloat16, half the disk, each value cut to 8 significant bits (docs/sizing.md,
    bench/VECTOR_TYPE.md). A table keeps the type it was created with."""
    value = _text("LAION_VECTOR_TYPE") or "Float32"
    if value not in VECTOR_TYPES:
        raise SettingError(f"LAION_VECTOR_TYPE: {value[:40]!r} is not one of {', '.join(VECTOR_TYPES)}")
    return value


def source_conn_id() -> str | None:
    """Airflow connection with the login and password of an authenticated mirror; unset: none."""
    return _text("LAION_SOURCE_CONN_ID")


def min_download_rate() -> float:
    """Bytes/s under which a download is dropped and resumed (LAION_MIN_DOWNLOAD_RATE, 64 KiB/s)."""
    return _number("LAION_MIN_DOWNLOAD_RATE", 65536, low=0)


def download_rate_window() -> float:
    """Seconds over which the minimum rate is measured (LAION_DOWNLOAD_RATE_WINDOW, 60)."""
    return _number("LAION_DOWNLOAD_RATE_WINDOW", 60, low=1)


def retry_attempts() -> int:
    """Tries of a download inside one task try, the first included (LAION_RETRY_ATTEMPTS, 5)."""
    return _number("LAION_RETRY_ATTEMPTS", 5, low=1, high=100, whole=True)


def retry_delays() -> tuple[float, float]:
    """Seconds before a download's second try, doubling up to the most (LAION_RETRY_INITIAL_DELAY 2,
    LAION_RETRY_MAX_DELAY 60)."""
    return (_number("LAION_RETRY_INITIAL_DELAY", 2.0, low=0, high=3600),
            _number("LAION_RETRY_MAX_DELAY", 60.0, low=0, high=3600))


# Where things live.

def work_dir() -> Path:
    """Downloads and converted Parquet, per shard; each shard's files are removed once it is loaded."""
    return _path("LAION_WORK_DIR", _data_home() / "laion_ingest" / "work")


def chdb_path() -> Path:
    """Data directory of the embedded ClickHouse (chdb)."""
    return _path("LAION_CHDB_PATH", _data_home() / "laion_ingest" / "chdb")


def chdb_server_settings() -> dict[str, str]:
    """Server settings of the embedded ClickHouse, LAION_CHDB_SERVER_SETTINGS="name=value,...": a
    server's config.xml has them, chdb has no config file. The one that matters is
    vector_similarity_index_cache_size (5 GB by default; `python -m laion_ingest plan` says how much)."""
    pairs = [item.split("=", 1) for item in (_text("LAION_CHDB_SERVER_SETTINGS") or "").split(",") if item.strip()]
    bad = [p[0] for p in pairs if len(p) != 2 or not IDENTIFIER.fullmatch(p[0].strip())]
    if bad:
        raise SettingError(f"LAION_CHDB_SERVER_SETTINGS: {bad} is not name=value")
    return {name.strip(): value.strip() for name, value in pairs}


def sql_dir() -> Path:
    """include/sql of this repository (the compose file mounts it beside plugins/)."""
    return _path("LAION_SQL_DIR", Path(__file__).resolve().parents[2] / "include" / "sql")


# What it talks to.

def clickhouse_conn_id() -> str | None:
    """Airflow connection of a ClickHouse server; unset means the embedded chdb."""
    return _text("LAION_CLICKHOUSE_CONN_ID")


def cluster() -> str | None:
    """LAION_CLICKHOUSE_CLUSTER: the cluster (in the servers' remote_servers) to spread the shards over,
    with LAION_CLICKHOUSE_CONN_ID naming one of its nodes; unset: one server (or chdb)."""
    return _identifier("LAION_CLICKHOUSE_CLUSTER", "a cluster's name")


def staging_url() -> str | None:
    """s3://bucket/prefix where converted shards are staged for a server; unset means local files."""
    url = _text("LAION_STAGING_URL")
    if url is not None and (urlsplit(url).scheme != "s3" or not urlsplit(url).netloc or "@" in url):
        raise SettingError(f"LAION_STAGING_URL must look like s3://bucket/prefix, not {redact(url)[:200]!r}")
    return url


def s3_conn_id() -> str:
    """Airflow connection holding the staging bucket's credentials (login, password, extra endpoint_url)."""
    return _text("LAION_S3_CONN_ID") or "laion_s3"


def s3_named_collection() -> str | None:
    """A named collection in the server's configuration holding the staging bucket's credentials: set,
    the server reads staged shards with it and the secret never travels in a statement."""
    return _identifier("LAION_S3_NAMED_COLLECTION", "a named collection's name")


# The DAG's tasks.

def task_retries() -> int:
    return _number("LAION_TASK_RETRIES", 3, low=0, high=100, whole=True)


def task_retry_delays() -> tuple[float, float]:
    """Seconds before a task's first retry, and the most, with exponential backoff in between."""
    return (_number("LAION_TASK_RETRY_DELAY", 30.0, low=0, high=86400),
            _number("LAION_TASK_MAX_RETRY_DELAY", 600.0, low=0, high=86400))


def task_timeout_hours() -> float:
    """execution_timeout of a task try, and so the longest a load can live (LAION_TASK_TIMEOUT_HOURS, 4)."""
    return _number("LAION_TASK_TIMEOUT_HOURS", 4.0, low=0.01, high=720)


def shards_in_flight() -> int:
    """Shards fetched, converted or loaded at once, and so holding files (LAION_MAX_SHARDS_IN_FLIGHT, 4)."""
    return _number("LAION_MAX_SHARDS_IN_FLIGHT", 4, low=1, high=1024, whole=True)


def in_flight_poll_seconds() -> float:
    return _number("LAION_IN_FLIGHT_POLL_SECONDS", 15.0, low=1, high=3600)


def index_poll_seconds() -> float:
    return _number("LAION_INDEX_POLL_SECONDS", 60.0, low=1, high=3600)


def index_timeout_hours() -> float:
    return _number("LAION_INDEX_TIMEOUT_HOURS", 72.0, low=0.01, high=8760)


# The CLIP query encoders and their SQL functions.

def clip_model_dir(setting: str) -> Path | None:
    """text/ and vision/ of a query model: LAION_CLIP_MODEL_DIR for ViT-B/32, LAION_CLIP_L14_MODEL_DIR
    for ViT-L/14 (datasets.MODELS); unset: the hub's download, where one is published."""
    text = _text(setting)
    return Path(text) if text else None


def clip_threads() -> int:
    """ONNX Runtime threads per encoder (LAION_CLIP_THREADS, 4): a query is one text or image, and each
    SQL function process would otherwise take every core (and memory for each)."""
    return _number("LAION_CLIP_THREADS", 4, low=1, high=256, whole=True)


def clip_memory_mb(default: int | None) -> int | None:
    """Memory ceiling of one SQL function process, MiB (LAION_CLIP_MEMORY_MB; the default is the
    model's: 2048 for ViT-B/32, whose image process peaks at ~1 GiB, 6144 for ViT-L/14, ~4.3 GiB;
    docs/security.md)."""
    return _number("LAION_CLIP_MEMORY_MB", default, low=128, high=1 << 20, whole=True)


def clip_deadline_seconds() -> float:
    """The most one block of rows may take in encode_text()/encode_image() (LAION_CLIP_DEADLINE_SECONDS)."""
    return _number("LAION_CLIP_DEADLINE_SECONDS", 30.0, low=0.1, high=3600)
