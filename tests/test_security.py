"""Nobody gets more than their grants: the probes of an attacker with a SELECT-only ClickHouse
account, hostile inputs everywhere a user can type, and the secrets a run handles.

The SQL functions run on the test server, installed as the README says (the `clickhouse_server`
fixture), and are called as `analyst`, who has SELECT and nothing else. Every test here failed on
the code before it: encode_image read the host's files and fetched any URL as the server, a 92-byte
PNG took gigabytes, credentials in a source URL reached the network, logs and the ledger, a bad
setting was a bare ValueError, and a filter out of range vanished silently.
"""
from __future__ import annotations

import glob
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from clickhouse_server import ADMIN, ANALYST, PASSWORD
from conftest import ROOT
from laion_ingest import clip, pipeline
from laion_ingest.clickhouse import ClickHouse, check_version
from laion_ingest.clip_udf import install
from laion_ingest.errors import PermanentError, SettingError
from laion_ingest.ledger import Attempt
from laion_ingest.mirror_server import MirrorServer
from PIL import Image
from s3_server import SECRET
from test_cli import cli


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "white" if mode == "RGB" else 255).save(out, "PNG")
    return out.getvalue()


def photo() -> bytes:
    pixels = (np.random.default_rng(0).random((180, 240, 3)) * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def as_user(server, user: str, statement: str, **params) -> requests.Response:
    """A statement over the server's HTTP interface as `user`, with query parameters."""
    return requests.post(server.http_url, data=statement.encode(), timeout=120,
                         params={"user": user, "password": PASSWORD, **{f"param_{k}": v for k, v in params.items()}})


def refusal(response: requests.Response) -> str:
    """What the function itself said: the line after ClickHouse's 'Executable generates stderr: '."""
    assert response.status_code != 200, response.text[:300]
    said = re.search(r"Executable generates stderr: (.*?)(?:: while executing|\. \(|\n|$)", response.text)
    return said[1] if said else response.text[:300]


def vector(response: requests.Response) -> list[float]:
    """The vector `v` of a statement ending in `AS v FORMAT JSONEachRow`."""
    assert response.status_code == 200, response.text[:500]
    return json.loads(response.text)["v"]


def udf_peak_rss_mb(server, kind: str) -> float:
    """The highest peak RSS among this server's encode_<kind> processes (VmHWM)."""
    peaks = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            command = Path(proc, "cmdline").read_bytes().split(b"\0")
            status = Path(proc, "status").read_text()
        except OSError:
            continue
        if any(str(server.base).encode() in part for part in command) and kind.encode() in command:
            peaks.append(int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024)
    assert peaks, f"no encode_{kind} process of the server found"
    return max(peaks)


# The SQL functions: no files, no network, no more than the caller's grants.

def test_encode_image_reads_no_file_and_fetches_no_url(clickhouse_server, tmp_path, mirror_dir):
    picture = tmp_path / "host-picture.jpg"
    picture.write_bytes(photo())
    with MirrorServer(mirror_dir) as listener:  # a port inside the network: nothing may reach it
        names = [str(picture), "/etc/hostname", "/no/such/picture.jpg", str(tmp_path), "./relative.png",
                 f"{listener.url}photos/1.jpg", f"http://{ADMIN}:{PASSWORD}@127.0.0.1:{clickhouse_server.http_port}/",
                 "http://127.0.0.1:1/", "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"]
        said = {name: refusal(as_user(clickhouse_server, ANALYST, "SELECT encode_image({p:String})", p=name))
                for name in names}
        assert listener.requests == []
    # One answer for every path and address: nothing about the host (exists, size, directory, open port).
    assert len(set(said.values())) == 1, said
    assert "takes an image's bytes, not a path or a URL" in said[str(picture)]


def test_reading_the_bytes_takes_clickhouses_own_grants(clickhouse_server, tmp_path, mirror_dir, tiny_clip):
    picture = tmp_path / "p.jpg"
    picture.write_bytes(photo())
    through_file = "SELECT encode_image((SELECT * FROM file({p:String}, RawBLOB)))"
    denied = as_user(clickhouse_server, ANALYST, through_file, p=str(picture))
    assert denied.status_code == 403 and "READ ON FILE" in denied.text
    with MirrorServer(mirror_dir) as listener:
        denied = as_user(clickhouse_server, ANALYST, "SELECT encode_image((SELECT * FROM url({u:String}, RawBLOB)))",
                         u=f"{listener.url}photos/1.jpg")
        assert denied.status_code == 403 and "READ ON URL" in denied.text and listener.requests == []
    # A user who may read the file gets its vector, the encoder's own.
    got = vector(as_user(clickhouse_server, ADMIN, through_file + " AS v FORMAT JSONEachRow", p=str(picture)))
    assert np.allclose(got, clip.ImageEncoder(tiny_clip / "vision")([picture.read_bytes()])[0], atol=1e-5)


@pytest.fixture(scope="module")
def hostile_images(clickhouse_server) -> str:
    """A table of hostile pictures that the analyst may read: what an attacker uploads to a table."""
    import clickhouse_connect

    admin = clickhouse_connect.get_client(host="127.0.0.1", port=clickhouse_server.http_port, username=ADMIN,
                                          password=PASSWORD)
    admin.command("CREATE DATABASE IF NOT EXISTS security")
    admin.command("CREATE TABLE security.images (name String, data String) ENGINE = MergeTree ORDER BY name")
    pictures = {"12000x1": png(12000, 1), "100000x1": png(100000, 1), "1x100000": png(1, 100000),
                "bomb": png(20000, 20000, "L")}  # 400 megapixels in 390 kB
    admin.insert("security.images", list(pictures.items()), column_names=["name", "data"])
    return "security.images"


@pytest.mark.parametrize("name", ["12000x1", "100000x1", "1x100000"])
def test_a_tiny_image_of_extreme_shape_costs_bounded_memory(clickhouse_server, hostile_images, name):
    """92 bytes of 12000 x 1 pixels grew the process by 2.5 GB; 100000 x 1 killed it."""
    got = as_user(clickhouse_server, ANALYST, f"SELECT encode_image(data) AS v FROM {hostile_images}"
                  " WHERE name = {n:String} FORMAT JSONEachRow", n=name)
    assert len(vector(got)) == 512
    assert udf_peak_rss_mb(clickhouse_server, "image") < 1024


def test_a_decompression_bomb_is_refused_and_the_pool_goes_on(clickhouse_server, hostile_images):
    said = refusal(as_user(clickhouse_server, ANALYST, f"SELECT encode_image(data) FROM {hostile_images}"
                           " WHERE name = 'bomb'"))
    assert said.startswith("encode_image: the image is over the limit of 50,000,000 pixels"), said
    assert len(vector(as_user(clickhouse_server, ANALYST, "SELECT encode_text('a cat') AS v FORMAT JSONEachRow"))) == 512


def test_a_huge_text_is_cut_before_it_is_tokenized(clickhouse_server, tiny_clip):
    started = time.monotonic()
    got = as_user(clickhouse_server, ANALYST,
                  "SELECT encode_text(concat('a photo of a dog ', repeat('and a cat ', 1000000))) AS v FORMAT JSONEachRow")
    assert time.monotonic() - started < 30
    expected = clip.TextEncoder(tiny_clip / "text")(["a photo of a dog " + "and a cat " * 2000])[0]
    assert np.allclose(vector(got), expected, atol=1e-6)  # 77 tokens come from the start
    assert udf_peak_rss_mb(clickhouse_server, "text") < 1024  # 10 MB of text took 1.6 GB


def run_script(directory: Path, kind: str, values: list[bytes], timeout: float = 60) -> subprocess.CompletedProcess:
    """The installed function as ClickHouse runs it: a chunk header, RowBinary strings on stdin."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))
    chunk = f"{len(values)}\n".encode() + b"".join(varint(len(v)) + v for v in values)
    return subprocess.run([str(directory / "laion_clip_udf"), kind], input=chunk, capture_output=True,
                          timeout=timeout, env={})


def test_a_block_over_the_deadline_fails_clearly(tmp_path, tiny_clip, monkeypatch):
    monkeypatch.setenv("LAION_CLIP_MODEL_DIR", str(tiny_clip))
    monkeypatch.setenv("LAION_CLIP_DEADLINE_SECONDS", "0.5")
    udf = install(tmp_path / "udf")
    assert "<max_command_execution_time>31</max_command_execution_time>" in (udf / "clip_functions.xml").read_text()
    started = time.monotonic()
    result = run_script(udf, "image", [png(7000, 7000)] * 64)
    assert result.returncode == 1 and time.monotonic() - started < 20
    assert result.stderr.decode().startswith("encode_image: the block took longer than LAION_CLIP_DEADLINE_SECONDS=0.5")


def test_a_process_over_its_memory_ceiling_fails_clearly(tmp_path, tiny_clip, monkeypatch):
    monkeypatch.setenv("LAION_CLIP_MODEL_DIR", str(tiny_clip))
    monkeypatch.setenv("LAION_CLIP_MEMORY_MB", "256")
    udf = install(tmp_path / "udf")
    fine = run_script(udf, "image", [photo()])
    assert fine.returncode == 0 and len(fine.stdout) == 2 + 512 * 4, fine.stderr.decode()[-500:]
    big = run_script(udf, "image", [png(7000, 7000)])  # 49 megapixels: 147 MB of RGB, and more to resize
    assert big.returncode == 1
    assert big.stderr.decode().strip() == "encode_image: out of memory (LAION_CLIP_MEMORY_MB=256)"


def test_an_image_over_the_byte_limit_is_refused_unread(tmp_path, tiny_clip, monkeypatch):
    monkeypatch.setenv("LAION_CLIP_MODEL_DIR", str(tiny_clip))
    udf = install(tmp_path / "udf")
    result = run_script(udf, "image", [b"\xff" * (clip.MAX_IMAGE_BYTES + 1)])
    assert result.returncode == 1 and "over the limit of 20 MiB" in result.stderr.decode()


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
    assert "--source-url must be an http:// or https:// URL, not 'file:///etc/'" in result.stderr
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
                    page = b"<html><body><h1>502 Bad Gateway</h1><pre>" + seen[at - 200:at + 200] + b"</pre></body></html>"
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
    ("LAION_SOURCE_URL", "file:///etc/", "LAION_SOURCE_URL must be an http:// or https:// URL"),
    ("LAION_TASK_RETRIES", "abc", "LAION_TASK_RETRIES: 'abc' is not a whole number"),
    ("LAION_MAX_SHARDS_IN_FLIGHT", "-1", "LAION_MAX_SHARDS_IN_FLIGHT: -1 is out of range (1..1,024)"),
    ("LAION_TASK_TIMEOUT_HOURS", "inf", "LAION_TASK_TIMEOUT_HOURS: 'inf' is not a finite number"),
])
def test_a_bad_setting_is_the_dags_import_error_naming_it(airflow_home, variable, value, says):
    parse = ("from airflow.dag_processing.dagbag import DagBag; import json;"
             " print(json.dumps(DagBag(dag_folder='dags').import_errors))")
    out = subprocess.run([sys.executable, "-c", parse], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**airflow_home, "PYTHONPATH": str(ROOT / "plugins"), variable: value})
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


@pytest.mark.parametrize("fields, says", [
    ({"text": "a dog", "min_width": "4294967296"}, "min_width: 4,294,967,296 is out of range (0..4,294,967,295)"),
    ({"text": "a dog", "min_similarity": "nan"}, "min_similarity: 'nan' is not a finite number"),
    ({"text": "a dog", "min_similarity": "2"}, "min_similarity: 2 is out of range (-1..1)"),
    ({"text": "a dog", "nsfw": "MAYBE"}, "nsfw: 'MAYBE' is not one of UNLIKELY, UNSURE, NSFW"),
    ({"image": png(20000, 20000, "L")}, "the image is over the limit of 50,000,000 pixels"),
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
