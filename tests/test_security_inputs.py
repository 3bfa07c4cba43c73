"""Nobody gets more than their grants, inputs: the secrets a run handles, every setting and field a
user can type, and the search page's API, probed as an attacker would.

Every test here failed on the code before it: credentials in a source URL reached the network,
logs and the ledger, a driver's error carried the S3 secret into the ledger and `status`, a bad
setting was a bare ValueError, a filter out of range vanished silently and a 200 MB upload was
spooled whole. (test_security_sql.py probes the SQL functions.)
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from clickhouse_server import ANALYST
from conftest import ROOT
from s3_server import SECRET
from test_cli import cli
from test_security_sql import png

from laion_ingest import pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.engines import check_version
from laion_ingest.errors import PermanentError, SettingError
from laion_ingest.ledger import Attempt
from laion_ingest.sample.server import MirrorServer

# Secrets: refused before any network I/O, and redacted wherever a message goes.

def test_credentials_in_a_source_url_never_reach_the_network(mirror_dir, chdb_env):
    with MirrorServer(mirror_dir) as mirror:
        url = mirror.url.replace("http://", "http://laion:hunter2@")
        result = cli("fetch", "0", "--source-url", url, check=False)
        assert result.returncode == 2 and "carries credentials" in result.stderr
        with_setting = cli("fetch", "0", env={**chdb_env, "LAION_SOURCE_URL": url}, check=False)
        assert with_setting.returncode == 1 and "LAION_SOURCE_URL http://***@127.0.0.1" in with_setting.stderr
        with pytest.raises(SettingError):
            pipeline.fetch(Attempt(0), url)
        assert mirror.requests == []
    for out in (result, with_setting):
        assert "hunter2" not in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert json.loads(cli("status", "--json", env=chdb_env).stdout)["failing"] == []


def test_another_scheme_is_refused_at_once_by_the_command_line(chdb_env):
    started = time.monotonic()
    result = cli("fetch", "0", "--source-url", "file:///etc/", check=False)
    assert time.monotonic() - started < 10 and result.returncode == 2
    assert "--source-url must be an http://, https:// or s3:// URL, not 'file:///etc/'" in result.stderr
    assert "Traceback" not in result.stderr


class GatewayProxy:
    """A gateway in front of the server (a load balancer, say) that fails the first request carrying
    the S3 secret with an HTML error page quoting the request, as such gateways do: the driver's error
    then holds the statement's parameters, `param_secret_access_key` and its value included."""

    def __init__(self, port: int):
        self.failed, self.saw_secret = False, False
        self.target, self.listener = port, socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        with client, socket.create_connection(("127.0.0.1", self.target)) as server:
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
            self._pump(client, server, fail_on=b"param_secret_access_key")

    def _pump(self, source, sink, fail_on: bytes | None = None):
        seen = b""
        try:
            while data := source.recv(1 << 16):
                seen = (seen + data)[-65536:]
                self.saw_secret |= SECRET.encode() in seen
                if fail_on and fail_on in seen and not self.failed:  # the part of the request around it
                    self.failed = True
                    at = seen.index(fail_on)
                    page = (b"<html><body><h1>502 Bad Gateway</h1><pre>" + seen[at - 200:at + 200]
                            + b"</pre></body></html>")
                    source.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nConnection: close\r\n"
                                   b"Content-Length: " + str(len(page)).encode() + b"\r\n\r\n" + page)
                    sink.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)
        except OSError:
            pass


