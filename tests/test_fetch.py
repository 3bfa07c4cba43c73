"""fetch against a real HTTP server on 127.0.0.1: resume, retries, permanent errors."""
from __future__ import annotations

import filecmp
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from laion_ingest import datasets, pipeline, work_space
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import DiskSpaceError, PermanentError, ShardFileError
from laion_ingest.fetch import fetch_shard, shard_sizes
from laion_ingest.ledger import Attempt
from laion_ingest.load import create_tables
from laion_ingest.retry import RetryPolicy
from laion_ingest.sample.server import MirrorServer

LAION400M = datasets.get("laion400m")

FAST = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)
IMG = "/img_emb/img_emb_0.npy"


def gets(server, path):
    return [r for r in server.requests if r[0] == "GET" and r[1] == path]


def test_fetches_the_three_files_byte_identical(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir) as server:
        sizes = fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert set(sizes) == set(LAION400M.files(0))
    for name, size in sizes.items():
        assert filecmp.cmp(mirror_dir / name, tmp_path / name, shallow=False)
        assert size == (mirror_dir / name).stat().st_size
    assert not list(tmp_path.rglob("*.part"))


def test_a_dropped_connection_resumes_with_a_range_request(mirror_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="laion_ingest.fetch")
    with MirrorServer(mirror_dir, faults={IMG: ["cut"]}) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    total = sum((mirror_dir / name).stat().st_size for name in LAION400M.files(0)) / 1e6
    # One line for the three files at once, its count neither losing nor repeating the resumed bytes.
    assert caplog.messages[-1].startswith(f"download shard 0: {total:,.1f} of {total:,.1f} MB (100%)")
    first, second = gets(server, IMG)
    assert first[2] is None and second[2].startswith("bytes=") and second[3] == 206
    assert int(second[2][6:-1]) > 0  # it asked only for what was missing
    assert filecmp.cmp(mirror_dir / IMG[1:], tmp_path / IMG[1:], shallow=False)


def test_without_range_support_the_download_restarts_whole(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={IMG: ["cut"]}, ranges=False) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert [r[3] for r in gets(server, IMG)] == [200, 200]
    assert filecmp.cmp(mirror_dir / IMG[1:], tmp_path / IMG[1:], shallow=False)


def test_server_errors_are_retried(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={IMG: [503, 500]}) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert [r[3] for r in gets(server, IMG)] == [503, 500, 200]


@pytest.mark.parametrize("status", [405, 403, 503])
def test_a_host_that_refuses_or_fails_head_costs_nothing(mirror_dir, tmp_path, status):
    """Gateways and mirrors refuse HEAD (405, 403) or fail it (503) while GET works: a file's size
    then comes from a GET of its first byte, and the shard loads as from any host."""
    faults = {"HEAD /" + name: [status] * 20 for name in LAION400M.files(0)}
    with MirrorServer(mirror_dir, faults=faults) as server:
        sizes = shard_sizes(LAION400M, 0, server.url, tmp_path, FAST)  # the space check's question
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    for name, size in sizes.items():
        assert size == (mirror_dir / name).stat().st_size
        assert filecmp.cmp(mirror_dir / name, tmp_path / name, shallow=False)
        assert gets(server, "/" + name)[0][2:] == ("bytes=0-0", 206)


def test_a_missing_file_fails_at_once_naming_shard_and_file(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={"/text_emb/text_emb_0.npy": [404]}) as server:
        with pytest.raises(ShardFileError, match=r"shard 0: text_emb/text_emb_0.npy: HTTP 404"):
            fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert len(gets(server, "/text_emb/text_emb_0.npy")) == 1  # no retries spent on a 404
    for name in ("img_emb/img_emb_0.npy", "metadata/metadata_0.parquet"):  # fetched alongside, kept
        assert filecmp.cmp(mirror_dir / name, tmp_path / name, shallow=False)


def test_transient_errors_give_up_after_the_policy_attempts(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={IMG: [503] * 5}) as server:
        with pytest.raises(ConnectionError, match="shard 0: img_emb/img_emb_0.npy: .*503"):
            fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert len(gets(server, IMG)) == FAST.attempts


