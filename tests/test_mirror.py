"""Tests for the synthetic LAION mirror and the local mirror HTTP server."""

import filecmp
import http.client
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from laion_ingest.sample import mirror
from laion_ingest.sample.mirror import (
    SPECIAL_CAPTIONS,
    generate_mirror,
    generate_shard,
    shard_rows,
)
from laion_ingest.sample.server import MirrorServer

ROWS = 2000
SHARDS = (0, 1, 5)
SPECIALS = [c for c in SPECIAL_CAPTIONS if c is not None]

EXPECTED_SCHEMA = [
    ("image_path", pa.string()), ("caption", pa.string()), ("NSFW", pa.string()),
    ("similarity", pa.float64()), ("LICENSE", pa.string()), ("url", pa.string()),
    ("key", pa.string()), ("shard_id", pa.int64()), ("status", pa.string()),
    ("error_message", pa.null()), ("width", pa.int64()), ("height", pa.int64()),
    ("exif", pa.string()), ("original_width", pa.int64()), ("original_height", pa.int64()),
]


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mirror")
    return d, generate_mirror(d, SHARDS, rows=ROWS)


def load(d, shard):
    img = np.load(d / f"img_emb/img_emb_{shard}.npy")
    text = np.load(d / f"text_emb/text_emb_{shard}.npy")
    return img, text, pq.read_table(d / f"metadata/metadata_{shard}.parquet")


def test_row_counts_are_not_round_and_agree_across_files(mirror_dir):
    d, counts = mirror_dir
    assert counts == {s: shard_rows(ROWS, s) for s in SHARDS}
    assert len(set(counts.values())) == len(SHARDS)
    for shard, n in counts.items():
        assert n % 2 == 1 and n != ROWS
        img, text, meta = load(d, shard)
        assert img.shape[0] == text.shape[0] == meta.num_rows == n


def test_embeddings_are_unit_norm_float16_c_order(mirror_dir):
    d, counts = mirror_dir
    for shard, n in counts.items():
        for emb in load(d, shard)[:2]:
            assert emb.dtype == np.float16 and emb.shape == (n, 512)
            assert emb.flags.c_contiguous and not np.isfortran(emb)
            norms = np.linalg.norm(emb.astype(np.float32), axis=1)
            np.testing.assert_allclose(norms, 1.0, atol=1e-2)


def test_image_and_text_of_a_row_are_correlated(mirror_dir):
    img, text, _ = load(mirror_dir[0], 1)
    img, text = img.astype(np.float32), text.astype(np.float32)
    same_row = np.einsum("ij,ij->i", img, text)
    other_row = np.einsum("ij,ij->i", img, np.roll(text, 1, axis=0))
    assert same_row.min() > 0.5
    assert same_row.mean() > other_row.mean() + 0.4


def test_embeddings_are_clustered_and_clusters_shared_across_shards(mirror_dir):
    """Random 512-d unit vectors have nearest-neighbour cosine ~0.2; clustered ones much more."""
    d, _ = mirror_dir
    a = load(d, 0)[0][:500].astype(np.float32)
    b = load(d, 5)[0][:500].astype(np.float32)
    within = a @ a.T
    np.fill_diagonal(within, -1)
    assert np.median(within.max(axis=1)) > 0.5
    assert np.median((a @ b.T).max(axis=1)) > 0.5


def test_metadata_schema_is_laion_400m(mirror_dir):
    d, counts = mirror_dir
    for shard in counts:
        schema = pq.read_schema(d / f"metadata/metadata_{shard}.parquet")
        assert [(f.name, f.type) for f in schema] == EXPECTED_SCHEMA


def test_metadata_values(mirror_dir):
    d, counts = mirror_dir
    for shard, n in counts.items():
        meta = load(d, shard)[2].to_pydict()
        assert len(set(meta["key"])) == len(set(meta["image_path"])) == n
        assert meta["error_message"] == [None] * n
        assert set(meta["shard_id"]) == {shard}
        assert set(meta["status"]) == {"success"}
        assert set(meta["NSFW"]) <= {"UNLIKELY", "UNSURE", "NSFW"}
        assert meta["NSFW"].count("UNLIKELY") > n / 2
        assert 0.28 <= min(meta["similarity"]) and max(meta["similarity"]) <= 0.45
        assert set(meta["LICENSE"]) == {"?", "https://creativecommons.org/licenses/by/4.0/"}
        assert all(ow >= w for ow, w in zip(meta["original_width"], meta["width"], strict=True))


def test_captions_contain_every_special_case_early_and_later(mirror_dir):
    d, counts = mirror_dir
    for shard, n in counts.items():
        captions = load(d, shard)[2].column("caption").to_pylist()
        for part in (captions[:100], captions[100:]):
            for special in SPECIALS:
                assert special in part
            assert None in part
            joined = "\x00".join(c for c in part if c)
            for needle in ('"', "'", "\t", "\r\n", "\\", "猫", "🐱", "é"):
                assert needle in joined
            assert "\n" in joined.replace("\r\n", "")
            assert max(len(c) for c in part if c) > 3000
        assert 0.005 < captions.count(None) / n < 0.02


def test_generation_is_deterministic_and_seeded(tmp_path):
    for d, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate_shard(tmp_path / d, 3, 300, seed=seed)
    for f in ("img_emb/img_emb_3.npy", "text_emb/text_emb_3.npy", "metadata/metadata_3.parquet"):
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False)
    assert not filecmp.cmp(tmp_path / "a/img_emb/img_emb_3.npy", tmp_path / "c/img_emb/img_emb_3.npy",
                           shallow=False)


