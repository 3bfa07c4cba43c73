"""A real ClickHouse 26.9 server on 127.0.0.1 for the tests, served by chdb's clickhouse-local.

`chdb._chdb.query(statements, format, path=...)` runs ClickHouse's full clickhouse-local, whose
`SYSTEM START LISTEN HTTP | TCP` start ClickHouse's own HTTP and native-protocol handlers with the
`listen_host`, `http_port`, `tcp_port` and `users_config` of `config.xml` in the current directory.
The listeners live as long as that one call, so the statement list ends with a query that never
finishes; `stop()` kills that query over HTTP and the process exits cleanly (SIGKILL of its
process group if it does not).

The server behaves like clickhouse-server where the package could notice: the package runs as a
named user with a password and only the grants docs/server.md lists (clickhouse-local itself logs in as
`default` without one, so `default` may only start listeners; fixtures use an `admin` user), and the
user's profile has upstream's `mutations_sync = 0` and
`async_insert = 0` instead of clickhouse-local's 1. What it cannot imitate: its file() reads any
path (a real server reads only user_files), its `default` database also shows the file system (a
CREATE TABLE there needs READ ON FILE: use another database), and it has no Keeper, ON CLUSTER or
Replicated engines. Two of them with `remote_servers` naming each other (`cluster_config`) make a
cluster: Distributed tables, `cluster()` and ANN through a Distributed table work.

    python tests/clickhouse_server.py DIR     # the server process; DIR holds config.xml
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ports import free_port

USER, ADMIN, PASSWORD = "laion", "admin", "ch-test-pw"
ANALYST = "analyst"  # searches with SELECT alone (docs/server.md)
# What the package's user is granted: exactly the list in docs/server.md ("Use your own ClickHouse server"),
# so every server test proves that list is enough. (ON *.*: each test has its own database.)
GRANTS = ["GRANT SELECT, INSERT, CREATE TABLE, DROP TABLE, OPTIMIZE, ALTER ADD INDEX, ALTER MATERIALIZE INDEX,"
          " ALTER DELETE ON *.*",
          "GRANT TABLE ENGINE ON MergeTree", "GRANT READ ON S3",
          "GRANT READ ON URL",  # docs/server.md: laion5b-100m is read where it is published, with url()
          "GRANT NAMED COLLECTION ON laion_s3"]  # docs/security.md: only with LAION_S3_NAMED_COLLECTION
CLUSTER_GRANTS = GRANTS + ["GRANT TABLE ENGINE ON Distributed", "GRANT REMOTE ON *.*"]  # docs/server.md, on a cluster
MARKER = "laion_test_server_keepalive"

CONFIG = """<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <users_config>users.xml</users_config>
    <logger><level>warning</level><console>1</console></logger>
{extra}
</clickhouse>
"""

USERS = """<clickhouse>
    <profiles>
        <default/>
        <server_defaults>
            <mutations_sync>0</mutations_sync>
            <async_insert>0</async_insert>
        </server_defaults>
    </profiles>
    <quotas><default/></quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <grants>
                <query>GRANT SYSTEM LISTEN ON *.*</query>
                <query>GRANT SELECT(number) ON system.numbers</query>
            </grants>
        </default>
        <{admin}>
            <password>{password}</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>server_defaults</profile>
            <quota>default</quota>
        </{admin}>
        <{user}>
            <password>{password}</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>server_defaults</profile>
            <quota>default</quota>
            <grants>
{grants}
            </grants>
        </{user}>
        <{analyst}>
            <password>{password}</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>server_defaults</profile>
            <quota>default</quota>
            <grants><query>GRANT SELECT ON *.*</query></grants>
        </{analyst}>
    </users>
