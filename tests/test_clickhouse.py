"""The one seam to ClickHouse, on both engines: every kind of query parameter the package sends
reaches ClickHouse exactly and comes back exactly, and what is stored never crashes a reader."""
from __future__ import annotations

import pytest

from laion_ingest import datasets, pipeline, staging
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError
from laion_ingest.ledger import Attempt, shard_status
from laion_ingest.load import create_tables
from laion_ingest.search import search

LAION400M = datasets.get("laion400m")

NASTY = ["plain", "quotes ' \" `", "back\\slash", "ends in backslash\\", "\\N", "tab\there",
         "new\nline", "cr\r\nlf", "numpy said b'\\x93NUMPY'", "ünïcödé 猫 🐈", "", "{braces:String}", "%s %(x)s"]


@pytest.mark.parametrize("text", NASTY)
def test_strings_round_trip_exactly(ch, text):
    [(back, length)] = ch.query("SELECT {t:String} AS back, length(back)", t=text)
    assert (back, length) == (text, len(text.encode()))


def test_every_parameter_type_the_package_sends_round_trips(ch):
    vector = [0.1, -1e-8, 3.0e38, 0.0, 65504.0]
    [row] = ch.query(
        "SELECT {v:Array(Float32)} = [toFloat32(0.1), toFloat32(-1e-8), toFloat32(3.0e38), 0, 65504] AS v,"
        " {names:Array(String)} AS names, {sizes:Array(UInt64)} AS sizes, {f:Float64} AS f, {u16:UInt16} AS u16,"
        " {u64:UInt64} AS u64, hex({raw:String}) AS raw",
        v=vector, names=NASTY, sizes=[0, 2**64 - 1], f=1764083412.123456, u16=65535, u64=2**64 - 1,
        raw=b"\x93NUMPY\xff\x00")
    assert row == (1, NASTY, [0, 2**64 - 1], 1764083412.123456, 65535, 2**64 - 1, "934E554D5059FF00")
    create_tables(ch)
    assert ch.query("SELECT {c:Identifier} FROM laion LIMIT 0", c="caption") == []


def test_the_ledger_keeps_any_error_text_and_every_reader_survives_stored_bytes(ch):
    create_tables(ch)
    error = "ValueError: " + "".join(NASTY)
    attempt = Attempt(7, try_number=2, run_id="run 'x'\\", source_bytes={"img_emb/img_emb_7.npy": 2**40})
    attempt.record(ch, "failed", "convert", error)
    ch.query("INSERT INTO laion_ledger (shard, outcome, stage, error) VALUES (8, 'failed', 'fetch', unhex('93FF'))")
    status = {s["shard"]: s for s in shard_status(ch)}
    assert status[7]["last_error"] == error and status[8]["last_error"] == "93ff"  # hex, not a crash
    [(files, run_id)] = ch.query("SELECT source_bytes, run_id FROM laion_ledger WHERE shard = 7")
    assert (files, run_id) == ({"img_emb/img_emb_7.npy": 2**40}, "run 'x'\\")


def test_a_server_without_s3_staging_is_refused_before_any_download(engine_env, monkeypatch):
    if "LAION_CLICKHOUSE_CONN_ID" not in engine_env:
        pytest.skip("the embedded engine reads the worker's files itself")
    monkeypatch.delenv("LAION_STAGING_URL")
    with pytest.raises(PermanentError, match="set LAION_STAGING_URL=s3://bucket/prefix"):
        pipeline.plan(LAION400M, 0, 3)
    with ClickHouse() as ch, pytest.raises(PermanentError, match="LAION_STAGING_URL"):
        staging.stage(pipeline.shard_dir(LAION400M, 0) / "laion_0.parquet", ch.is_server)


def test_search_survives_a_caption_that_is_not_utf8(ch):
    create_tables(ch)
    ch.query("INSERT INTO laion (id, shard, row, url, caption, image_embedding, text_embedding)"
             " SELECT number, 0, number, 'http://x/' || toString(number), if(number = 1, unhex('93FF41'), 'ok'),"
             " arrayMap(i -> toFloat32(i = number), range(512)), arrayMap(i -> toFloat32(i = number), range(512))"
             " FROM numbers(3)")
    hits = search(ch, [1.0 if i == 1 else 0.0 for i in range(512)], k=3, exact=True)
    assert hits[0].id == 1 and hits[0].caption == "93ff41"  # its bytes as hex digits, not a crash
