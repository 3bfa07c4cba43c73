"""Stage 1: download the files of a shard (npy layout) from where they are published, or a mirror.

The source is an http(s) folder, or s3://bucket/prefix with the S3 connection's credentials (each
file is then fetched through a presigned HTTPS URL, so one code path serves both). A file's size
comes from HEAD, or, where a host refuses or fails HEAD while GET works (gateways, presigned URLs),
from a ranged GET of its first byte (Content-Range): such a host costs no shard.

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

from laion_ingest import settings, staging
from laion_ingest.datasets import Dataset
from laion_ingest.errors import PermanentError, ShardFileError
from laion_ingest.progress import Progress
from laion_ingest.redaction import logger, redact, register
from laion_ingest.retry import RetryPolicy, retrying

log = logger(__name__)

CHUNK = 1 << 20
TIMEOUT = (10, 60)  # connect, read (seconds without a byte)
PRESIGNED_SECONDS = 12 * 3600  # an s3:// source's file URLs last a task try (LAION_TASK_TIMEOUT_HOURS, 4)


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


def file_urls(dataset: Dataset, shard: int, base_url: str) -> dict[str, str]:
    """Each of the shard's files (its path below the base, as published) and the URL to GET it: the
    base URL, checked before any network I/O (settings.source_url_value), or for s3:// a presigned URL."""
    base_url = settings.source_url_value("source_url", base_url).rstrip("/") + "/"
    names = dataset.files(shard)
    if not base_url.startswith("s3://"):
        return {name: base_url + name for name in names}
    target = staging.s3_target(base_url)
    client = target.client()
    return {name: client.generate_presigned_url("get_object", ExpiresIn=PRESIGNED_SECONDS,
                                                Params={"Bucket": target.bucket, "Key": target.key(name)})
            for name in names}


def fetch_shard(dataset: Dataset, shard: int, base_url: str, dest_dir: Path, policy: RetryPolicy | None = None,
                auth: tuple[str, str] | None = None) -> dict[str, int]:
    """Download shard's files into dest_dir (same relative paths); returns {file: bytes}.

    The three files download at once, each on its own connection: a remote server or a long path
    often caps one connection below the host's bandwidth, and the writes into the page cache, the
    cost on a fast link, spread over the cores. A failure is raised once the other files are done
    (they are kept, and a retry skips them). auth: HTTP basic credentials of an authenticated mirror."""
    urls = file_urls(dataset, shard, base_url)
    policy = policy or RetryPolicy.from_settings()
    progress = _ShardProgress(shard)
    with ThreadPoolExecutor(len(urls), thread_name_prefix=f"fetch-{shard}") as pool:
        downloads = {name: pool.submit(_fetch_file, shard, url, name, Path(dest_dir) / name, policy,
                                       progress, auth) for name, url in urls.items()}
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


def shard_sizes(dataset: Dataset, shard: int, base_url: str, dest_dir: Path, policy: RetryPolicy | None = None,
                auth: tuple[str, str] | None = None) -> dict[str, int | None]:
    """The sizes of the shard's files: of those already downloaded, on disk; of the others, on the
    server (None where it does not say). Asked before a byte is downloaded, so that the work
    directory's space is checked first and a missing file fails before the others are fetched."""
    policy = policy or RetryPolicy.from_settings()
    with requests.Session() as http:
        http.auth = auth
        return {name: (Path(dest_dir) / name).stat().st_size if (Path(dest_dir) / name).exists()
                else _with_retries(shard, url, name, "size", lambda url=url: _size(http, url), policy)
                for name, url in file_urls(dataset, shard, base_url).items()}


def _size(http: requests.Session, url: str) -> int | None:
    """From HEAD; where HEAD is refused (405, 403, 501) or fails (5xx), from a GET of the first byte."""
    resp = http.head(url, timeout=TIMEOUT, allow_redirects=True)
    if resp.ok:
        length = resp.headers.get("Content-Length")
        return int(length) if length else None
    log.info("%s: HEAD answered %d; asking a GET of its first byte", redact(url), resp.status_code)
    with http.get(url, headers={"Range": "bytes=0-0"}, stream=True, timeout=TIMEOUT) as got:
        _refuse_client_errors(got, url)
        got.raise_for_status()
        if got.status_code == 206 and "/" in got.headers.get("Content-Range", ""):
            total = got.headers["Content-Range"].rsplit("/", 1)[1]
            return int(total) if total.isdigit() else None
        length = got.headers.get("Content-Length")  # a host that ignores Range sends the whole file: not read
        return int(length) if length else None


def _fetch_file(shard: int, url: str, name: str, dest: Path, policy: RetryPolicy,
                progress: _ShardProgress, auth: tuple[str, str] | None) -> int:
    with requests.Session() as http:
        http.auth = auth
        return _with_retries(shard, url, name, "download", lambda: _download(http, url, dest, name, progress),
                             policy)


def _with_retries(shard: int, url: str, name: str, what: str, fn, policy: RetryPolicy):
    """fn(), retried by policy; errors name the shard and the file."""
    try:
        return retrying(f"{what} of {redact(url)}", fn, policy)
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
