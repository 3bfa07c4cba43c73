"""Stage 1: download the three files of a shard from the LAION server (or a mirror).

Each file goes to `<name>.part` and is renamed only once its size matches what the server
announced, so a file without `.part` is always complete and is not fetched again. An interrupted
download resumes with an HTTP Range request where the server supports it. 5xx answers, timeouts
and dropped connections are retried with backoff; 4xx answers (404: no such shard) are permanent.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from laion_ingest.errors import PermanentError, ShardFileError
from laion_ingest.progress import Progress
from laion_ingest.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT = (10, 60)  # connect, read (seconds without a byte)


def shard_files(shard: int) -> list[str]:
    """Paths of a shard's files below the base URL, exactly as on the LAION server."""
    return [f"img_emb/img_emb_{shard}.npy", f"text_emb/text_emb_{shard}.npy",
            f"metadata/metadata_{shard}.parquet"]


def fetch_shard(shard: int, base_url: str, dest_dir: Path,
                policy: RetryPolicy | None = None) -> dict[str, int]:
    """Download shard's files into dest_dir (same relative paths); returns {file: bytes}.

    The three files download at once, each on its own connection: a remote server or a long path
    often caps one connection below the host's bandwidth, and the writes into the page cache, the
    cost on a fast link, spread over the cores. A failure is raised once the other files are done
    (they are kept, and a retry skips them)."""
    policy = policy or RetryPolicy.from_env()
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    names = shard_files(shard)
    progress = _ShardProgress(shard)
    with ThreadPoolExecutor(len(names), thread_name_prefix=f"fetch-{shard}") as pool:
        downloads = {name: pool.submit(_fetch_file, shard, base_url, name, Path(dest_dir) / name, policy,
                                       progress) for name in names}
    sizes = {name: download.result() for name, download in downloads.items()}
    progress.finish()
    return sizes


class _ShardProgress(Progress):
    """One progress line (or bar) for a shard's downloads running at once: per file what it has
    and what it will have, which a retry resets (a resume keeps its bytes, a restart drops them)."""

    def __init__(self, shard: int):
        super().__init__(f"download shard {shard}", 0, logger=log)
        self.lock = threading.Lock()
        self.files: dict[str, list[int]] = {}

    def attempt(self, name: str, have: int, total: int) -> None:
        with self.lock:
            self.files[name] = [have, total]
            self.total = sum(t for _, t in self.files.values())
            self.done = sum(h for h, _ in self.files.values())

    def got(self, name: str, amount: int) -> None:
        with self.lock:
            self.files[name][0] += amount
            self.advance(amount)


def _fetch_file(shard: int, base_url: str, name: str, dest: Path, policy: RetryPolicy,
                progress: _ShardProgress) -> int:
    with requests.Session() as http:
        try:
            return retrying(f"download of {base_url}{name}",
                            lambda: _download(http, base_url + name, dest, name, progress), policy)
        except PermanentError as exc:
            raise ShardFileError(shard, name, str(exc)) from exc


def _download(http: requests.Session, url: str, dest: Path, name: str, progress: _ShardProgress) -> int:
    if dest.exists():
        size = dest.stat().st_size
        log.info("%s: already downloaded (%d bytes)", dest.name, size)
        progress.attempt(name, size, size)
        return size
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.get(url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
        if resp.status_code == 416 and have:  # the part file is already whole, or wrong: start over
            part.unlink()
            raise ConnectionError(f"{url}: range {have}- not satisfiable; restarting the download")
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise PermanentError(f"HTTP {resp.status_code} for {url}")
        resp.raise_for_status()
        if resp.status_code == 206:
            total = int(resp.headers["Content-Range"].rsplit("/", 1)[1])
            log.info("%s: resuming at %d of %d bytes", dest.name, have, total)
        else:
            have, total = 0, int(resp.headers.get("Content-Length", 0))
        progress.attempt(name, have, total)
        with open(part, "ab" if have else "wb") as out:
            for chunk in resp.iter_content(CHUNK):
                out.write(chunk)
                progress.got(name, len(chunk))
    size = part.stat().st_size
    if total and size != total:
        raise ConnectionError(f"{url}: got {size} of {total} bytes")
    part.rename(dest)
    return size
