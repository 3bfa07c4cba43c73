"""CLIP inside SQL: the ClickHouse functions encode_text(String) and encode_image(String).

    SELECT url, caption FROM laion
    ORDER BY cosineDistance(image_embedding, encode_text('a dog and a cat')) LIMIT 10

    SELECT url, caption FROM laion
    ORDER BY cosineDistance(image_embedding, encode_image((SELECT * FROM url('https://example.com/cat.jpg', RawBLOB))))
    LIMIT 10

They are `executable_pool` functions (include/udf/clip_functions.xml). Each process of this module
loads the model once and answers chunks of rows, in batches. ClickHouse folds a call on a constant
into a constant before it plans the query, so the ORDER BY above still reads the vector index.

Trust: a function touches nothing but its argument and the model's files. encode_image takes the
image's bytes, never a path or a URL: reading a file or a URL is ClickHouse's own file(), url() or
s3(), which check the caller's grants (READ ON FILE, URL, S3) and the server's user_files_path and
remote_url_allow_hosts. (It used to open paths and fetch URLs itself, running as the server: any
caller could read the host's files and reach its internal network, ClickHouse's own passwordless
default user included.) Work is bounded per process and per block: the address space is capped at
LAION_CLIP_MEMORY_MB (setrlimit, before the model loads), a block of rows must be encoded within
LAION_CLIP_DEADLINE_SECONDS, a text is read up to clip.MAX_TEXT_CHARS bytes (the rest is skipped,
unread into memory) and an image up to clip.MAX_IMAGE_BYTES; clip.py bounds the rest. A refused
input fails the query with one line naming the function and why, and the process exits: ClickHouse
starts another for the next query.

`install(directory)` writes the XML and the script ClickHouse runs into a directory. The script
names this Python, this package and the settings above, because ClickHouse starts it with neither
our environment nor our PATH. The embedded engine installs both beside its data directory whenever
it opens. A server's administrator runs `python -m laion_ingest clip-udf DIR` and adds two lines to
the server config (docs/search.md).
"""
from __future__ import annotations

import ctypes
import faulthandler
import resource
import signal
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

from laion_ingest import settings
from laion_ingest.clip import ClipError
from laion_ingest.datasets import MODELS, Model

SCRIPT = "laion_clip_udf"
BATCH = 64  # rows per model call: bounds memory whatever the chunk ClickHouse sends
SKIP = 1 << 20  # bytes read at a time from the part of a value past its cap


def script_settings() -> dict[str, str]:
    """The settings the script carries (ClickHouse starts it without our environment): each model's
    directory where set, the threads, the deadline, and the memory ceiling where set (else each
    model's own default)."""
    dirs = {m.setting: settings.clip_model_dir(m.setting) for m in MODELS.values()}
    memory = settings.clip_memory_mb(None)
    return {**{name: str(path) for name, path in dirs.items() if path},
            "LAION_CLIP_THREADS": str(settings.clip_threads()),
            **({"LAION_CLIP_MEMORY_MB": str(memory)} if memory else {}),
            "LAION_CLIP_DEADLINE_SECONDS": str(settings.clip_deadline_seconds())}


def install(directory: Path) -> Path:
    """Write clip_functions.xml and the script into directory (only what changed); returns it.

    The script first closes every file it inherited but stdin, stdout and stderr. ClickHouse 26.9
    starts a pool process while it handles a query, and the process inherited that client's socket
    (and the listening ones): when the server later closed the idle keep-alive connection, the process
    still held it open, so the client's next query on it waited for an answer that never came (tested)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    script = "\n".join([
        f"#!{sys.executable}",
        "import os, sys",
        "os.closerange(3, os.sysconf('SC_OPEN_MAX'))  # the server's sockets: see clip_udf.install",
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})",
        # A server starts the script with an empty environment; chdb, with its own process's, which wins.
        f"for name, value in {script_settings()!r}.items():",
        "    os.environ.setdefault(name, value)",
        # numpy's BLAS threads cost ~40 MiB each and encode nothing; the tokenizer's pool, one per thread
        "os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')",
        "os.environ.setdefault('RAYON_NUM_THREADS', os.environ['LAION_CLIP_THREADS'])",
        "from laion_ingest.clip_udf import serve",
        "serve(sys.argv[1], sys.argv[2])", ""])
    _write(directory / SCRIPT, script, mode=0o755)
    # ClickHouse's own limit on a block is the deadline's backstop; the first block also loads the model.
    seconds = round(2 * settings.clip_deadline_seconds() + 30)
    xml = (settings.sql_dir().parent / "udf" / "clip_functions.xml").read_text()
    _write(directory / "clip_functions.xml",
           xml.replace("{seconds}", str(seconds)).replace("{ms}", str(1000 * seconds)))
    return directory


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    if not path.exists() or path.read_text() != text:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        temporary.chmod(mode)
        temporary.replace(path)  # a process starting the script never sees half of it


class Refused(Exception):
    """An input or a block the function will not encode; the message goes to the query's error."""


