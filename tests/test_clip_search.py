"""Search by text and by image, as a user runs it: CLIP queries on the command line, on both engines.

The model is the mirror's tiny CLIP (sample/clip_model.py): the real model's files, inputs and outputs.
The mirror's text embeddings are rewritten with that model's encoding of each caption, as LAION's
were made by OpenAI's CLIP, so `clip-check` has a model that matches the data. Its image URLs point
at the test's own HTTP server, which draws a picture for each.
"""
from __future__ import annotations

import json
import time

import clickhouse_connect
import numpy as np
import pyarrow.parquet as pq
import pytest
from clickhouse_server import ADMIN, PASSWORD, ClickHouseServer, udf_config
from conftest import ENGINES, engine_variables, use_engine
from ports import free_port
from test_cli import cli

from laion_ingest import clip, datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.clip_udf import install
from laion_ingest.index import IndexParams, build_indexes
from laion_ingest.ledger import Attempt
from laion_ingest.sample.clip_model import write_model
from laion_ingest.sample.mirror import NOUNS, generate_mirror
from laion_ingest.sample.server import MirrorServer
from laion_ingest.search import explain, search

ROWS = 3000


def encode_mirror_captions(mirror_dir, shards, model) -> None:
    """Replace each shard's text_emb file with the model's encoding of its captions (float16, as LAION)."""
    encoder = clip.TextEncoder(model / "text")
    for shard in shards:
        captions = pq.read_table(mirror_dir / f"metadata/metadata_{shard}.parquet", columns=["caption"])
        vectors = encoder([c or "" for c in captions["caption"].to_pylist()])
        np.save(mirror_dir / f"text_emb/text_emb_{shard}.npy", vectors.astype(np.float16))


def other_nouns(captions: list[str]) -> list[str]:
    """Captions naming another of the mirror's nouns than dog. The tiny model's "dog" points at the
    mirror's dog clusters, so a dog query finds only dog rows; one row in 11 carries one of the test
    captions (mirror.SPECIAL_CAPTIONS) instead, which name no noun."""
    return [c for c in captions if any(noun in c.split() for noun in NOUNS if noun != "dog")]


@pytest.fixture(scope="module")
def photo_mirror(tmp_path_factory, tiny_clip):
    """Two shards whose image URLs this mirror's server answers with pictures."""
    port = free_port()
    out = tmp_path_factory.mktemp("photo_mirror")
    generate_mirror(out, range(2), ROWS, image_url=f"http://127.0.0.1:{port}/")
    encode_mirror_captions(out, range(2), tiny_clip)
    with MirrorServer(out, port=port) as server:
        yield server


@pytest.fixture(scope="module", params=ENGINES)
def loaded(request, tmp_path_factory, photo_mirror, tiny_clip):
    """Both shards loaded and indexed on one engine; the environment set for the module."""
    env = engine_variables(request.param, tmp_path_factory.mktemp(request.param), request)
    env["LAION_CLIP_MODEL_DIR"] = str(tiny_clip)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_engine(monkeypatch, env)
        for shard in (0, 1):
            pipeline.ingest(Attempt(shard), photo_mirror.url)
        with ClickHouse() as ch:
            build_indexes(ch, IndexParams(m=16, ef_construction=64))
        yield env


def test_a_text_query_finds_the_images_its_words_describe(loaded):
    out = cli("search", "--text", "a photo of a dog", "--json", "-k", "10", env=loaded).stdout
    hits = [json.loads(line) for line in out.splitlines()]
    assert len(hits) == 10 and len({h["id"] for h in hits}) == 10
    captions = [h["caption"] or "" for h in hits]
    assert other_nouns(captions) == [] and sum("dog" in c for c in captions) >= 6, captions
    assert all(h["url"].startswith("http://127.0.0.1:") and h["nsfw"] in ("UNLIKELY", "UNSURE", "NSFW") for h in hits)
    table = cli("search", "--text", "a photo of a dog", "-k", "3", "--ef", "64", "--compare", env=loaded).stdout
    assert "top 3 by HNSW index:" in table and "recall@3: " in table


def test_an_image_query_by_url_and_by_file_gives_the_same_hits(loaded, tmp_path):
    with ClickHouse() as ch:
        [(url,)] = ch.query("SELECT url FROM laion WHERE shard = 1 AND row = 5")
    picture = tmp_path / "query.jpg"
    picture.write_bytes(clip.read_image(url))
    by_url = cli("search", "--image-url", url, "--json", env=loaded).stdout
    by_file = cli("search", "--image", str(picture), "--json", env=loaded).stdout
    assert by_url == by_file and len(by_url.splitlines()) == 10


