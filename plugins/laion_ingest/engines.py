"""The two engines behind the seam (clickhouse.py), and the one way statements reach them.

`Chdb` is the embedded engine (chdb, ClickHouse in-process) on a data directory; a data directory
can be open in one process at a time, so it holds an exclusive file lock beside the directory for as
long as it is open: concurrent Airflow tasks, the command line and tests queue for it instead of
failing with "Cannot lock file". `Server` is a ClickHouse server reached through the Airflow
connection of the official provider, refused when it is older than MIN_SERVER_VERSION. Both are
driven by clickhouse-connect, and `execute()` is the one place a statement runs: its errors leave
redacted (redaction.py) and cut, and its seconds are logged at DEBUG.
"""
from __future__ import annotations

import fcntl
import functools
import os
import re
import time
from pathlib import Path
from typing import Any

from laion_ingest import settings
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger, redact, register

log = logger(__name__)


class EngineBusy(Exception):
    """The chdb data directory stayed locked by another process for longer than the timeout."""


@functools.cache
def _clip_functions(directory: Path, config: tuple) -> Path:
    """encode_text() and encode_image() in SQL (clip_udf.py), written once per process and
    configuration (config: what clip_udf.install writes into its script): chdb reads udf_path when
    the process first opens the engine, and Chdb is the one place that opens it."""
    from laion_ingest.clip_udf import install

    return install(directory)


class Chdb:
    """The embedded ClickHouse engine on a data directory, held exclusively while open."""

    is_server = False

    def __init__(self, path: Path, lock_timeout: float = 3600.0):
        import clickhouse_connect

        self.path = Path(path).resolve()  # a symlinked path must take the same lock as the real one
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.with_name(self.path.name + ".lock"), "a+")
        self._acquire(lock_timeout)
        try:
            from laion_ingest.clip_udf import script_settings

            udf = _clip_functions(self.path.with_name(self.path.name + ".udf"), tuple(script_settings().items()))
            # A dropped table's data is deleted at once, not 8 minutes later: a task's process never
            # lives that long, so a load killed inside DROP ... SYNC left its staging table's data
            # on disk until some process did. With 0 the next open deletes it.
            self.client = clickhouse_connect.get_client(
                interface="chdb", path=str(self.path),
                chdb_options={"database_atomic_delay_before_drop_table_sec": "0", "udf_path": str(udf),
                              **settings.chdb_server_settings()})
        except BaseException:
            self._lock.close()
            raise

    def _acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        next_note = 0.0
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    self._lock.close()
                    raise EngineBusy(f"chdb data directory {self.path} stayed locked for {timeout:.0f} s") from None
                if now >= next_note:
                    self._lock.seek(0)
                    holder = self._lock.read().strip() or "another process"
                    log.info("waiting for the chdb data directory %s, held by %s", self.path, holder)
                    next_note = now + 30
                time.sleep(0.2)
        self._lock.truncate(0)
        self._lock.write(f"pid {os.getpid()}")
        self._lock.flush()

    def close(self) -> None:
        self.client.close()
        self._lock.truncate(0)
        self._lock.close()  # closing the file releases the lock


# The oldest ClickHouse release whose behaviour the test suite proves: `make test` runs the DAG and
# the SQL functions on a 26.7 server (every server and cluster test passed there, docs/testing.md);
# before 26.7 no build of clickhouse-local could serve the tests. An older server is refused.
MIN_SERVER_VERSION = (26, 7)


class Server:
    """A ClickHouse server through the provider's hook (apache-airflow-providers-clickhousedb)."""

    is_server = True

    def __init__(self, conn_id: str, host: str | None = None, port: int | None = None):
        import clickhouse_connect
        from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook

        # The provider's own translation of the connection (credentials, TLS, settings), pointed at
        # another node of the cluster where host and port are given.
        kwargs = ClickHouseHook(clickhouse_conn_id=conn_id)._get_client_kwargs()
        register(kwargs.get("password"))
        kwargs.update({"host": host, "port": port} if host else {})
        try:
            self.client = clickhouse_connect.get_client(**kwargs)
        except clickhouse_connect.driver.exceptions.Error as exc:
            raise QueryError(exc) from None
        check_version(self.client.server_version, f"{kwargs.get('host')}:{kwargs.get('port')}")

    def close(self) -> None:
        self.client.close()


def check_version(version: str, where: str) -> None:
    """Refuse a server older than MIN_SERVER_VERSION, naming both versions."""
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if found < MIN_SERVER_VERSION:
        oldest = ".".join(map(str, MIN_SERVER_VERSION))
        raise PermanentError(f"the ClickHouse server at {where} is version {version}; laion_ingest needs {oldest}"
                             f" or newer, the oldest release its test suite runs on (upgrade the server)")


class QueryError(RuntimeError):
    """ClickHouse refused a statement or could not be reached; the driver's message, redacted (it can
    hold the HTTP query string, and so the statement's parameters) and cut to MAX_ERROR characters
    (it quotes the whole statement, image bytes included). Transient: the task retries."""

    def __init__(self, driver_error: Exception):
        text = redact(driver_error)
        super().__init__(text if len(text) <= MAX_ERROR
                         else f"{text[:MAX_ERROR]}... ({len(text) - MAX_ERROR:,} more characters)")


MAX_ERROR = 4000


# Statements that answer with rows; everything else (DDL, INSERT, ALTER, OPTIMIZE, KILL) is a command.
ROWS = re.compile(r"\s*(SELECT|WITH|EXPLAIN|SHOW|DESCRIBE)\b", re.IGNORECASE)


def execute(client, statement: str, params: dict[str, Any]) -> list[tuple]:
    """One statement; its seconds are logged at DEBUG ("statement took ...": bench/stages.py reads them)."""
    from clickhouse_connect.driver.exceptions import Error

    started = time.perf_counter()
    try:
        if ROWS.match(statement):
            return [tuple(r) for r in client.query(statement, parameters=params).result_rows]
        client.command(statement, parameters=params)
        return []
    except Error as exc:
        raise QueryError(exc) from None
    finally:
        log.debug("statement took %.3f s: %s", time.perf_counter() - started, " ".join(statement.split())[:60])
