"""fetch against a real HTTP server on 127.0.0.1: resume, retries, permanent errors."""
from __future__ import annotations

import filecmp
import logging

import pytest

from laion_ingest.errors import ShardFileError
from laion_ingest.fetch import fetch_shard, shard_files
from laion_ingest.mirror_server import MirrorServer
from laion_ingest.retry import RetryPolicy

FAST = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.05)
IMG = "/img_emb/img_emb_0.npy"


def gets(server, path):
    return [r for r in server.requests if r[0] == "GET" and r[1] == path]


def test_fetches_the_three_files_byte_identical(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir) as server:
        sizes = fetch_shard(0, server.url, tmp_path, FAST)
    assert set(sizes) == set(shard_files(0))
    for name, size in sizes.items():
        assert filecmp.cmp(mirror_dir / name, tmp_path / name, shallow=False)
        assert size == (mirror_dir / name).stat().st_size
    assert not list(tmp_path.rglob("*.part"))


def test_a_dropped_connection_resumes_with_a_range_request(mirror_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="laion_ingest.fetch")
    with MirrorServer(mirror_dir, faults={IMG: ["cut"]}) as server:
        fetch_shard(0, server.url, tmp_path, FAST)
    total = sum((mirror_dir / name).stat().st_size for name in shard_files(0)) / 1e6
    # One line for the three files at once, its count neither losing nor repeating the resumed bytes.
    assert caplog.messages[-1].startswith(f"download shard 0: {total:,.1f} of {total:,.1f} MB (100%)")
    first, second = gets(server, IMG)
    assert first[2] is None and second[2].startswith("bytes=") and second[3] == 206
    assert int(second[2][6:-1]) > 0  # it asked only for what was missing
    assert filecmp.cmp(mirror_dir / IMG[1:], tmp_path / IMG[1:], shallow=False)


def test_without_range_support_the_download_restarts_whole(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={IMG: ["cut"]}, ranges=False) as server:
        fetch_shard(0, server.url, tmp_path, FAST)
    assert [r[3] for r in gets(server, IMG)] == [200, 200]
    assert filecmp.cmp(mirror_dir / IMG[1:], tmp_path / IMG[1:], shallow=False)


def test_server_errors_are_retried(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={IMG: [503, 500]}) as server:
        fetch_shard(0, server.url, tmp_path, FAST)
    assert [r[3] for r in gets(server, IMG)] == [503, 500, 200]


def test_a_missing_file_fails_at_once_naming_shard_and_file(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={"/text_emb/text_emb_0.npy": [404]}) as server:
        with pytest.raises(ShardFileError, match=r"shard 0: text_emb/text_emb_0.npy: HTTP 404"):
            fetch_shard(0, server.url, tmp_path, FAST)
    assert len(gets(server, "/text_emb/text_emb_0.npy")) == 1  # no retries spent on a 404
    for name in ("img_emb/img_emb_0.npy", "metadata/metadata_0.parquet"):  # fetched alongside, kept
        assert filecmp.cmp(mirror_dir / name, tmp_path / name, shallow=False)


def test_transient_errors_give_up_after_the_policy_attempts(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir, faults={IMG: [503] * 5}) as server:
        with pytest.raises(Exception, match="503"):
            fetch_shard(0, server.url, tmp_path, FAST)
    assert len(gets(server, IMG)) == FAST.attempts


def test_complete_files_are_not_downloaded_again(mirror_dir, tmp_path):
    with MirrorServer(mirror_dir) as server:
        fetch_shard(0, server.url, tmp_path, FAST)
        fetch_shard(0, server.url, tmp_path, FAST)
    assert len([r for r in server.requests if r[0] == "GET"]) == 3