def test_a_query_that_is_not_an_image_is_refused_naming_it(loaded, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    result = cli("search", "--image", str(bad), env=loaded, check=False)
    assert result.returncode != 0 and "not an image Pillow can read" in result.stderr


def test_a_large_k_still_uses_the_index(loaded):
    target = clip.TextEncoder(clip.model_dir(datasets.VIT_B_32, "text"))(["a red car"])[0]
    with ClickHouse() as ch:
        assert "vector_similarity" in explain(ch, target, k=1500)  # above the default limit of 1000
        hits = search(ch, target, k=1500)
        assert len(hits) == 1500 and len({h.id for h in hits}) == 1500
        # Without the setting ClickHouse would have scanned every row: the index is not in the plan.
        plain = ch.query("EXPLAIN indexes = 1 SELECT id FROM laion"
                         " ORDER BY cosineDistance(image_embedding, {t:Array(Float32)}) LIMIT 1500", t=target.tolist())
        assert "vector_similarity" not in "\n".join(r[0] for r in plain)


def test_clip_check_says_whether_the_model_made_the_stored_vectors(loaded, tmp_path):
    good = cli("clip-check", "--captions", "100", env=loaded)
    assert "the model matches the data" in good.stdout
    other = write_model(tmp_path / "other", seed=7)  # same shape, other weights: an unrelated model
    bad = cli("clip-check", env={**loaded, "LAION_CLIP_MODEL_DIR": str(other)}, check=False)
    assert bad.returncode == 1 and "does NOT match" in bad.stdout


def test_text_longer_than_77_tokens_is_cut_not_refused(tiny_clip):
    encode = clip.TextEncoder(tiny_clip / "text")
    long = encode(["dog " * 75 + "cat " * 500])[0]
    assert np.allclose(long, encode(["dog " * 75])[0], atol=1e-6)
    assert not np.allclose(long, encode(["dog " * 74 + "cat"])[0], atol=1e-3)  # within 77, every word counts


SQL_TEXT_QUERY = ("SELECT id FROM laion ORDER BY cosineDistance(image_embedding, encode_text('a photo of a dog'))"
                  " LIMIT 10")


def test_encode_text_in_sql_finds_what_the_search_finds_through_the_index(loaded):
    """The seed's query, as SQL users write it: the function's vector is the encoder's, and the
    ORDER BY still reads the vector index (ClickHouse folds the call into a constant)."""
    with ClickHouse() as ch:
        plan = "\n".join(r[0] for r in ch.query("EXPLAIN indexes = 1 " + SQL_TEXT_QUERY))
        assert "vector_similarity" in plan, plan
        in_sql = [r[0] for r in ch.query(SQL_TEXT_QUERY)]
        [(vector,)] = ch.query("SELECT encode_text('a photo of a dog')")
        encoded = clip.TextEncoder(clip.model_dir(datasets.VIT_B_32, "text"))(["a photo of a dog"])[0]
        assert np.allclose(vector, encoded, atol=1e-6)
        assert in_sql == [h.id for h in search(ch, encoded, k=10, ef=256)]


def test_encode_image_in_sql_takes_the_images_bytes(loaded):
    """The bytes come from the caller (a parameter, a table, or ClickHouse's file()/url() under their
    own grants); a path is refused, saying how to read it (tests/test_security.py probes the rest)."""
    with ClickHouse() as ch:
        [(url,)] = ch.query("SELECT url FROM laion WHERE shard = 0 AND row = 7")
        picture = clip.read_image(url)
        [(vector,)] = ch.query("SELECT encode_image(unhex({hex:String})) AS v", hex=picture.hex())
        encoder = clip.ImageEncoder(clip.model_dir(datasets.VIT_B_32, "vision"))
        assert np.allclose(vector, encoder([picture])[0], atol=1e-6)
        with pytest.raises(Exception, match="encode_image: it takes an image's bytes, not a path or a URL"):
            ch.query("SELECT encode_image('/no/such/picture.jpg')")
        # The pool's process died with that query; the next query gets a new one.
        assert len(ch.query("SELECT encode_text('a cat')")[0][0]) == 512


def test_a_connection_that_ran_encode_text_still_answers_after_the_server_closed_it(tmp_path, tiny_clip, monkeypatch):
    """The pool process starts inside a client's query. It must not keep that client's socket: the
    server closes idle keep-alive connections (after 1 s here), and the client's next query on a
    connection still held open by the process hung until its read timeout."""
    monkeypatch.setenv("LAION_CLIP_MODEL_DIR", str(tiny_clip))
    udf = install(tmp_path / "user_scripts")
    with ClickHouseServer(tmp_path / "server",
                          udf_config(udf) + "<keep_alive_timeout>1</keep_alive_timeout>") as server:
        client = clickhouse_connect.get_client(host="127.0.0.1", port=server.http_port, username=ADMIN,
                                               password=PASSWORD, send_receive_timeout=15)
        assert len(client.query("SELECT encode_text('a dog')").result_rows[0][0]) == 512
        time.sleep(3)  # the server closes the idle connection the client keeps in its pool
        started = time.monotonic()
        assert client.query("SELECT 1").result_rows == [(1,)] and time.monotonic() - started < 5