def test_complete_files_are_not_downloaded_again(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert len([r for r in server.requests if r[0] == "GET"]) == 3


META = "/metadata/metadata_0.parquet"


@pytest.mark.parametrize("path", [IMG, META])
@pytest.mark.parametrize("fault", ["html", "cut-unsized", "short-length"])
def test_a_body_that_is_not_the_whole_file_never_becomes_the_file(mirror_dir, tmp_path, path, fault):
    """A 200 OK error page, a body cut short without Content-Length, or a Content-Length smaller
    than the file: each is retried (resumed where the part is the file's start) until it is whole."""
    with MirrorServer(mirror_dir, faults={path: [fault]}) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert filecmp.cmp(mirror_dir / path[1:], tmp_path / path[1:], shallow=False)
    if fault != "html" and path == IMG or fault == "short-length":
        assert gets(server, path)[1][2] is not None  # the second request resumed with a Range
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("path", [IMG, META])
def test_an_error_page_every_time_fails_without_leaving_a_file(mirror_dir, tmp_path, path):
    with MirrorServer(mirror_dir, faults={path: ["html"] * FAST.attempts}) as server:
        with pytest.raises(ConnectionError, match=f"{path[1:]}: the body is not a valid"):
            fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert not (tmp_path / path[1:]).exists() and not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("path", [IMG, META])
def test_a_cached_invalid_file_is_fetched_again(mirror_dir, tmp_path, path):
    with MirrorServer(mirror_dir) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
        (tmp_path / path[1:]).write_bytes(b"<html>an error page saved by an older version</html>")
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert len(gets(server, path)) == 2
    assert filecmp.cmp(mirror_dir / path[1:], tmp_path / path[1:], shallow=False)


def test_a_slow_drip_is_dropped_and_resumed(mirror_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LAION_MIN_DOWNLOAD_RATE", "1000")  # bytes/s; the drip sends 5
    monkeypatch.setenv("LAION_DOWNLOAD_RATE_WINDOW", "1")
    with MirrorServer(mirror_dir, faults={IMG: ["drip"]}) as server:
        fetch_shard(LAION400M, 0, server.url, tmp_path, FAST)
    assert "under the minimum of 1,000 (LAION_MIN_DOWNLOAD_RATE); resuming" in caplog.text
    first, second = gets(server, IMG)
    assert second[2] is not None and int(second[2][6:-1]) > 0  # resumed after the dripped bytes
    assert filecmp.cmp(mirror_dir / IMG[1:], tmp_path / IMG[1:], shallow=False)


@pytest.mark.parametrize("url", ["file:///data/laion/", "ftp://127.0.0.1/laion/", "127.0.0.1:8000/"])
def test_an_unsupported_url_is_refused_at_once(tmp_path, url):
    with pytest.raises(PermanentError, match="must be an http://, https:// or s3:// URL"):
        fetch_shard(LAION400M, 0, url, tmp_path, FAST)


def test_a_url_with_credentials_is_refused_without_showing_them(tmp_path):
    with pytest.raises(PermanentError) as refused:
        fetch_shard(LAION400M, 0, "http://laion:s3cret@127.0.0.1:1/mirror/", tmp_path, FAST)
    assert "http://***@127.0.0.1:1/mirror/ carries credentials" in str(refused.value)
    assert "s3cret" not in str(refused.value) and "LAION_SOURCE_CONN_ID" in str(refused.value)


def test_an_authenticated_mirror_takes_its_credentials_from_an_airflow_connection(
        mirror_dir, chdb_env, monkeypatch, caplog):
    import airflow.sdk  # noqa: F401  as in a task

    monkeypatch.setenv("LAION_SOURCE_CONN_ID", "laion_source")
    monkeypatch.setenv("AIRFLOW_CONN_LAION_SOURCE", '{"conn_type": "http", "login": "laion", "password": "s3cret"}')
    with MirrorServer(mirror_dir, auth=("laion", "s3cret"), faults={"/text_emb/text_emb_1.npy": [404]}) as server:
        assert set(pipeline.fetch(Attempt(0), server.url)["files"]) == set(LAION400M.files(0))
        with pytest.raises(ShardFileError) as failed:
            pipeline.fetch(Attempt(1), server.url)
    with ClickHouse() as ch:
        ledger = ch.query("SELECT error FROM laion_ledger")
    assert ledger and "HTTP 404" in ledger[0][0]
    for text in (caplog.text, str(failed.value), *(e for (e,) in ledger)):
        assert "s3cret" not in text


def test_force_fetches_again(mirror, chdb_env):
    pipeline.fetch(Attempt(0), mirror.url)
    before = len(mirror.requests)
    pipeline.fetch(Attempt(0), mirror.url)
    assert len(mirror.requests) == before  # cached: nothing fetched
    pipeline.fetch(Attempt(0), mirror.url, force=True)
    assert len([r for r in mirror.requests[before:] if r[0] == "GET"]) == 3


def test_two_fetches_of_a_shard_at_once_leave_the_files_whole(mirror_dir, chdb_env):
    """A run and the command line fetching one shard: they take turns instead of appending to the
    same .part files."""
    with MirrorServer(mirror_dir, faults={IMG: ["cut", "cut"]}) as server:
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(pipeline.fetch, Attempt(0), server.url) for _ in range(2)]:
                done.result()
    for name in LAION400M.files(0):
        assert filecmp.cmp(mirror_dir / name, pipeline.shard_dir(LAION400M, 0) / name, shallow=False)


def test_a_shard_the_work_directory_cannot_hold_is_refused_before_its_download(mirror_dir, chdb_env):
    """The sizes come from the server (HEAD) before any GET; the error names the directory and the
    bytes needed, and is transient (Airflow retries it once space may have been freed)."""
    with MirrorServer(mirror_dir, faults={"HEAD " + IMG: ["huge"]}) as server:
        with pytest.raises(DiskSpaceError, match=r"shard 0: the work directory \S+ needs [\d,]+ bytes"
                                                 r" \([\d,.]+ GB\) free") as refused:
            pipeline.fetch(Attempt(0), server.url)
    assert refused.match(re.escape(chdb_env["LAION_WORK_DIR"]))
    assert not isinstance(refused.value, PermanentError)
    assert [r for r in server.requests if r[0] == "GET"] == []


def test_the_space_check_counts_what_shards_in_flight_will_still_write(mirror, chdb_env):
    """Shards that start together must not each count the same free space: a shard already in
    flight, noted to grow by more than the disk has free, holds the next one back."""
    free = shutil.disk_usage(Path(chdb_env["LAION_WORK_DIR"]).parent).free
    note = work_space.shard_dir(LAION400M, 3) / work_space.NOTE
    note.parent.mkdir(parents=True)
    note.write_text(json.dumps({"run_id": "another", "fullest_bytes": free}))
    with pytest.raises(DiskSpaceError, match="still to come for the shards in flight"):
        pipeline.fetch(Attempt(0), mirror.url)
    note.unlink()  # that shard was loaded
    pipeline.fetch(Attempt(0), mirror.url)


def test_a_run_waits_while_its_shards_in_flight_hold_files(mirror, chdb_env):
    """Shards of the run waiting for a retry keep their files, so they count; another run's leftovers
    take no turn. Waiting records nothing in the ledger and downloads nothing."""
    pipeline.fetch(Attempt(0, run_id="r1"), mirror.url, in_flight=2)
    pipeline.fetch(Attempt(1, run_id="r1"), mirror.url, in_flight=2)
    before = len(mirror.requests)
    with pytest.raises(work_space.NoTurnYet, match=r"shard 2: shards \[0, 1\] of this run hold files"):
        pipeline.fetch(Attempt(2, run_id="r1"), mirror.url, in_flight=2)
    assert len(mirror.requests) == before and not work_space.shard_dir(LAION400M, 2).exists()
    pipeline.fetch(Attempt(1, run_id="r1"), mirror.url, in_flight=2)  # its own turn: a retry goes on
    pipeline.fetch(Attempt(2, run_id="r2"), mirror.url, in_flight=2)
    with ClickHouse() as ch:
        create_tables(ch)
        assert ch.query("SELECT count() FROM laion_ledger")[0][0] == 0


def test_a_full_disk_names_the_shard_and_file(mirror, tmp_path):
    """A write that fails (a file-size limit stands in for a full disk) is retried, then reported
    naming the shard and the file, as a transient error."""
    code = ("import resource, signal, sys; from pathlib import Path; from laion_ingest.fetch import fetch_shard\n"
            "from laion_ingest.retry import RetryPolicy\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "from laion_ingest import datasets\n"
            "try:\n    fetch_shard(datasets.get('laion400m'), 0, sys.argv[1], Path(sys.argv[2]),"
            " RetryPolicy(2, 0.01, 0.01))\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")
    done = subprocess.run([sys.executable, "-c", code, mirror.url, str(tmp_path)], capture_output=True, text=True,
                          check=True, env=dict(os.environ))
    assert re.match(r"DownloadError shard 0: (img|text)_emb/(img|text)_emb_0.npy: OSError: \[Errno 27\] File too large",
                    done.stdout), done.stdout


def test_the_space_check_survives_other_shards_deleting_their_files(chdb_env):
    """A shard loaded deletes its directory while another shard's fetch counts the bytes in flight
    (2,314 tiny parts through the scheduler failed a shard's try this way): the count skips them."""
    other, stop = work_space.shard_dir(LAION400M, 5), threading.Event()

    def load_and_delete():
        while not stop.is_set():
            for i in range(20):
                (other / f"sub{i}").mkdir(parents=True, exist_ok=True)
                (other / f"sub{i}" / "part.parquet").write_bytes(b"x" * 100)
            shutil.rmtree(other, ignore_errors=True)

    churn = threading.Thread(target=load_and_delete)
    churn.start()
    try:
        for _ in range(500):
            work_space.reserve(LAION400M, 0, "r1", {"img_emb_0.npy": 10})
    finally:
        stop.set()
        churn.join()
