"""CLIP inside SQL: the ClickHouse functions encode_text(String) and encode_image(String).

    SELECT url, caption FROM laion
    ORDER BY cosineDistance(image_embedding, encode_text('a dog and a cat')) LIMIT 10

They are `executable_pool` functions (include/udf/clip_functions.xml). Each process of this module
loads the model once and answers chunks of rows, one batch each. The seed's `executable` function
started a process and loaded the model for every query. ClickHouse folds a call on a constant into
a constant before it plans the query, so the ORDER BY above still reads the vector index (EXPLAIN
indexes = 1 shows it; tests/test_clip_udf.py). encode_image takes a file path on the ClickHouse
host or an http(s) URL.

`install(directory)` writes the XML and the script ClickHouse runs into a directory. The script
names this Python, this package and the model directory, because ClickHouse starts it with neither
our environment nor our PATH. The embedded engine installs both beside its data directory whenever
it opens. A server's administrator runs `python -m laion_ingest clip-udf DIR` and adds two lines to
the server config (README).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from laion_ingest import settings

SCRIPT = "laion_clip_udf"
BATCH = 64  # rows per model call: bounds memory whatever the chunk ClickHouse sends


def install(directory: Path) -> Path:
    """Write clip_functions.xml and the script into directory (only what changed); returns it.

    The script first closes every file it inherited but stdin, stdout and stderr. ClickHouse 26.9
    starts a pool process while it handles a query, and the process inherited that client's socket
    (and the listening ones): when the server later closed the idle keep-alive connection, the process
    still held it open, so the client's next query on it waited for an answer that never came (tested)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = os.environ.get("LAION_CLIP_MODEL_DIR")
    script = "\n".join([
        f"#!{sys.executable}",
        "import os, sys",
        "os.closerange(3, os.sysconf('SC_OPEN_MAX'))  # the server's sockets: see clip_udf.install",
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})",
        *([f"os.environ.setdefault('LAION_CLIP_MODEL_DIR', {model!r})"] if model else []),
        "from laion_ingest.clip_udf import serve",
        "serve(sys.argv[1])", ""])
    _write(directory / SCRIPT, script, mode=0o755)
    _write(directory / "clip_functions.xml", (settings.sql_dir().parent / "udf" / "clip_functions.xml").read_text())
    return directory


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    if not path.exists() or path.read_text() != text:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        temporary.chmod(mode)
        temporary.replace(path)  # a process starting the script never sees half of it


def serve(kind: str, stdin=sys.stdin, stdout=sys.stdout) -> None:
    """The pool process: a line with a row count, that many JSON rows, then the answers, until EOF."""
    from laion_ingest import clip

    if kind == "text":
        encoder, argument, prepare = clip.text_encoder(), "text", lambda value: value
    else:
        encoder, argument, prepare = clip.image_encoder(), "source", clip.read_image
    while header := stdin.readline():
        rows = [json.loads(stdin.readline())[argument] for _ in range(int(header))]
        for start in range(0, len(rows), BATCH):
            try:
                vectors = encoder([prepare(value) for value in rows[start:start + BATCH]])
            except clip.ClipError as exc:
                sys.stderr.write(f"encode_{kind}: {exc}\n")
                sys.stderr.flush()
                sys.exit(1)
            stdout.write("".join(json.dumps({"result": v.tolist()}) + "\n" for v in vectors))
        stdout.flush()
