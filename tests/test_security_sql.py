"""Nobody gets more than their grants, SQL functions: the probes of an attacker with a SELECT-only
ClickHouse account against encode_text() and encode_image().

The functions run on the test server, installed as docs/search.md says (the `clickhouse_server`
fixture), and are called as `analyst`, who has SELECT and nothing else. Every test here failed on
the code before it: encode_image read the host's files and fetched any URL as the server, a 92-byte
PNG took gigabytes, 10 MB of text took 1.6 GB, and nothing bounded a process's memory or time.
(test_security_inputs.py probes secrets, settings and the search page.)
"""
from __future__ import annotations

import glob
import io
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from clickhouse_server import ADMIN, ANALYST, PASSWORD
from PIL import Image

from laion_ingest import clip
from laion_ingest.clip_udf import install
from laion_ingest.sample.server import MirrorServer


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
    assert len(vector(as_user(clickhouse_server, ANALYST,
                              "SELECT encode_text('a cat') AS v FORMAT JSONEachRow"))) == 512


def test_a_huge_text_is_cut_before_it_is_tokenized(clickhouse_server, tiny_clip):
    started = time.monotonic()
    got = as_user(clickhouse_server, ANALYST,
                  "SELECT encode_text(concat('a photo of a dog ', repeat('and a cat ', 1000000)))"
                  " AS v FORMAT JSONEachRow")
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
    return subprocess.run([str(directory / "laion_clip_udf"), kind, "ViT-B/32"], input=chunk, capture_output=True,
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
