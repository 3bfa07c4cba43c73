"""S3 against a real SeaweedFS server: converted shards staged for a ClickHouse server, which the
engine reads back with s3(), and a dataset's source in a bucket. Credentials never reach the logs
or the ledger."""
from __future__ import annotations

import logging

import airflow.sdk  # noqa: F401  loaded up front, as in a task: staging then reads Airflow connections
import pytest
from s3_server import BUCKET, KEY, SECRET

from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.ledger import Attempt
from laion_ingest.sample.mirror import generate_mirror

LAION400M = datasets.get("laion400m")


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
    staged = pipeline.shard_dir(LAION400M, 2) / "laion_2.parquet"
    staged.write_bytes(staged.read_bytes()[:-1000])  # ClickHouse's s3() read of it fails
    with pytest.raises(Exception) as failure:
        pipeline.load(attempt)
    with ClickHouse() as ch:
        [(error,)] = ch.query("SELECT error FROM laion_ledger WHERE shard = 2")
    assert error and SECRET not in error and SECRET not in str(failure.value) and SECRET not in caplog.text


@pytest.mark.parametrize("name", ["laion2b-en", "laion5b-100m"])
def test_a_source_in_a_bucket_loads_each_layout(tmp_path, engine_env, s3, monkeypatch, caplog, name):
    """source_url s3://bucket/prefix/ with the S3 connection: the npy parts download through
    presigned URLs, the subset's Parquet is read by ClickHouse's s3() where it lies."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LAION_S3_CONN_ID", "laion_s3")
    monkeypatch.setenv("AIRFLOW_CONN_LAION_S3", s3.connection())
    dataset = datasets.get(name)
    counts = generate_mirror(tmp_path / "mirror", [1], 800, dataset=name)
    prefix = f"sources/{tmp_path.name}"
    client = s3.client()
    for path in (tmp_path / "mirror").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(tmp_path / 'mirror')}")
    assert pipeline.ingest(Attempt(1, dataset), f"s3://{BUCKET}/{prefix}/") == counts[1]
    with ClickHouse(dataset) as ch:
        assert ch.query(f"SELECT count(), uniqExact(id) FROM {dataset.table}")[0] == (counts[1],) * 2
    assert SECRET not in caplog.text
