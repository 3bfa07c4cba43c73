"""Staging converted shards in S3 for a ClickHouse server, against a real SeaweedFS S3 server;
the engine (chdb) reads them back with s3(). Credentials never reach the logs or the ledger."""
from __future__ import annotations

import logging

import airflow.sdk  # noqa: F401  loaded up front, as in a task: staging then reads Airflow connections
import pytest
from s3_server import BUCKET, KEY, SECRET

from laion_ingest import pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.ledger import Attempt


@pytest.fixture(params=["environment", "airflow connection"])
def s3_staging(request, s3, chdb_env, monkeypatch):
    """The embedded engine reading shards staged in S3 (the server engine always stages there)."""
    monkeypatch.setenv("LAION_STAGING_URL", f"s3://{BUCKET}/shards")
    if request.param == "environment":
        monkeypatch.setenv("LAION_S3_CONN_ID", "no_such_connection")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_LAION_S3", s3.connection())
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
    return s3.client()


def test_a_shard_staged_in_s3_loads_and_leaves_no_object(mirror, s3_staging, caplog):
    caplog.set_level(logging.DEBUG)
    attempt = Attempt(1)
    pipeline.fetch(attempt, mirror.url)
    rows = pipeline.convert(attempt)
    assert pipeline.load(attempt) == rows
    with ClickHouse() as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion WHERE shard = 1")[0] == (rows, rows)
    assert s3_staging.list_objects_v2(Bucket=BUCKET, Prefix="shards/").get("KeyCount", 0) == 0
    assert "uploading laion_1.parquet to s3://laion-staging/shards/laion_1.parquet" in caplog.text
    assert SECRET not in caplog.text


def test_a_failed_s3_read_keeps_secrets_out_of_the_error(mirror, s3_staging, caplog):
    caplog.set_level(logging.DEBUG)
    attempt = Attempt(2)
    pipeline.fetch(attempt, mirror.url)
    pipeline.convert(attempt)
    staged = pipeline.shard_dir(2) / "laion_2.parquet"
    staged.write_bytes(staged.read_bytes()[:-1000])  # ClickHouse's s3() read of it fails
    with pytest.raises(Exception) as failure:
        pipeline.load(attempt)
    with ClickHouse() as ch:
        [(error,)] = ch.query("SELECT error FROM laion_ledger WHERE shard = 2")
    assert error and SECRET not in error and SECRET not in str(failure.value) and SECRET not in caplog.text
