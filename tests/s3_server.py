"""A real S3 server for the tests: SeaweedFS (master, volume, filer, S3 gateway) on loopback ports,
in its own process group, with one bucket and one key pair."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
from ports import free_port

KEY, SECRET = "laion-test-key", "s3cr3t-never-logged"
BUCKET = "laion-staging"


class S3Server:
    def __init__(self, base: Path):
        self.base = Path(base)
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self, timeout: float = 60) -> S3Server:
        config = self.base / "s3.json"
        config.write_text(json.dumps({"identities": [{"name": "laion", "credentials": [
            {"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List"]}]}))
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        args = [str(Path(sys.executable).with_name("weed")), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-dir={self.base / 'data'}", "-s3", f"-s3.config={config}", "-master.volumeSizeLimitMB=256",
                "-volume.max=64", "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0"]
        for name, port in ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
        self._log = open(self.base / "weed.log", "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().create_bucket(Bucket=BUCKET)
                return self
            except Exception as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start; see {self.base / 'weed.log'}") from exc
                time.sleep(0.5)

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            region_name="us-east-1")

    def connection(self) -> str:
        """The bucket's credentials as the Airflow connection LAION_S3_CONN_ID names (JSON form)."""
        return json.dumps({"conn_type": "generic", "login": KEY, "password": SECRET,
                           "extra": {"endpoint_url": self.endpoint}})

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a throwaway server: no need for its slow graceful stop
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
