"""Synthetic mirrors of the LAION family for tests, quickstart and benchmarks, in each dataset's
published layout, file formats and metadata schema (datasets.py), so the pipeline cannot tell the
difference:

    laion400m:     img_emb/img_emb_{N}.npy, text_emb/text_emb_{N}.npy (float16, (rows, 512), unit rows)
                   and metadata/metadata_{N}.parquet (LAION-400M's 15 columns)
    laion2b-en:    the same with 768-d vectors, 4-digit part numbers and laion2B-en-metadata/ (LAION-5B's
                   columns: md5, no shard_id); laion2b-multi and laion1b-nolang: no text_emb/
    laion5b-100m:  laion5b_100m_part_{K}_of_10.parquet, ClickHouse's columns with a 768-d `vector`
                   list, ids increasing from (K - 1) * 10,000,000, two row groups per slice

Row i of a part's files describes the same sample. Everything is derived from (seed, shard), so
regenerating a shard reproduces it byte for byte.
"""

import contextlib
import functools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from laion_ingest import datasets
from laion_ingest.datasets import SLICES_PER_FILE

# Rows generated per step (and metadata row-group size). Bounds memory: the
# work buffers take ~40 MB, and a 1M-row shard peaks at ~220 MB RSS, ~130 MB
# of which is numpy/pyarrow/pandas themselves.
CHUNK = 8_192
# Clusters shared by all shards, so nearest-neighbour search has real
# structure and ANN recall measured on one shard means something.
CLUSTERS = 128
# The noise vector's norm is ~0.7 of the unit centre, so rows have cosine ~0.8 to their centre and
# ~0 to other clusters; text = image + noise of ~0.9, a cosine of ~0.75 between a row's two vectors.
IMG_NOISE, TEXT_NOISE = 0.7, 0.9
# The hard variant (`mirror --hard`, for tune and the index bench): easy data reaches recall@10 of 1.0
# with any graph. Thousands of clusters whose centres and noise have a power-law spectrum (the k-th
# principal direction's variance ~ 1/k, as real embeddings' decays), so clusters overlap in the few
# directions that carry most of the variance; text vectors offset from their images along one
# shared direction (CLIP's "modality gap": a caption's vector is nearer other captions than its image,
# cosine ~0.4 to its image).
HARD_CLUSTERS, HARD_IMG_NOISE, HARD_GAP, HARD_TEXT_NOISE = 4096, 0.9, 2.0, 1.0
PARQUET_ID_BASE = 10_000_000  # laion5b-100m: file K's ids start at (K - 1) * this

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

