"""Where ClickHouse reads a Parquet file from, and where a converted shard waits for it.

`parquet_source()` is the one place that says how ClickHouse reads a Parquet file: file() for a
local path, url() for http(s), s3() for s3://bucket/key. It answers the table function, written in
for {source} in the SQL files that read one, and its parameters; the credentials stay parameters.

The embedded engine reads the local file directly. A ClickHouse server cannot see the Airflow
worker's disk (its file() reads only the server's own user_files), so with a server
LAION_STAGING_URL=s3://bucket/prefix is required: the file is uploaded (boto3) and the server reads
it with s3(). Without it a server run is refused before anything is downloaded. Streaming the file
through the client instead was measured by hand and rejected: ClickHouse buffers a Parquet body it
cannot seek in whole (1.6 GB of server memory for a 200,000-row shard; a LAION shard is five times
that), and a cluster needs a store that every node reads anyway. Credentials come from the Airflow connection
LAION_S3_CONN_ID (default laion_s3: login = access key id, password = secret, extra
{"endpoint_url": ...}) or, outside Airflow or without that connection, from AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL. They are passed to ClickHouse as query parameters
and never logged, or, with LAION_S3_NAMED_COLLECTION, not passed at all: the server reads the bucket
with the credentials of that named collection in its own configuration.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from laion_ingest import settings
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger, register

log = logger(__name__)


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str
    endpoint_url: str | None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=self.secret_access_key)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def http_url(self, name: str) -> str:
        """The URL ClickHouse's s3() reads: path style under a custom endpoint, else AWS's."""
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/{self.bucket}/{self.key(name)}"
        return f"https://{self.bucket}.s3.amazonaws.com/{self.key(name)}"


def s3_target(url: str) -> S3Target:
    """The bucket of url (settings.staging_url checked it), with credentials registered for redaction."""
    parsed = urlparse(url)
    key_id, secret, endpoint = _credentials()
    register(secret)
    return S3Target(parsed.netloc, parsed.path.strip("/"), key_id, secret, endpoint)


def _credentials() -> tuple[str, str, str | None]:
    """From the Airflow connection when running under Airflow, else from the environment.
    (Importing Airflow from the command line would configure its logging and create ~/airflow.)"""
    if "airflow.sdk" in sys.modules:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(settings.s3_conn_id())
            return conn.login, conn.password, conn.extra_dejson.get("endpoint_url")
        except Exception as exc:  # no such connection: fall back to the environment
            log.info("no Airflow connection %s (%s); using AWS_* environment variables",
                     settings.s3_conn_id(), type(exc).__name__)
    return (os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            os.environ.get("AWS_ENDPOINT_URL"))


def require_reachable(is_server: bool) -> None:
    """Refuse a server without S3 staging at once, before hours of downloads that it cannot read."""
    if is_server and not settings.staging_url():
        raise PermanentError(
            f"LAION_CLICKHOUSE_CONN_ID={settings.clickhouse_conn_id()} is a ClickHouse server, which cannot read"
            " files on this worker: set LAION_STAGING_URL=s3://bucket/prefix (and the bucket's credentials in the"
            f" Airflow connection {settings.s3_conn_id()}) so that shards are staged where the server reads them")


def parquet_source(location: str, fmt: str = "Parquet") -> tuple[str, dict]:
    """The table function that reads a Parquet file (fmt ParquetMetadata: its footer only), and its
    parameters: file() for a local path, url() for http(s), s3() for s3://bucket/key, with the S3
    connection's credentials or, with LAION_S3_NAMED_COLLECTION, the server's own."""
    scheme = urlparse(location).scheme
    if scheme in ("http", "https"):
        return f"url({{url:String}}, {fmt})", {"url": location}
    if scheme != "s3":
        return f"file({{path:String}}, {fmt})", {"path": str(Path(location).resolve())}
    target = s3_target(location.rsplit("/", 1)[0])
    url = target.http_url(location.rsplit("/", 1)[1])
    collection = settings.s3_named_collection()
    if collection:
        return f"s3({{collection:Identifier}}, url = {{url:String}}, format = '{fmt}')", {"collection": collection,
                                                                                          "url": url}
    return (f"s3({{url:String}}, {{access_key_id:String}}, {{secret_access_key:String}}, {fmt})",
            {"url": url, "access_key_id": target.access_key_id, "secret_access_key": target.secret_access_key})


def stage(local: Path, is_server: bool) -> tuple[str, dict]:
    """Make a converted file readable by ClickHouse: (its parquet_source, uploaded to
    LAION_STAGING_URL for a server)."""
    require_reachable(is_server)
    url = settings.staging_url()
    if not url:
        return parquet_source(str(local))
    target = s3_target(url)
    log.info("uploading %s to s3://%s/%s", local.name, target.bucket, target.key(local.name))
    target.client().upload_file(str(local), target.bucket, target.key(local.name))
    return parquet_source(f"s3://{target.bucket}/{target.key(local.name)}")


def unstage(local: Path) -> None:
    """Remove the staged copy once ClickHouse holds the shard."""
    url = settings.staging_url()
    if url:
        target = s3_target(url)
        target.client().delete_object(Bucket=target.bucket, Key=target.key(local.name))
