"""Staging converted shards in S3 for a ClickHouse server, against a real SeaweedFS S3 server;
the engine (chdb) reads them back with s3(). Credentials never reach the logs or the ledger."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import airflow.sdk  # noqa: F401  loaded up front, as in a task: staging then reads Airflow connections
import boto3
import pytest

from laion_ingest import pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.ledger import Attempt

KEY, SECRET = "laion-test-key", "s3cr3t-never-logged"
BUCKET = "laion-staging"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A SeaweedFS server (master, volume, filer, S3 gateway) on loopback ports, with one bucket."""
    base = tmp_path_factory.mktemp("seaweedfs")
    (base / "data").mkdir()
    config = base / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "laion", "credentials": [
        {"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List"]}]}))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    args = [str(Path(sys.executable).with_name("weed")), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={base / 'data'}", "-s3", f"-s3.config={config}", "-master.volumeSizeLimitMB=64",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0"]
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
    log = open(base / "weed.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"SeaweedFS did not start; see {base / 'weed.log'}")
            time.sleep(0.5)
    yield endpoint
    proc.kill()  # a throwaway server: no need for its slow graceful shutdown
    proc.wait()
    log.close()


@pytest.fixture(params=["environment", "airflow connection"])
def s3_staging(request, s3_endpoint, engine_env, monkeypatch):
    monkeypatch.setenv("LAION_STAGING_URL", f"s3://{BUCKET}/shards")
    if request.param == "environment":
        monkeypatch.setenv("LAION_S3_CONN_ID", "no_such_connection")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_LAION_S3", json.dumps(
            {"conn_type": "generic", "login": KEY, "password": SECRET, "extra": {"endpoint_url": s3_endpoint}}))
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
    return boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                        region_name="us-east-1")


def test_a_shard_staged_in_s3_loads_and_leaves_no_object(mirror, s3_staging, caplog):
    caplog.set_level(logging.DEBUG)
    attempt = Attempt(1)
    pipeline.fetch(attempt, mirror.url)
    rows = pipeline.convert(attempt)
    assert pipeline.load(attempt) == rows
    with ClickHouse() as ch:
        assert ch.query("SELECT count(), uniqExact(id) FROM laion WHERE shard = 1")[0] == (rows, rows)
    assert s3_staging.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
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