def test_multi_chunk_shard_stays_consistent(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror, "CHUNK", 256)  # not a multiple of 100, to catch offset slips
    n = generate_shard(tmp_path, 2, 1000)
    img, text, meta = load(tmp_path, 2)
    assert img.shape == text.shape == (n, 512) and meta.num_rows == n
    assert pq.ParquetFile(tmp_path / "metadata/metadata_2.parquet").num_row_groups == -(-n // 256)
    assert len(set(meta.column("key").to_pylist())) == n
    np.testing.assert_allclose(np.linalg.norm(img.astype(np.float32), axis=1), 1.0, atol=1e-2)
    captions = meta.column("caption").to_pylist()
    # Row i is special k exactly when i % 100 == 3 + 11k, whatever the chunking.
    assert [i for i, c in enumerate(captions) if c is None] == list(range(80, n, 100))
    assert [i for i, c in enumerate(captions) if c == ""] == list(range(69, n, 100))


# --- server -----------------------------------------------------------------

PATH = "/img_emb/img_emb_0.npy"


@pytest.fixture(scope="module")
def served(mirror_dir):
    d, _ = mirror_dir
    return d, (d / PATH.lstrip("/")).read_bytes()


def test_full_get_and_head(served):
    d, data = served
    with MirrorServer(d) as srv:
        assert srv.url.startswith("http://127.0.0.1:") and srv.url.endswith("/")
        r = requests.get(srv.url + PATH.lstrip("/"))
        assert r.status_code == 200 and r.content == data
        assert r.headers["Accept-Ranges"] == "bytes"
        h = requests.head(srv.url + PATH.lstrip("/"))
        assert h.status_code == 200 and h.content == b""
        assert int(h.headers["Content-Length"]) == len(data)
        # On one keep-alive connection a HEAD must leave no body bytes behind.
        conn = http.client.HTTPConnection("127.0.0.1", urlsplit(srv.url).port)
        conn.request("HEAD", PATH)
        assert conn.getresponse().read() == b""
        conn.request("GET", PATH, headers={"Range": "bytes=0-9"})
        assert conn.getresponse().read() == data[:10]
        conn.close()
        assert requests.get(srv.url + "img_emb/missing.npy").status_code == 404
        assert requests.get(srv.url + "img_emb/").status_code == 404
        assert requests.get(srv.url + "../../etc/passwd").status_code == 404


@pytest.mark.parametrize("header, first, last", [
    ("bytes=100-199", 100, 199),
    ("bytes=1000-", 1000, None),
    ("bytes=-50", -50, None),
    ("bytes=10-99999999999", 10, None),
])
def test_range_returns_exact_bytes(served, header, first, last):
    d, data = served
    want = data[first:] if last is None else data[first:last + 1]
    with MirrorServer(d) as srv:
        r = requests.get(srv.url + PATH.lstrip("/"), headers={"Range": header})
    assert r.status_code == 206 and r.content == want
    start = first % len(data)
    assert r.headers["Content-Range"] == f"bytes {start}-{start + len(want) - 1}/{len(data)}"
    assert int(r.headers["Content-Length"]) == len(want)
    assert srv.requests == [("GET", PATH, header, 206)]


def test_unsatisfiable_range_is_416(served):
    d, data = served
    with MirrorServer(d) as srv:
        r = requests.get(srv.url + PATH.lstrip("/"), headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_ranges_false_ignores_range(served):
    d, data = served
    with MirrorServer(d, ranges=False) as srv:
        r = requests.get(srv.url + PATH.lstrip("/"), headers={"Range": "bytes=100-199"})
    assert r.status_code == 200 and r.content == data
    assert "Accept-Ranges" not in r.headers and "Content-Range" not in r.headers


def test_fault_codes_are_served_in_order_then_normal(served):
    d, data = served
    faults = {PATH: [503, 404]}
    with MirrorServer(d, faults=faults) as srv:
        url = srv.url + PATH.lstrip("/")
        assert [requests.get(url).status_code for _ in range(3)] == [503, 404, 200]
        assert requests.get(srv.url + "text_emb/text_emb_0.npy").status_code == 200
    assert [status for *_, status in srv.requests] == [503, 404, 200, 200]
    assert faults == {PATH: [503, 404]}  # the caller's lists are not consumed


def test_unknown_fault_is_rejected(served):
    with pytest.raises(ValueError, match="drop"):
        MirrorServer(served[0], faults={PATH: ["drop"]})


def test_cut_truncates_body_then_resume_with_range(served):
    d, data = served
    with MirrorServer(d, faults={PATH: ["cut", "cut"]}) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", urlsplit(srv.url).port)
        conn.request("GET", PATH)
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(data)
        with pytest.raises(http.client.IncompleteRead) as exc:
            resp.read()
        got = exc.value.partial
        assert got == data[:len(data) // 2]
        conn.close()

        url = srv.url + PATH.lstrip("/")
        with pytest.raises(requests.exceptions.RequestException):
            _ = requests.get(url, headers={"Range": f"bytes={len(got)}-"}).content
        r = requests.get(url, headers={"Range": f"bytes={len(got)}-"})
        assert r.status_code == 206 and got + r.content == data
    assert srv.requests == [("GET", PATH, None, 200),
                            ("GET", PATH, f"bytes={len(got)}-", 206),
                            ("GET", PATH, f"bytes={len(got)}-", 206)]


def test_server_is_quiet(served, capfd):
    d, _ = served
    with MirrorServer(d, faults={PATH: [500]}) as srv:
        requests.get(srv.url + PATH.lstrip("/"))
        requests.get(srv.url + "nope")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
