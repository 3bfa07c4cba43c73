"""Stage 1: download the three files of a shard from the LAION server (or a mirror).

Each file goes to `<name>.part` and is renamed only once it is valid for its kind, whatever the
headers said: an `.npy` whose header and exact size agree, a Parquet file whose footer reads. So a
file without `.part` is complete and is not fetched again (a cached file that fails the same check
is discarded and fetched again). Servers do send a 200 OK HTML error page, a body cut short without
Content-Length, or a Content-Length smaller than the file: each is caught here, the part kept to
resume where it can be the start of the right file, discarded where it cannot. An interrupted
download resumes with an HTTP Range request where the server supports it. 5xx answers, timeouts,
dropped connections and such bodies are retried with backoff; 4xx answers (404: no such shard) are
permanent.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import requests

from laion_ingest import settings
from laion_ingest.errors import PermanentError, ShardFileError
from laion_ingest.progress import Progress
from laion_ingest.redaction import logger, register
from laion_ingest.retry import RetryPolicy, retrying

log = logger(__name__)

CHUNK = 1 << 20
TIMEOUT = (10, 60)  # connect, read (seconds without a byte)


def source_auth() -> tuple[str, str] | None:
    """HTTP basic credentials for the source, from the Airflow connection LAION_SOURCE_CONN_ID; the
    password is registered for redaction (and Airflow masks it in task logs)."""
    conn_id = settings.source_conn_id()
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    register(conn.password)
    return conn.login or "", conn.password or ""


def _base(url: str) -> str:
    """The checked base URL, ending in '/': refused before any network I/O (settings.source_url_value)."""
    url = settings.source_url_value("source_url", url)
    return url if url.endswith("/") else url + "/"


def shard_files(shard: int) -> list[str]:
    """Paths of a shard's files below the base URL, exactly as on the LAION server."""
    return [f"img_emb/img_emb_{shard}.npy", f"text_emb/text_emb_{shard}.npy",
            f"metadata/metadata_{shard}.parquet"]


def fetch_shard(shard: int, base_url: str, dest_dir: Path, policy: RetryPolicy | None = None,
                auth: tuple[str, str] | None = None) -> dict[str, int]:
    """Download shard's files into dest_dir (same relative paths); returns {file: bytes}.

    The three files download at once, each on its own connection: a remote server or a long path
    often caps one connection below the host's bandwidth, and the writes into the page cache, the
    cost on a fast link, spread over the cores. A failure is raised once the other files are done
    (they are kept, and a retry skips them). auth: HTTP basic credentials of an authenticated mirror."""
    base_url = _base(base_url)
    policy = policy or RetryPolicy.from_settings()
    names = shard_files(shard)
    progress = _ShardProgress(shard)
    with ThreadPoolExecutor(len(names), thread_name_prefix=f"fetch-{shard}") as pool:
        downloads = {name: pool.submit(_fetch_file, shard, base_url, name, Path(dest_dir) / name, policy,
                                       progress, auth) for name in names}
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


def shard_sizes(shard: int, base_url: str, dest_dir: Path, policy: RetryPolicy | None = None,
                auth: tuple[str, str] | None = None) -> dict[str, int | None]:
    """The sizes of the shard's files: of those already downloaded, on disk; of the others, on the
    server (HEAD; None where it does not say). Asked before a byte is downloaded, so that the work
    directory's space is checked first and a missing file fails before the others are fetched."""
    base_url = _base(base_url)
    policy = policy or RetryPolicy.from_settings()
    with requests.Session() as http:
        http.auth = auth
        return {name: (Path(dest_dir) / name).stat().st_size if (Path(dest_dir) / name).exists()
                else _with_retries(shard, base_url, name, "size", lambda url: _size(http, url), policy)
                for name in shard_files(shard)}


def _size(http: requests.Session, url: str) -> int | None:
    resp = http.head(url, timeout=TIMEOUT, allow_redirects=True)
    _refuse_client_errors(resp, url)
    resp.raise_for_status()
    length = resp.headers.get("Content-Length")
    return int(length) if length else None


def _fetch_file(shard: int, base_url: str, name: str, dest: Path, policy: RetryPolicy,
                progress: _ShardProgress, auth: tuple[str, str] | None) -> int:
    with requests.Session() as http:
        http.auth = auth
        return _with_retries(shard, base_url, name, "download",
                             lambda url: _download(http, url, dest, name, progress), policy)


