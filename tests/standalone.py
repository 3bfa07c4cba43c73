"""A real `airflow standalone` on 127.0.0.1 for the tests that drive Airflow like a user: its REST
API (with a bearer token) and its UI. Started in its own process group and stopped as a group."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from ports import free_port

ROOT = Path(__file__).resolve().parents[1]


class Standalone:
    def __init__(self, home: Path, extra_env: dict[str, str], port: int | None = None):
        self.home = home
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, **extra_env,
                    "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),  # it starts `airflow ...`
                    "AIRFLOW_HOME": str(home),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__CORE__MAX_MAP_LENGTH": "4096",  # as docker-compose.yaml: laion2b-en has 2,314 shards
                    "AIRFLOW__API__PORT": str(port),
                    "AIRFLOW__API__HOST": "127.0.0.1",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"}
        self.log = open(home / "standalone.log", "w")
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "standalone"], cwd=ROOT,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.http = requests.Session()
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited; see {self.home / 'standalone.log'}")
            try:
                if self._login() and self.api("GET", "/dags/laion_ingest").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"airflow standalone not ready; see {self.home / 'standalone.log'}")
            time.sleep(1)

    @property
    def password(self) -> str:
        return json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

    def _login(self) -> bool:
        if "Authorization" in self.http.headers:
            return True
        if not (self.home / "simple_auth_manager_passwords.json.generated").exists():
            return False
        r = self.http.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password})
        if r.status_code not in (200, 201):
            return False
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return True

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.http.request(method, f"{self.url}/api/v2{path}", timeout=30, **kw)

    def trigger(self, conf: dict) -> requests.Response:
        self.api("PATCH", "/dags/laion_ingest", json={"is_paused": False})
        return self.api("POST", "/dags/laion_ingest/dagRuns", json={"logical_date": None, "conf": conf})

    def wait_for_run(self, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/laion_ingest/dagRuns/{run_id}").json()["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} still running after {timeout} s")

    def task_instances(self, run_id: str, task_id: str) -> list[dict]:
        r = self.api("GET", f"/dags/laion_ingest/dagRuns/{run_id}/taskInstances", params={"task_id": task_id})
        return sorted(r.json()["task_instances"], key=lambda ti: ti["map_index"])

    def task_log(self, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        r = self.api("GET", f"/dags/laion_ingest/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                     params={"map_index": map_index}, headers={"Accept": "application/json"})
        r.raise_for_status()
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in r.json()["content"])  # events and errors

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
