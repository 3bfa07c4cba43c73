"""The LAION family: which files make a shard of each dataset, which table it goes to, its vectors'
dimension and the CLIP model that made them. Every stage asks its Dataset instead of assuming
LAION-400M's layout; docs/datasets.md says where each is published and from which sources.

Two layouts:
- "npy", the clip-retrieval layout of LAION-400M and LAION-5B: per part, img_emb_N.npy (and
  text_emb_N.npy where published) of float16 vectors, and metadata_N.parquet, row i of each
  describing the same sample. A shard is a part; the worker downloads and converts it.
- "parquet", ClickHouse's public 100M subset of LAION-5B: 10 files of 10M rows, one 768-d vector a
  row. A file is too big for one shard (one graph of 10M rows needs ~20 GB to build), so each file is
  cut into SLICES_PER_FILE slices along its row groups: shard N is slice N % 10 of file N // 10 + 1.
  ClickHouse reads a slice from the source itself (url() or s3()), pruning the other row groups.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from laion_ingest import settings
from laion_ingest.errors import SettingError


@dataclass(frozen=True)
class Model:
    """A CLIP model the query encoders can run, as the vectors of a dataset need it."""
    name: str            # as OpenAI names it
    dim: int
    setting: str         # the environment variable naming its directory (text/, vision/)
    sql_suffix: str      # encode_text<suffix>() and encode_image<suffix>() in SQL
    hub: dict | None = field(compare=False)  # Hugging Face repositories of an ONNX export in our layout
    memory_mb: int = 2048  # default memory ceiling of one SQL function process (docs/security.md)


VIT_B_32 = Model("ViT-B/32", 512, "LAION_CLIP_MODEL_DIR", "",
                 {"text": "Qdrant/clip-ViT-B-32-text", "vision": "Qdrant/clip-ViT-B-32-vision"}, 2048)
# No ONNX export of OpenAI's ViT-L/14 in this layout is published: `python -m laion_ingest
# clip-export` makes one (docs/search.md). Its image process peaks at ~4.3 GiB (batches of 64).
VIT_L_14 = Model("ViT-L/14", 768, "LAION_CLIP_L14_MODEL_DIR", "_l14", None, 6144)
MODELS = {m.name: m for m in (VIT_B_32, VIT_L_14)}

# The metadata columns of clip-retrieval's metadata_N.parquet, in the table's types.
LAION400M_METADATA = pa.schema([
    ("image_path", pa.string()), ("caption", pa.string()), ("NSFW", pa.string()),
    ("similarity", pa.float64()), ("LICENSE", pa.string()), ("url", pa.string()),
    ("key", pa.string()), ("shard_id", pa.int64()), ("status", pa.string()),
    ("error_message", pa.string()), ("width", pa.uint32()), ("height", pa.uint32()),
    ("exif", pa.string()), ("original_width", pa.uint32()), ("original_height", pa.uint32()),
])
LAION5B_METADATA = pa.schema([f for f in LAION400M_METADATA if f.name != "shard_id"] + [("md5", pa.string())])
SLICES_PER_FILE = 10


@dataclass(frozen=True)
class Dataset:
    name: str
    table: str             # the table users query; laion stays laion
    layout: str            # "npy" or "parquet"
    shards: int            # parts (npy) or slices (parquet); shards are 0 .. shards - 1
    model: Model
    vectors: tuple[str, ...]   # the vector columns, each with its HNSW index
    default_url: str
    create_sql: str        # include/sql/<create_sql>.sql makes its table
    metadata_dir: str = "metadata"
    digits: int = 0        # zero-padding of part numbers in file names
    metadata: pa.Schema | None = None
    rows_per_shard: int = 1_000_000   # for plan: img_emb_0 of LAION-400M has 1,000,448
    source_bytes_per_shard: int = 0   # for plan: what a shard downloads

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def indexes(self) -> dict[str, str]:
        """The HNSW index of each vector column: image_index, text_index, or vector_index (the name
        ClickHouse's LAION 5B page gives it)."""
        return {column.split("_")[0] + "_index": column for column in self.vectors}

    @property
    def table_bytes_per_row(self) -> int:
        """A row in the table: its vectors in LAION_VECTOR_TYPE and ~100 bytes of metadata (a
        1,000,448-row LAION-400M shard is 4.1 GB in Float32, bench/RESULTS.md)."""
        return len(self.vectors) * self.dim * settings.VECTOR_TYPES[settings.vector_type()] + 100

    @property
    def ledger(self) -> str:
        """The ledger table: laion_ledger for laion, <table>_ledger for the others."""
        return f"{self.table}_ledger"

    @property
    def search_quality(self) -> str:
        return f"{self.table}_search_quality"

    @property
    def tune_results(self) -> str:
        """What `tune` measured, every candidate of every run."""
        return f"{self.table}_tune"

    def number(self, shard: int) -> str:
        return f"{shard:0{self.digits}d}"

    def files(self, shard: int) -> list[str]:
        """The source files of an npy-layout shard, relative to source_url, as published."""
        n = self.number(shard)
        names = [f"img_emb/img_emb_{n}.npy"]
        if "text_embedding" in self.vectors:
            names.append(f"text_emb/text_emb_{n}.npy")
        return [*names, f"{self.metadata_dir}/metadata_{n}.parquet"]

    def parquet_file(self, shard: int) -> tuple[str, int]:
        """The parquet-layout file a shard (slice) reads, and which of its slices it is."""
        part, piece = divmod(shard, SLICES_PER_FILE)
        return f"laion5b_100m_part_{part + 1}_of_{self.shards // SLICES_PER_FILE}.parquet", piece

    def check_range(self, first: int, last: int) -> None:
        """Refuse a shard range outside the dataset, naming it."""
        if not 0 <= first <= last < self.shards:
            raise SettingError(f"shards {first}..{last} are outside {self.name}, whose shards are"
                               f" 0..{self.shards - 1}")


THE_EYE = "https://mystic.the-eye.eu/public/AI/cah/laion5b/embeddings/"
DATASETS = {d.name: d for d in (
    Dataset("laion400m", "laion", "npy", 410, VIT_B_32, ("image_embedding", "text_embedding"),
            "https://deploy.laion.ai/8f83b608504d46bb81708ec86e912220/embeddings/", "create_laion",
            metadata=LAION400M_METADATA, rows_per_shard=1_000_448, source_bytes_per_shard=2_200_000_000),
    Dataset("laion2b-en", "laion2b_en", "npy", 2314, VIT_L_14, ("image_embedding", "text_embedding"),
            THE_EYE + "laion2B-en/", "create_laion2b", "laion2B-en-metadata", 4, LAION5B_METADATA,
            rows_per_shard=1_000_000, source_bytes_per_shard=3_250_000_000),
    Dataset("laion2b-multi", "laion2b_multi", "npy", 2267, VIT_L_14, ("image_embedding",),
            THE_EYE + "laion2B-multi/", "create_laion2b_images", "laion2B-multi-metadata", 4, LAION5B_METADATA,
            rows_per_shard=1_000_000, source_bytes_per_shard=1_700_000_000),
    Dataset("laion1b-nolang", "laion1b_nolang", "npy", 1271, VIT_L_14, ("image_embedding",),
            THE_EYE + "laion1B-nolang/", "create_laion2b_images", "laion1B-nolang-metadata", 4, LAION5B_METADATA,
            rows_per_shard=1_000_000, source_bytes_per_shard=1_700_000_000),
    Dataset("laion5b-100m", "laion_5b_100m", "parquet", 100, VIT_L_14, ("vector",),
            "https://clickhouse-datasets.s3.amazonaws.com/laion-5b/", "create_laion_5b_100m",
            rows_per_shard=1_000_000, source_bytes_per_shard=0),  # read in place: nothing downloaded
)}


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise SettingError(f"dataset {name[:40]!r} is not one of {', '.join(DATASETS)}") from None
