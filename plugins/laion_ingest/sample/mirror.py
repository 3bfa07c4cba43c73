"""Synthetic LAION-400M mirror for tests, quickstart and benchmarks.

Writes the same layout, file formats and metadata schema as
https://the-eye.eu/public/AI/cah/laion400m-met-release/laion400m-embeddings/
so the pipeline cannot tell the difference:

    out_dir/img_emb/img_emb_{N}.npy          float16 (rows, 512), unit-norm rows
    out_dir/text_emb/text_emb_{N}.npy        float16 (rows, 512), unit-norm rows
    out_dir/metadata/metadata_{N}.parquet    the 15 LAION-400M columns

Row i of the three files describes the same sample. Everything is derived
from (seed, shard), so regenerating a shard reproduces it byte for byte.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIM = 512
# Rows generated per step (and metadata row-group size). Bounds memory: the
# work buffers take ~40 MB, and a 1M-row shard peaks at ~220 MB RSS, ~130 MB
# of which is numpy/pyarrow/pandas themselves.
CHUNK = 8_192
# Clusters shared by all shards, so nearest-neighbour search has real
# structure and ANN recall measured on one shard means something.
CLUSTERS = 128
# Per-dimension noise; the noise vector's norm is ~0.7 of the unit centre, so
# rows have cosine ~0.8 to their centre and ~0 to other clusters.
IMG_NOISE = 0.7 / np.sqrt(DIM)
# Text = image + noise; gives a cosine of ~0.75 between a row's two embeddings.
TEXT_NOISE = 0.9 / np.sqrt(DIM)

SCHEMA = pa.schema(
    [
        ("image_path", pa.string()),
        ("caption", pa.string()),
        ("NSFW", pa.string()),
        ("similarity", pa.float64()),
        ("LICENSE", pa.string()),
        ("url", pa.string()),
        ("key", pa.string()),
        ("shard_id", pa.int64()),
        ("status", pa.string()),
        ("error_message", pa.null()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("exif", pa.string()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
    ]
)

LONG_CAPTION = "Long caption: " + "lorem ipsum dolor sit amet, consectetur adipiscing elit; " * 72
# Captions that break naive CSV/TSV/JSON quoting. Special k sits on every row
# i with i % 100 == SPECIAL_ROW + SPECIAL_STEP * k: each one appears in the
# first 100 rows of every shard and then once per 100 rows (so ~1% nulls).
SPECIAL_CAPTIONS = (
    'She said "hello" and it\'s 5 o\'clock',
    "tab\tseparated\tcaption",
    "first line\nsecond line",
    "windows line\r\nending",
    "back\\slash C:\\temp\\new \\\\server\\share \\N",
    "日本語のキャプション 猫 🐱🚀 café naïve Zürich",
    "",
    None,
    LONG_CAPTION,
)
SPECIAL_ROW, SPECIAL_STEP = 3, 11

ADJECTIVES = ("red", "small", "vintage", "modern", "happy", "wooden", "bright", "old")
NOUNS = ("cat", "house", "car", "dress", "mountain", "phone", "flower", "chair",
         "guitar", "pizza", "beach", "book", "watch", "dog", "lamp", "shoe")
NSFW = ("UNLIKELY", "UNSURE", "NSFW")
LICENSES = ("?", "https://creativecommons.org/licenses/by/4.0/")
EXIF = ("{}", '{"Image Make": "Canon", "Image Model": "Canon EOS 5D"}',
        '{"Image Orientation": "Horizontal (normal)", "EXIF ColorSpace": "sRGB"}')


def shard_rows(rows: int, shard: int) -> int:
    """Actual row count of `shard` for nominal size `rows`.

    Adds 7 + 32 * (shard % 32): an odd offset, so a round nominal size never
    yields a round (or chunk-aligned) count and shards differ in length, as
    real LAION shards do (20000 -> 20007, 20039, 20071, ...).
    """
    return rows + 7 + 32 * (shard % 32)


def generate_mirror(out_dir, shards=range(4), rows: int = 20_000, seed: int = 0,
                    image_url: str | None = None) -> dict[int, int]:
    """Write the given shards under out_dir; return {shard: actual row count}. Image URLs point at
    image_url (a MirrorServer's url, which draws /photos/<key>.jpg) or at example.com's hosts."""
    return {shard: generate_shard(out_dir, shard, rows, seed, image_url) for shard in shards}


def sample_mirror(out_dir, shards: int, rows: int, image_url: str | None = None) -> Path:
    """Shards 0..shards-1 under out_dir, generated unless a previous run finished them (the last
    shard's metadata is written last); the quickstart's, `make ui`'s and bench/search.py's sample."""
    out = Path(out_dir)
    if not (out / "metadata" / f"metadata_{shards - 1}.parquet").exists():
        print(f"generating {shards} shards of ~{rows:,} rows in {out} ...", flush=True)
        generate_mirror(out, range(shards), rows, image_url=image_url)
    return out


def generate_shard(out_dir, shard: int, rows: int, seed: int = 0, image_url: str | None = None) -> int:
    """Write one shard's three files (nominal size `rows`); return its actual row count.

    Streams in CHUNK-row steps, so memory stays flat whatever the size. The
    .npy files are written as header + raw appends rather than through
    numpy's open_memmap, whose dirty pages would count toward RSS (~1 GB each
    for a 1M-row shard).
    """
    out = Path(out_dir)
    for sub in ("img_emb", "text_emb", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    n = shard_rows(rows, shard)
    centres = cluster_centres(seed)
    img = np.empty((min(n, CHUNK), DIM), np.float32)
    text = np.empty_like(img)
    with open(out / f"img_emb/img_emb_{shard}.npy", "wb") as img_f, \
            open(out / f"text_emb/text_emb_{shard}.npy", "wb") as text_f, \
            pq.ParquetWriter(out / f"metadata/metadata_{shard}.parquet", SCHEMA) as meta:
        for f in (img_f, text_f):
            _write_npy_header(f, n)
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            rng = np.random.default_rng([seed, shard, start])
            labels = rng.integers(0, CLUSTERS, stop - start)
            i, t = img[: stop - start], text[: stop - start]
            np.take(centres, labels, axis=0, out=i)
            rng.standard_normal(dtype=np.float32, out=t)
            t *= IMG_NOISE
            i += t
            _unit(i)
            rng.standard_normal(dtype=np.float32, out=t)
            t *= TEXT_NOISE
            t += i
            _unit(t)
            img_f.write(i.astype(np.float16).data)
            text_f.write(t.astype(np.float16).data)
            meta.write_batch(_metadata(rng, shard, start, stop, labels, image_url))
    return n


def cluster_centres(seed: int = 0) -> np.ndarray:
    """The unit centres the rows of every shard cluster around; captions' nouns follow them."""
    return _unit(np.random.default_rng(seed).standard_normal((CLUSTERS, DIM), dtype=np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    """Normalise rows in place, without a full-size temporary."""
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x


def _write_npy_header(f, n: int) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
            "fortran_order": False, "shape": (n, DIM)})


def _choice(rng, values, p, n, null_p=0.0) -> pa.Array:
    """n strings drawn from values with probabilities p, built without Python loops."""
    idx = pa.array(rng.choice(len(values), n, p=p).astype(np.int32),
                   mask=rng.random(n) < null_p if null_p else None)
    return pa.DictionaryArray.from_arrays(idx, pa.array(values)).dictionary_decode()


def _metadata(rng, shard: int, start: int, stop: int, labels: np.ndarray, image_url: str | None) -> pa.RecordBatch:
    """Metadata rows start..stop; the caption's noun follows the embedding's cluster."""
    n = stop - start
    keys = [f"{shard:05d}{i:07d}" for i in range(start, stop)]
    adjectives = rng.integers(0, len(ADJECTIVES), n).tolist()
    captions = [f"{ADJECTIVES[a]} {NOUNS[c % len(NOUNS)]} #{i}"
                for a, c, i in zip(adjectives, labels.tolist(), range(start, stop), strict=True)]
    for k, caption in enumerate(SPECIAL_CAPTIONS):
        first = (SPECIAL_ROW + SPECIAL_STEP * k - start) % 100
        captions[first::100] = [caption] * len(range(first, n, 100))
    width = rng.integers(64, 1025, n)
    height = rng.integers(64, 1025, n)
    scale = rng.integers(1, 5, n)
    columns = [
        pa.array(keys),
        pa.array(captions, pa.string()),
        _choice(rng, NSFW, [0.92, 0.05, 0.03], n),
        pa.array(rng.uniform(0.28, 0.45, n)),
        _choice(rng, LICENSES, [0.97, 0.03], n),
        pa.array([f"{image_url or f'https://img{i % 4}.example.com/'}photos/{k}.jpg" for i, k in enumerate(keys)]),
        pa.array(keys),
        pa.repeat(pa.scalar(shard, pa.int64()), n),
        pa.repeat(pa.scalar("success"), n),
        pa.nulls(n),
        pa.array(width),
        pa.array(height),
        _choice(rng, EXIF, [0.85, 0.1, 0.05], n, null_p=0.05),
        pa.array(width * scale),
        pa.array(height * scale),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)