PARQUET_SCHEMA = pa.schema([
    ("id", pa.uint32()), ("image_path", pa.string()), ("caption", pa.string()), ("NSFW", pa.string()),
    ("similarity", pa.float32()), ("LICENSE", pa.string()), ("url", pa.string()), ("key", pa.string()),
    ("status", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("original_width", pa.int32()),
    ("original_height", pa.int32()), ("exif", pa.string()), ("md5", pa.string()), ("vector", pa.list_(pa.float32())),
])

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
                    image_url: str | None = None, dataset: str = "laion400m", hard: bool = False) -> dict[int, int]:
    """Write the given shards of a dataset's layout under out_dir; return {shard: actual row count}.
    Image URLs point at image_url (a MirrorServer's url, which draws /photos/<key>.jpg) or at
    example.com's hosts. For laion5b-100m the unit written is a file: every file that holds one of
    the shards, whole. hard: the vectors of the hard variant (HARD_CLUSTERS)."""
    d = datasets.get(dataset)
    if d.layout == "parquet":
        counts: dict[int, int] = {}
        for part in sorted({shard // SLICES_PER_FILE for shard in shards}):
            counts.update(generate_parquet_file(out_dir, d, part, rows, seed, image_url, hard))
        return {shard: counts[shard] for shard in shards}
    return {shard: generate_shard(out_dir, shard, rows, seed, image_url, d, hard) for shard in shards}


def sample_mirror(out_dir, shards: int, rows: int, image_url: str | None = None, dataset: str = "laion400m") -> Path:
    """Shards 0..shards-1 of a dataset under out_dir, generated unless a previous run finished them
    (a marker file is written last); the quickstart's, `make ui`'s and bench/search.py's sample."""
    out = Path(out_dir)
    done = out / f".generated-{dataset}-{shards}-{rows}"
    if not done.exists():
        print(f"generating {shards} shards of ~{rows:,} rows of {dataset} in {out} ...", flush=True)
        generate_mirror(out, range(shards), rows, image_url=image_url, dataset=dataset)
        done.touch()
    return out


def generate_shard(out_dir, shard: int, rows: int, seed: int = 0, image_url: str | None = None,
                   dataset: datasets.Dataset = datasets.DATASETS["laion400m"], hard: bool = False) -> int:
    """Write one shard's files of an npy-layout dataset (nominal size `rows`); return its actual row count.

    Streams in CHUNK-row steps, so memory stays flat whatever the size. The
    .npy files are written as header + raw appends rather than through
    numpy's open_memmap, whose dirty pages would count toward RSS (~1 GB each
    for a 1M-row shard).
    """
    out = Path(out_dir)
    *vector_files, meta_file = dataset.files(shard)
    for name in dataset.files(shard):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
    n, dim = shard_rows(rows, shard), dataset.dim
    schema = _npy_metadata_schema(dataset)
    with contextlib.ExitStack() as files:
        npys = [files.enter_context(open(out / name, "wb")) for name in vector_files]
        meta = files.enter_context(pq.ParquetWriter(out / meta_file, schema))
        for f in npys:
            _write_npy_header(f, n, dim)
        for start, stop, labels, image, text in _vectors(seed, shard, n, dim, hard):
            for f, v in zip(npys, (image, text), strict=False):
                f.write(v.astype(np.float16).data)
            rng = np.random.default_rng([seed, shard, start, 1])
            meta.write_batch(_metadata(rng, shard, start, stop, labels, image_url, schema))
    return n


def generate_parquet_file(out_dir, dataset: datasets.Dataset, part: int, rows: int, seed: int = 0,
                          image_url: str | None = None, hard: bool = False) -> dict[int, int]:
    """Write file part + 1 of the parquet layout: SLICES_PER_FILE slices of `rows` rows (the last 7
    more, so the file's count is not round), two row groups each; return {shard: rows}."""
    counts = {part * SLICES_PER_FILE + piece: rows + 7 * (piece == SLICES_PER_FILE - 1)
              for piece in range(SLICES_PER_FILE)}
    name, _ = dataset.parquet_file(part * SLICES_PER_FILE)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(Path(out_dir) / name, PARQUET_SCHEMA) as out:
        first_id = part * PARQUET_ID_BASE
        for shard, n in counts.items():
            for start, stop, labels, image, _ in _vectors(seed, shard, n, dataset.dim, hard):
                rng = np.random.default_rng([seed, shard, start, 1])
                meta = _metadata(rng, shard, start, stop, labels, image_url, SCHEMA)
                batch = _parquet_rows(meta, np.arange(first_id + start, first_id + stop, dtype=np.uint32), image)
                for half in (batch.slice(0, batch.num_rows // 2), batch.slice(batch.num_rows // 2)):
                    out.write_table(pa.Table.from_batches([half]))
            first_id += n
    return counts


def _vectors(seed: int, shard: int, n: int, dim: int, hard: bool = False):
    """(start, stop, cluster labels, image vectors, text vectors) for rows 0..n-1 of a shard, CHUNK at
    a time: unit image vectors around the shared cluster centres, text vectors near their images."""
    centres = cluster_centres(seed, dim)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        rng = np.random.default_rng([seed, shard, start])
        if hard:
            yield start, stop, *_hard_vectors(rng, stop - start, seed, dim)
            continue
        labels = rng.integers(0, CLUSTERS, stop - start)
        image = centres[labels] + rng.standard_normal((stop - start, dim), dtype=np.float32) * IMG_NOISE / np.sqrt(dim)
        _unit(image)
        text = image + rng.standard_normal((stop - start, dim), dtype=np.float32) * TEXT_NOISE / np.sqrt(dim)
        yield start, stop, labels, image, _unit(text)


def _hard_vectors(rng: np.random.Generator, n: int, seed: int, dim: int):
    """n rows of the hard variant: (labels, image vectors, text vectors)."""
    spectrum, centres, gap = _hard_space(seed, dim)
    labels = rng.integers(0, HARD_CLUSTERS, n)
    image = centres[labels] + HARD_IMG_NOISE * _unit(rng.standard_normal((n, dim), dtype=np.float32) @ spectrum)
    _unit(image)
    text = image + HARD_GAP * gap + HARD_TEXT_NOISE * _unit(rng.standard_normal((n, dim), dtype=np.float32) @ spectrum)
    return labels, image, _unit(text)


@functools.lru_cache(maxsize=4)
def _hard_space(seed: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random rotation scaled to a power-law spectrum, the cluster centres drawn through it, and the
    direction text vectors are offset along."""
    rng = np.random.default_rng([seed, dim, 7])
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = (rotation * np.arange(1, dim + 1) ** -0.5).T.astype(np.float32)
    centres = _unit(rng.standard_normal((HARD_CLUSTERS, dim), dtype=np.float32) @ spectrum)
    return spectrum, centres, _unit(rng.standard_normal((1, dim), dtype=np.float32))[0]


def cluster_centres(seed: int = 0, dim: int = 512) -> np.ndarray:
    """The unit centres the rows of every shard cluster around; captions' nouns follow them."""
    return _unit(np.random.default_rng(seed if dim == 512 else [seed, dim]).standard_normal((CLUSTERS, dim),
                                                                                          dtype=np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    """Normalise rows in place, without a full-size temporary."""
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x


def _write_npy_header(f, n: int, dim: int) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
            "fortran_order": False, "shape": (n, dim)})


def _npy_metadata_schema(dataset: datasets.Dataset) -> pa.Schema:
    """The metadata file's columns as published: LAION-400M's, or LAION-5B's (md5, no shard_id)."""
    if "shard_id" in dataset.metadata.names:
        return SCHEMA
    return pa.schema([f for f in SCHEMA if f.name != "shard_id"] + [("md5", pa.string())])


def _parquet_rows(meta: pa.RecordBatch, ids: np.ndarray, image: np.ndarray) -> pa.RecordBatch:
    """ClickHouse's laion_5b_100m columns from the metadata: its types, its `vector` list."""
    column = {name: meta.column(name) for name in meta.schema.names}
    n, dim = image.shape
    vector = pa.ListArray.from_arrays(pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32)),
                                      pa.array(image.astype(np.float32).ravel()))
    values = [pa.array(ids), column["image_path"], pc.fill_null(column["caption"], ""), column["NSFW"],
              column["similarity"].cast(pa.float32()), column["LICENSE"], column["url"], column["key"],
              column["status"], *(column[c].cast(pa.int32()) for c in ("width", "height", "original_width",
                                                                        "original_height")),
              column["exif"], pa.array([f"{k:0>32}" for k in column["key"].to_pylist()]), vector]
    return pa.RecordBatch.from_arrays(values, schema=PARQUET_SCHEMA)


def _choice(rng, values, p, n, null_p=0.0) -> pa.Array:
    """n strings drawn from values with probabilities p, built without Python loops."""
    idx = pa.array(rng.choice(len(values), n, p=p).astype(np.int32),
                   mask=rng.random(n) < null_p if null_p else None)
    return pa.DictionaryArray.from_arrays(idx, pa.array(values)).dictionary_decode()


def _metadata(rng, shard: int, start: int, stop: int, labels: np.ndarray, image_url: str | None,
              schema: pa.Schema = SCHEMA) -> pa.RecordBatch:
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
    batch = pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
    if "md5" in schema.names:  # LAION-5B's metadata: md5 of the image, no shard_id
        batch = pa.RecordBatch.from_arrays([*(batch.column(f.name) for f in schema if f.name != "md5"),
                                            pa.array([f"{k:0>32}" for k in keys])], schema=schema)
    return batch