def serve(kind: str, model_name: str, stdin: BinaryIO = sys.stdin.buffer,
          stdout: BinaryIO = sys.stdout.buffer) -> None:
    """The pool process of encode_<kind><model's suffix>: a line with a row count, that many RowBinary
    strings, then as many RowBinary Array(Float32) answers, until EOF. Any refusal ends the process
    with the reason on stderr.

    The memory ceiling is RLIMIT_DATA, the heap and private mappings: RLIMIT_AS also charges each of
    ONNX Runtime's threads ~72 MiB of address space it never uses, and so refused the model at 16
    threads under twice its real peak. Past the ceiling numpy, Pillow and ONNX Runtime raise, and
    the process says so (measured; docs/security.md). Small allocations come from mmap above 128 KiB,
    so that freed buffers go back to the system instead of staying in the heap the ceiling counts."""
    model = MODELS[model_name]
    memory_mb = settings.clip_memory_mb(model.memory_mb)
    resource.setrlimit(resource.RLIMIT_DATA, (memory_mb << 20, memory_mb << 20))
    ctypes.CDLL(None).mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD (glibc)
    try:
        _serve(kind, model, stdin, stdout)
    except Exception as exc:  # one line for ClickHouse's error, never a traceback (it keeps only the first line)
        reason = str(exc) if isinstance(exc, Refused | ClipError) else \
            f"out of memory (LAION_CLIP_MEMORY_MB={memory_mb})" if isinstance(exc, MemoryError) else \
            f"{type(exc).__name__}: {exc}"
        sys.stderr.write(f"encode_{kind}{model.sql_suffix}: {reason}\n")
        sys.stderr.flush()
        sys.exit(1)


def _serve(kind: str, model: Model, stdin: BinaryIO, stdout: BinaryIO) -> None:
    from laion_ingest import clip

    if kind == "text":
        encoder, cap = clip.text_encoder(model), clip.MAX_TEXT_CHARS
    else:
        encoder, cap = clip.image_encoder(model), clip.MAX_IMAGE_BYTES
    deadline = settings.clip_deadline_seconds()
    signal.signal(signal.SIGALRM, _late)
    while header := stdin.readline():
        values = [_read_string(stdin, cap, kind) for _ in range(int(header))]
        signal.setitimer(signal.ITIMER_REAL, deadline)  # raises between two steps of Python
        faulthandler.dump_traceback_later(deadline + 10, exit=True)  # and ends a step stuck in C
        try:
            for start in range(0, len(values), BATCH):
                batch = values[start:start + BATCH]
                try:
                    vectors = encoder([v.decode("utf-8", "replace") for v in batch] if kind == "text" else batch)
                except clip.ClipError as exc:
                    raise Refused(NOT_A_PATH if any(_looks_like_a_name(v) for v in batch) else exc) from None
                stdout.write(b"".join(_array(v) for v in vectors))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()
        stdout.flush()


NOT_A_PATH = ("it takes an image's bytes, not a path or a URL: read the image with ClickHouse's file(), url() or"
              " s3(), under your own grants, e.g. encode_image((SELECT * FROM url('https://...', RawBLOB)))")


def _looks_like_a_name(value: bytes) -> bool:
    """A path or a URL given where the bytes belong. The answer depends on the argument alone, never
    on the host: every refused path or address gets the same error, which says nothing of the host."""
    return len(value) < 4096 and (value.startswith((b"/", b"./", b"~")) or b"://" in value[:16])


def _late(signum, frame) -> None:
    raise Refused(f"the block took longer than LAION_CLIP_DEADLINE_SECONDS={settings.clip_deadline_seconds():g}"
                  " (send fewer rows per query)")


def _read_string(stdin: BinaryIO, cap: int, kind: str) -> bytes:
    """A RowBinary String: its length, then its bytes, of which at most `cap` are kept. Text past the
    cap is cut (77 tokens never reach it); an image past it is refused, once its bytes are skipped."""
    length = _read_varint(stdin)
    value = stdin.read(min(length, cap))
    left = length - len(value)
    while left > 0:
        left -= len(stdin.read(min(left, SKIP)))
    if length > cap and kind == "image":
        raise Refused(f"an image of {length:,} bytes is over the limit of {cap // 2**20} MiB")
    return value


def _read_varint(stdin: BinaryIO) -> int:
    shift = value = 0
    while True:
        byte = stdin.read(1)
        if not byte:
            raise EOFError("the input ended inside a row")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _array(vector: np.ndarray) -> bytes:
    """A RowBinary Array(Float32): its length as a varint, then the little-endian floats."""
    n, prefix = len(vector), bytearray()
    while n >= 0x80:
        prefix.append((n & 0x7F) | 0x80)
        n >>= 7
    prefix.append(n)
    return bytes(prefix) + vector.astype("<f4").tobytes()