def _with_retries(shard: int, base_url: str, name: str, what: str, fn, policy: RetryPolicy):
    """fn(url of the file), retried by policy; errors name the shard and the file."""
    try:
        return retrying(f"{what} of {base_url}{name}", lambda: fn(base_url + name), policy)
    except PermanentError as exc:
        raise ShardFileError(shard, name, str(exc)) from exc
    except Exception as exc:  # transient, out of retries: say which file, whatever failed (disk, network)
        raise DownloadError(f"shard {shard}: {name}: {type(exc).__name__}: {exc}") from exc


def _refuse_client_errors(resp: requests.Response, url: str) -> None:
    """4xx but a timeout or a rate limit: the file is not there for us, and asking again will not help."""
    if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
        raise PermanentError(f"HTTP {resp.status_code} for {url}")


class DownloadError(ConnectionError):
    """A download that failed after its retries inside one task try; Airflow retries the task."""


def _download(http: requests.Session, url: str, dest: Path, name: str, progress: _ShardProgress) -> int:
    if dest.exists():
        problem = file_problem(dest)
        if not problem:
            size = dest.stat().st_size
            log.info("%s: already downloaded (%d bytes)", dest.name, size)
            progress.attempt(name, size, size)
            return size
        log.warning("%s: the downloaded file is not valid (%s); fetching it again", dest, problem)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.get(url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
        if resp.status_code == 416 and have:  # the part file is already whole, or wrong: start over
            part.unlink()
            raise ConnectionError(f"{url}: range {have}- not satisfiable; restarting the download")
        _refuse_client_errors(resp, url)
        resp.raise_for_status()
        if resp.status_code == 206:
            total = int(resp.headers["Content-Range"].rsplit("/", 1)[1])
            log.info("%s: resuming at %d of %d bytes", dest.name, have, total)
        else:
            have, total = 0, int(resp.headers.get("Content-Length", 0))
        progress.attempt(name, have, total)
        resp.raw.decode_content = True
        floor = _RateFloor(url)
        with open(part, "ab" if have else "wb") as out:
            # read1: whatever has arrived, so that a slow drip is seen (a full read of CHUNK bytes
            # would wait for all of them, and the socket's timeout only notices silence).
            while chunk := resp.raw.read1(CHUNK):
                out.write(chunk)
                progress.got(name, len(chunk))
                floor.check(len(chunk))
    size = part.stat().st_size
    if total and size != total:
        raise ConnectionError(f"{url}: got {size} of {total} bytes")
    problem = file_problem(part)
    if problem:
        if not can_resume(part):
            part.unlink()
        raise ConnectionError(f"{url}: the body is not a valid {dest.suffix} file: {problem}")
    part.rename(dest)
    return size


class _RateFloor:
    """Fails a transfer that stays under LAION_MIN_DOWNLOAD_RATE bytes/s for a whole
    LAION_DOWNLOAD_RATE_WINDOW seconds, so that a server dripping a byte now and then cannot hold
    the task for ever; the retry resumes with a Range request."""

    def __init__(self, url: str):
        self.url, self.min_rate, self.window = url, settings.min_download_rate(), settings.download_rate_window()
        self.start, self.bytes = time.monotonic(), 0

    def check(self, n: int) -> None:
        self.bytes += n
        elapsed = time.monotonic() - self.start
        if elapsed < self.window:
            return
        if self.bytes < self.min_rate * elapsed:
            raise ConnectionError(f"{self.url}: {self.bytes / elapsed:,.0f} bytes/s for {elapsed:.0f} s, under the"
                                  f" minimum of {self.min_rate:,.0f} (LAION_MIN_DOWNLOAD_RATE); resuming")
        self.start, self.bytes = time.monotonic(), 0


def file_problem(path: Path) -> str | None:
    """Why the file is not a whole .npy or Parquet file, or None. numpy and pyarrow read the header
    and the footer; nothing else of the file is read."""
    if not can_resume(path):
        with open(path, "rb") as f:
            return f"it starts with {f.read(16)!r}, not as a {'.npy' if '.npy' in path.suffixes else 'Parquet'} file"
    try:
        if ".npy" in path.suffixes:
            array = np.load(path, mmap_mode="r")  # fails on a file shorter than its header announces
            expected, size = array.offset + array.nbytes, path.stat().st_size
            del array
            return None if size == expected else f"{size} bytes, but its header announces {expected}"
        pq.read_metadata(path)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


def can_resume(path: Path) -> bool:
    """Whether a (part) file can be the start of the right file: it begins as one (a resumed Range
    then completes it), rather than being an error page or other content."""
    with open(path, "rb") as f:
        head = f.read(6)
    return head.startswith(b"\x93NUMPY" if ".npy" in path.suffixes else b"PAR1")
