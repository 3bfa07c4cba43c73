"""Where a bench result comes from: the machine (cores, RAM, CPU, disk speed) and a digest of the
package it measured, so that a results file says what ran on what, and whether the package changed
while it ran. Shared by every bench script."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_files() -> list[Path]:
    return sorted([*(ROOT / "plugins" / "laion_ingest").glob("*.py"), *(ROOT / "include" / "sql").glob("*.sql")])


def changed_since(t: float) -> list:
    """Package and SQL files modified after t, with their modification times."""
    return [(str(f.relative_to(ROOT)), f.stat().st_mtime) for f in package_files() if f.stat().st_mtime > t]


def package_digest() -> str:
    """A hash of the package and its SQL: RESULTS.md says so if they changed while the bench ran."""
    import hashlib
    return hashlib.sha256(b"".join(f.read_bytes() for f in package_files())).hexdigest()[:12]


def machine(work: Path) -> dict:
    """Cores, RAM, CPU model, and the disk's sustained write speed (1 GB, fsync'ed) under work/."""
    mem = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in open("/proc/meminfo"))}
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 "?")
    work.mkdir(parents=True, exist_ok=True)
    probe = work / "disk_probe"
    block = os.urandom(1 << 20)
    t = time.perf_counter()
    with open(probe, "wb") as f:
        for _ in range(1024):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    disk = 1024 / (time.perf_counter() - t)
    probe.unlink()
    import chdb
    import pyarrow
    return {"cores": os.cpu_count(), "ram_gb": mem["MemTotal"] / 2**20, "cpu": model, "disk_mb_s": disk,
            "python": platform.python_version(), "chdb": chdb.__version__, "pyarrow": pyarrow.__version__,
            "clickhouse": chdb.query("SELECT version()", "CSV").data().strip().strip('"'),
            "load_avg_start": os.getloadavg()[0]}