def test_a_failed_s3_insert_keeps_the_secret_out_of_errors_ledger_and_status(mirror, clickhouse_server, s3, tmp_path,
                                                                            request, monkeypatch, caplog):
    from conftest import engine_variables, use_engine

    env = engine_variables("server", tmp_path, request)
    proxy = GatewayProxy(clickhouse_server.http_port)
    env["AIRFLOW_CONN_LAION_CLICKHOUSE"] = env["AIRFLOW_CONN_LAION_CLICKHOUSE"].replace(
        f":{clickhouse_server.http_port}/", f":{proxy.port}/")
    use_engine(monkeypatch, env)
    import airflow.sdk  # noqa: F401  as in a task: the connections are Airflow's

    with pytest.raises(Exception) as failure:
        pipeline.ingest(Attempt(0), mirror.url)
    assert "502 Bad Gateway" in str(failure.value)
    with ClickHouse() as ch:
        [(error,)] = ch.query("SELECT error FROM laion_ledger WHERE shard = 0")
    status = cli("status", "--json", env=env).stdout
    for text in (str(failure.value), error, status, caplog.text):
        assert SECRET not in text and "param_secret_access_key=***" in error


def test_with_a_named_collection_the_s3_secret_never_leaves_the_worker(mirror, clickhouse_server, s3, tmp_path,
                                                                       request, monkeypatch):
    from conftest import engine_variables, use_engine

    env = engine_variables("server", tmp_path, request)
    proxy = GatewayProxy(clickhouse_server.http_port)
    env["AIRFLOW_CONN_LAION_CLICKHOUSE"] = env["AIRFLOW_CONN_LAION_CLICKHOUSE"].replace(
        f":{clickhouse_server.http_port}/", f":{proxy.port}/")
    use_engine(monkeypatch, {**env, "LAION_S3_NAMED_COLLECTION": "laion_s3"})
    import airflow.sdk  # noqa: F401

    rows = pipeline.ingest(Attempt(0), mirror.url)
    with ClickHouse() as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion")[0] == (rows, rows)
    assert rows > 0 and not proxy.failed and not proxy.saw_secret


def test_a_server_older_than_the_oldest_proven_release_is_refused():
    """Every server test connects through this check (26.9, and 26.7 in make test); no server older
    than 26.7 can run here, so the refusal itself is checked on the version string."""
    with pytest.raises(PermanentError, match=r"at 10\.0\.0\.7:8123 is version 25\.8\.2\.1; laion_ingest needs 26\.7"):
        check_version("25.8.2.1", "10.0.0.7:8123")
    for proven in ("26.7.2.1", "26.9.2.1", "27.1.1.1"):
        check_version(proven, "10.0.0.7:8123")


# Settings and inputs: each refused in one place, naming it.

@pytest.mark.parametrize("variable, value, says", [
    ("LAION_SOURCE_URL", "http://laion:hunter2@mirror.example/", "LAION_SOURCE_URL http://***@mirror.example/ carries"),
    ("LAION_SOURCE_URL", "file:///etc/", "LAION_SOURCE_URL must be an http://, https:// or s3:// URL"),
    ("LAION_TASK_RETRIES", "abc", "LAION_TASK_RETRIES: 'abc' is not a whole number"),
    ("LAION_MAX_SHARDS_IN_FLIGHT", "-1", "LAION_MAX_SHARDS_IN_FLIGHT: -1 is out of range (1..1,024)"),
    ("LAION_TASK_TIMEOUT_HOURS", "inf", "LAION_TASK_TIMEOUT_HOURS: 'inf' is not a finite number"),
])
def test_a_bad_setting_is_the_dags_import_error_naming_it(airflow_home, variable, value, says):
    parse = ("from airflow.dag_processing.dagbag import DagBag; import json;"
             " print(json.dumps(DagBag(dag_folder='dags').import_errors))")
    out = subprocess.run([sys.executable, "-c", parse], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**airflow_home, variable: value})
    [error] = json.loads(out.stdout.strip().splitlines()[-1]).values()
    assert says in error and "hunter2" not in error and "SettingError" in error


@pytest.mark.parametrize("args, says", [
    (["plan", "--ram-gb", "-1"], "--ram-gb: -1 is out of range"),
    (["search", "--min-width", "4294967296"], "min_width: 4,294,967,296 is out of range (0..4,294,967,295)"),
    (["search", "--min-similarity", "nan"], "min_similarity: 'nan' is not a finite number"),
    (["evaluate"], "no shard is loaded"),
    (["clip-check"], "no shard is loaded"),
])
def test_the_command_line_refuses_in_one_line(chdb_env, args, says):
    result = cli(*args, check=False)
    assert result.returncode in (1, 2) and says in result.stderr, result.stderr[-500:]
    assert "Traceback" not in result.stderr


