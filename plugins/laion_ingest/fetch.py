"""Stage 1: download the three files of a shard from the LAION server (or a mirror).

Each file goes to `<name>.part` and is renamed only once its size matches what the server
announced, so a file without `.part` is always complete and is not fetched again. An interrupted
download resumes with an HTTP Range request where the server supports it. 5xx answers, timeouts
and dropped connections are retried with backoff; 4xx answers (404: no such shard) are permanent.
"""
from __future__ import annotations

import logging
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
    """Download shard's files into dest_dir (same relative paths); returns {file: bytes}."""
    policy = policy or RetryPolicy.from_env()
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    sizes = {}
    with requests.Session() as http:
        for name in shard_files(shard):
            dest = Path(dest_dir) / name
            try:
                sizes[name] = retrying(f"download of {base_url}{name}",
                                       lambda: _download(http, base_url + name, dest), policy)
            except PermanentError as exc:
                raise ShardFileError(shard, name, str(exc)) from exc
    return sizes


def _download(http: requests.Session, url: str, dest: Path) -> int:
    if dest.exists():
        log.info("%s: already downloaded (%d bytes)", dest.name, dest.stat().st_size)
        return dest.stat().st_size
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
        progress = Progress(f"download {dest.name}", total, logger=log)
        progress.advance(have)
        with open(part, "ab" if have else "wb") as out:
            for chunk in resp.iter_content(CHUNK):
                out.write(chunk)
                progress.advance(len(chunk))
        progress.finish()
    size = part.stat().st_size
    if total and size != total:
        raise ConnectionError(f"{url}: got {size} of {total} bytes")
    part.rename(dest)
    return size
