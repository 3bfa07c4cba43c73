"""Local HTTP server for a mirror directory, with fault injection.

Stands in for the LAION download server in tests and the quickstart: it
speaks real HTTP/1.1 over a socket, so the downloader's retry, resume
(Range) and size-check code runs exactly as in production. Faults let tests
script failures per URL path:

    MirrorServer(d, faults={"/img_emb/img_emb_1.npy": [503, "cut"]})

Each request to that path takes the next entry: an int answers with that
error status; "cut" sends the headers and only half of the body, then closes
the connection (a dropped download); "cut-unsized" does the same without a
Content-Length; "short-length" announces and sends only half of the file as
if it were whole; "html" answers 200 OK with an HTML error page; "drip" sends
one byte every 0.2 s (at most 50); "huge" announces a Content-Length of 1 PB and
sends nothing; "hold" waits until the test calls release() (`held` is set meanwhile), then serves
normally. Once the list is empty the path is served normally. Faults keyed by the path apply to GET;
keyed "HEAD <path>", to HEAD. With `auth=(user, password)` every request needs those HTTP basic
credentials (401 otherwise), like an authenticated mirror. /photos/<key>.jpg answers with a small
picture of its own, so a mirror generated with this server's url as image_url has images to show.
"""

import base64
import hashlib
import http.server
import io
import os
import re
import threading
import time
from functools import partial
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
FAULTS = ("cut", "cut-unsized", "short-length", "html", "drip", "huge", "hold")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte for a single-range header, or None to ignore it.

    Multi-range and malformed headers are ignored (the full body is served),
    as RFC 9110 allows. A returned first >= size means unsatisfiable.
    """
    m = _RANGE.fullmatch(header.strip())
    if not m or m.groups() == ("", ""):
        return None
    first, last = m.groups()
    if not first:  # suffix form "bytes=-n": the last n bytes
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        return None
    return int(first), min(int(last), size - 1) if last else size - 1


class _Handler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of files only (no listings), with Range and scripted faults."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._serve(body=True)

    def do_HEAD(self):
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        mirror = self.server.mirror
        if mirror.auth and self.headers.get("Authorization") != mirror.auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        fault = mirror._next_fault(self._url_path() if body else "HEAD " + self._url_path())
        if isinstance(fault, int):
            self.send_error(fault)
            return
        if fault == "hold":
            mirror.held.set()
            mirror._released.wait(timeout=600)
            fault = None
        if fault == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**15))
            self.end_headers()
            self.close_connection = body  # a GET's promised body never comes
            return
        if fault == "html":
            page = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page if body else b"")
            return
        if self._url_path().startswith("/photos/"):
            self._photo(body)
            return
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        first, last = 0, size - 1
        span = _parse_range(self.headers.get("Range", ""), size) if mirror.ranges else None
        if span and span[0] >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if span else 200)
        if span:
            first, last = span
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        if mirror.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        count = last - first + 1
        if fault != "cut-unsized":
            self.send_header("Content-Length", str(count // 2 if fault == "short-length" else count))
        self.end_headers()
        if fault in ("cut", "cut-unsized", "short-length"):
            count //= 2
            self.close_connection = fault != "short-length"
        if fault == "drip" and body:
            self.close_connection = True
            try:
                with open(path, "rb") as f:
                    f.seek(first)
                    for _ in range(min(count, 50)):
                        self.wfile.write(f.read(1))
                        self.wfile.flush()
                        time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should
            return
        if body and count > 0:
            try:
                with open(path, "rb") as f:
                    self.connection.sendfile(f, first, count)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # client gave up; nothing to report

    def _photo(self, body: bool) -> None:
        """A small JPEG for the mirror's image URLs: a colour of its own for each key."""
        from PIL import Image

        colour = hashlib.sha256(self._url_path().encode()).digest()[:3]
        buffer = io.BytesIO()
        Image.new("RGB", (96, 96), tuple(colour)).save(buffer, "JPEG")
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(buffer.tell()))
        self.end_headers()
        if body:
            self.wfile.write(buffer.getvalue())

    def _url_path(self) -> str:
        return unquote(urlsplit(getattr(self, "path", "")).path)

    def log_request(self, code="-", size="-"):
        """Record every response (errors included) in the server's request log."""
        headers = getattr(self, "headers", None)  # unset when the request line is malformed
        self.server.mirror._record(
            (self.command, self._url_path(), headers and headers.get("Range"), int(code)))
        if self.server.mirror.verbose:
            super().log_request(code, size)

    def log_message(self, format, *args):
        if self.server.mirror.verbose:
            super().log_message(format, *args)


class _HTTPServer(http.server.ThreadingHTTPServer):
    # Idle keep-alive connections must not make stop() wait for the client.
    block_on_close = False


class MirrorServer:
    """Serve `directory` on host:port (0 picks a free port) from a daemon thread.

    `faults` maps URL path -> list of int status codes or "cut" (see module
    docstring). `ranges=False` emulates a server without Range support: the
    header is ignored and the full body is always sent with 200.
    `requests` lists (method, path, Range header or None, status) per response.
    """

    def __init__(self, directory, host="127.0.0.1", port=0, faults=None, ranges=True, verbose=False, auth=None):
        self.auth = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self.faults = {path: list(codes) for path, codes in (faults or {}).items()}
        bad = [c for codes in self.faults.values() for c in codes if c not in FAULTS and not isinstance(c, int)]
        if bad:  # a typo would otherwise silently serve normally and mislead the test
            raise ValueError(f"faults must be int status codes or one of {FAULTS}, got {bad}")
        self.ranges = ranges
        self.verbose = verbose
        self._lock = threading.Lock()
        self.held, self._released = threading.Event(), threading.Event()
        self._log = []
        self._httpd = _HTTPServer((host, port), partial(_Handler, directory=os.fspath(directory)))
        self._httpd.mirror = self
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def requests(self) -> list[tuple[str, str, str | None, int]]:
        with self._lock:
            return list(self._log)

    def start(self) -> "MirrorServer":
        # A short poll interval keeps stop() (which waits for the next poll) fast in tests.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> "MirrorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def release(self) -> None:
        """Let the requests a "hold" fault keeps waiting go on."""
        self._released.set()

    def _next_fault(self, path: str):
        with self._lock:
            codes = self.faults.get(path)
            return codes.pop(0) if codes else None

    def _record(self, entry) -> None:
        with self._lock:
            self._log.append(entry)


def serve_forever(directory, host="127.0.0.1", port=8000) -> None:
    """Serve a mirror until interrupted, logging each request (command-line use)."""
    server = MirrorServer(directory, host, port, verbose=True)
    print(f"serving {os.path.abspath(directory)} at {server.url}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