def test_status_reads_only_and_says_when_nothing_is_loaded(clickhouse_server, tmp_path, request):
    """A SELECT-only analyst watches a load with `status`; on a database without the tables it says
    nothing is loaded (it used to create them, which the analyst may not)."""
    from conftest import engine_variables

    env = engine_variables("server", tmp_path, request)
    database = env["AIRFLOW_CONN_LAION_CLICKHOUSE"].rsplit("/", 1)[1]
    env["AIRFLOW_CONN_LAION_CLICKHOUSE"] = clickhouse_server.connection_uri(database, user=ANALYST)
    result = cli("status", env=env, check=False)
    assert result.returncode == 0 and "shards loaded: 0 of 410" in result.stdout, result.stderr[-500:]


# The search page's API, on a real `airflow standalone`, logged in.

def search_api(ui_standalone, **fields) -> requests.Response:
    server, _ = ui_standalone
    files = {"image": ("query.png", fields.pop("image"), "image/png")} if "image" in fields else None
    return server.http.post(f"{server.url}/laion-search/api/search", data={"k": "5", **fields}, files=files,
                            timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("fields, says", [
    ({"text": "a dog", "min_width": "4294967296"}, "min_width: 4,294,967,296 is out of range (0..4,294,967,295)"),
    ({"text": "a dog", "min_similarity": "nan"}, "min_similarity: 'nan' is not a finite number"),
    ({"text": "a dog", "min_similarity": "2"}, "min_similarity: 2 is out of range (-1..1)"),
    ({"text": "a dog", "nsfw": "MAYBE"}, "nsfw: 'MAYBE' is not one of UNLIKELY, UNSURE, NSFW"),
    ({"image": png(20000, 20000, "L")}, "the image is over the limit of 50,000,000 pixels"),
    ({"text": "a dog", "dataset": "laion9b"}, "dataset 'laion9b' is not one of laion400m, laion2b-en"),
    ({"text": "a dog", "dataset": "laion5b-100m", "against": "captions"},
     "against: laion5b-100m has no caption vectors to search; search its images"),
])
def test_the_search_page_refuses_bad_fields_and_bombs_with_400(ui_standalone, fields, says):
    r = search_api(ui_standalone, **fields)
    assert r.status_code == 400 and says in r.json()["detail"], r.text[:500]


def http_answer(conn: socket.socket) -> str:
    """The server's whole answer: its head, then as many body bytes as its Content-Length says."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"content-length: (\d+)", answer, re.IGNORECASE)[1]):
        if not (data := conn.recv(65536)):
            break
        answer += data
    return answer.decode(errors="replace")


@pytest.mark.slow
def test_the_search_page_refuses_a_huge_upload_before_reading_it(ui_standalone):
    """Announced as 200 MB, only its first MB ever sent: the 413 comes back at once (the upload used to
    be spooled to disk whole first). Sent chunked, without a length: refused once past the limit."""
    server, _ = ui_standalone
    host, port = server.url.removeprefix("http://").split(":")
    head = (f"POST /laion-search/api/search HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {server.http.headers['Authorization']}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"{head}Content-Length: {200 * 2**20}\r\n\r\n".encode() + b"--x\r\n" + b"\0" * 2**20)
        started = time.monotonic()
        answer = http_answer(conn)
    assert answer.startswith("HTTP/1.1 413") and time.monotonic() - started < 10, answer[:300]
    assert "larger than 21 MiB" in answer
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        conn.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n{len(part):x}\r\n".encode() + part + b"\r\n")
        chunk = f"{2**20:x}\r\n".encode() + b"\0" * 2**20 + b"\r\n"
        try:
            for _ in range(40):
                conn.sendall(chunk)
        except OSError:
            pass  # the server stopped reading: the answer is waiting
        answer = http_answer(conn)
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