</clickhouse>
"""


def cluster_config(name: str, tcp_ports: list[int]) -> str:
    """remote_servers for a cluster of one-replica shards on 127.0.0.1, queried as the package's user."""
    shards = "".join(f"<shard><replica><host>127.0.0.1</host><port>{port}</port><user>{USER}</user>"
                     f"<password>{PASSWORD}</password></replica></shard>" for port in tcp_ports)
    return f"<remote_servers><{name}>{shards}</{name}></remote_servers>"


def s3_collection_config() -> str:
    """The named collection `laion_s3` with the test S3 server's credentials, as an administrator
    keeps them server-side for LAION_S3_NAMED_COLLECTION."""
    from s3_server import KEY, SECRET

    return (f"<named_collections><laion_s3><access_key_id>{KEY}</access_key_id>"
            f"<secret_access_key>{SECRET}</secret_access_key></laion_s3></named_collections>")


def udf_config(directory: Path) -> str:
    """The two lines that give a server the functions in `directory` (clip_udf.install)."""
    return (f"<user_scripts_path>{directory}</user_scripts_path>\n"
            f"<user_defined_executable_functions_config>{directory}/*.xml</user_defined_executable_functions_config>")


class ClickHouseServer:
    """One server process: `with ClickHouseServer(dir) as server: server.http_url ...`."""

    def __init__(self, base: Path, extra_config: str = "", http_port: int | None = None,
                 tcp_port: int | None = None, grants: list[str] = GRANTS):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port or free_port()
        self.tcp_port = tcp_port or free_port()
        (self.base / "config.xml").write_text(CONFIG.format(http_port=self.http_port, tcp_port=self.tcp_port,
                                                            extra=extra_config))
        (self.base / "users.xml").write_text(USERS.format(
            user=USER, admin=ADMIN, analyst=ANALYST, password=PASSWORD,
            grants="\n".join(f"<query>{g}</query>" for g in grants)))
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def connection_uri(self, database: str = "default", user: str = USER) -> str:
        """The server as an Airflow connection of apache-airflow-providers-clickhousedb."""
        return f"clickhouse://{user}:{PASSWORD}@127.0.0.1:{self.http_port}/{database}"

    def start(self, timeout: float = 60) -> ClickHouseServer:
        import requests  # here, not at the top: the server process (LAION_TEST_SERVER_PYTHON) has chdb alone

        self._log = open(self.base / "server.log", "a")
        # LAION_TEST_SERVER_PYTHON: a Python whose chdb serves an older ClickHouse (the client side stays this one)
        python = os.environ.get("LAION_TEST_SERVER_PYTHON") or sys.executable
        self.proc = subprocess.Popen([python, __file__, str(self.base)], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ClickHouse server exited; see {self.base / 'server.log'}")
            try:
                if self.sql("SELECT 1").strip() == "1":
                    self._log.write(f"serving ClickHouse {self.sql('SELECT version()').strip()} ({python})\n")
                    self._log.flush()
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"ClickHouse server not up after {timeout} s; see {self.base / 'server.log'}")
            time.sleep(0.2)

    def sql(self, statement: str) -> str:
        """Run a statement as the server's administrator (fixtures only; the package runs as USER)."""
        import requests

        r = requests.post(self.http_url, params={"user": ADMIN, "password": PASSWORD}, data=statement.encode(),
                          timeout=60)
        r.raise_for_status()
        return r.text

    def stop(self) -> None:
        """End the keep-alive query (listeners close, the process exits); kill the group if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.sql(f"KILL QUERY WHERE query LIKE '%{MARKER}%' AND user = '' SYNC")
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):  # requests' errors are OSErrors
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> ClickHouseServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(base: Path) -> None:
    from chdb import (
        _chdb,  # before chdir: the package finds its library relative to itself
    )

    os.chdir(base)
    _chdb.query("SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP;"
                f" SELECT sleepEachRow(1) AS {MARKER} FROM system.numbers FORMAT Null SETTINGS max_block_size = 1",
                "TabSeparated", path=str(base / "data"))


if __name__ == "__main__":
    serve(Path(sys.argv[1]).resolve())
