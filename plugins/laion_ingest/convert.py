"""Stage 2: turn a shard's .npy files and its metadata Parquet into one Parquet file.

The output has the columns of the dataset's table, in its order: id, shard and row first, then
the metadata columns cast losslessly to the table's types, then the embeddings (both, or the image's
alone where no text vectors are published) as fixed-size lists of the source's float type (float16
for LAION, which ClickHouse widens to Float32 exactly), of the dataset's dimension. Work is streamed
in row batches: the .npy files and the metadata are read batch by batch, so memory does not grow
with the shard. pyarrow writes the file.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from laion_ingest.datasets import Dataset
from laion_ingest.errors import ShardFileError
from laion_ingest.progress import Progress
from laion_ingest.redaction import logger

log = logger(__name__)

ID_BASE = 1_000_000_000  # id = shard * ID_BASE + row; a shard can never reach 10^9 rows (2 TB of .npy)
BATCH_ROWS = 16_384
BATCH_BYTES = 64 << 20  # at most this much of the source in memory per batch (1 MiB captions exist)

NOT_NULL = ("image_path", "url", "key")  # String, not Nullable, in the table


def staged_name(dataset: Dataset, shard: int) -> str:
    return f"{dataset.table}_{shard}.parquet"


def convert_shard(dataset: Dataset, shard: int, src_dir: Path, out_path: Path, batch_rows: int = BATCH_ROWS) -> int:
    """Write out_path from the files fetch_shard put in src_dir; returns the number of rows."""
    *npy_names, meta_name = dataset.files(shard)
    meta = _open_metadata(dataset, shard, src_dir, meta_name)
    with contextlib.ExitStack() as files:
        npys = [files.enter_context(NpyRows(shard, src_dir, name, dataset.dim)) for name in npy_names]
        rows = meta.metadata.num_rows
        for name, npy in zip(npy_names, npys, strict=True):
            if npy.rows != rows:
                raise ShardFileError(shard, name, f"has {npy.rows} rows but {meta_name} has {rows}")
            if npy.dtype != npys[0].dtype:
                raise ShardFileError(shard, name, f"holds {npy.dtype}, but {npy_names[0]} holds {npys[0].dtype}")
        if rows >= ID_BASE:
            raise ShardFileError(shard, meta_name, f"{rows} rows do not fit the id scheme (< {ID_BASE})")

        schema = staged_schema(dataset, pa.from_numpy_dtype(npys[0].dtype))
        plain = schema.names[:-len(npys)]
        part = out_path.with_name(out_path.name + ".part")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        progress = Progress(f"convert shard {shard}", rows, unit="rows", scale=1, logger=log)
        start = 0
        # Embeddings are incompressible and never filtered on: stored plain, without dictionary,
        # statistics or compression (options of a nested column are keyed by its leaf's path).
        leaves = [f"{column}.list.element" for column in dataset.vectors]
        try:
            with pq.ParquetWriter(part, schema, compression={n: "zstd" for n in plain} | {n: "none" for n in leaves},
                                  use_dictionary=plain, write_statistics=plain) as out:
                # One reader thread: Arrow's reader threads each keep an allocator heap of their own.
                row_bytes = len(npys) * dataset.dim * npys[0].dtype.itemsize
                rows_per_batch = _rows_per_batch(meta, row_bytes, batch_rows)
                for batch in meta.iter_batches(batch_size=rows_per_batch, columns=dataset.metadata.names,
                                               use_threads=False):
                    n = batch.num_rows
                    columns = [*key_columns(shard, start, n), *cast_metadata(dataset, shard, meta_name, batch),
                               *(npy.vectors(n) for npy in npys)]
                    out.write_batch(pa.record_batch(columns, schema=schema), row_group_size=rows_per_batch)
                    start += n
                    progress.advance(n)
        except OSError as exc:  # a full disk, say: name the file, free its space; the retry starts over
            part.unlink(missing_ok=True)
            raise OSError(exc.errno, f"shard {shard}: writing {part}: {exc}") from exc
    part.rename(out_path)
    progress.finish()
    return rows


def staged_schema(dataset: Dataset, value_type: pa.DataType) -> pa.Schema:
    """The staged file's columns: the table's, with the embeddings as fixed-size lists of value_type,
    not nullable, nor their values (no definition levels to write or read)."""
    vector = vector_type(value_type, dataset.dim)
    return pa.schema([("id", pa.uint64()), ("shard", pa.uint16()), ("row", pa.uint32()), *dataset.metadata,
                      *(pa.field(column, vector, nullable=False) for column in dataset.vectors)])


def vector_type(value_type: pa.DataType, dim: int) -> pa.DataType:
    return pa.list_(pa.field("item", value_type, nullable=False), dim)


def key_columns(shard: int, start: int, n: int) -> list[pa.Array]:
    """id, shard and row of the shard's rows start .. start + n - 1."""
    row = np.arange(start, start + n, dtype=np.uint32)
    return [pa.array(row.astype(np.uint64) + np.uint64(shard * ID_BASE)),
            pa.array(np.full(n, shard, dtype=np.uint16)), pa.array(row)]


class NpyRows:
    """Rows of a .npy file, as little-endian bytes, read in order with plain reads. A memory map
    would do the same, but its pages count as the process's memory and stay resident: for a 1 GB
    file, 1 GB of RSS."""

    def __init__(self, shard: int, src_dir: Path, name: str, dim: int):
        path = Path(src_dir) / name
        self.dim = dim
        try:
            self.file = open(path, "rb")
        except FileNotFoundError:
            raise ShardFileError(shard, name, f"missing ({path})") from None
        self.shard, self.name, self.next_row = shard, name, 0
        try:
            self.dtype, self.rows = self._header(shard, name)
        except BaseException:
            self.file.close()
            raise

    def _header(self, shard: int, name: str) -> tuple[np.dtype, int]:
        try:
            version = np.lib.format.read_magic(self.file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(self.file)
        except Exception as exc:
            raise ShardFileError(shard, name, f"not a valid .npy file: {exc}") from exc
        if len(shape) != 2 or shape[1] != self.dim or fortran:
            raise ShardFileError(shard, name, f"shape {shape}{' (Fortran order)' if fortran else ''},"
                                              f" expected (rows, {self.dim}): the dataset's vectors are {self.dim}-d")
        if dtype.kind != "f":
            raise ShardFileError(shard, name, f"dtype {dtype}, expected a float type")
        return dtype, shape[0]

    def vectors(self, n: int) -> pa.FixedSizeListArray:
        """The next n rows as the staged file's vector column (the .npy bytes, not copied)."""
        values = pa.array(np.frombuffer(self.read(n), self.dtype.newbyteorder("<")))
        return pa.FixedSizeListArray.from_arrays(values, type=vector_type(values.type, self.dim))

    def read(self, n: int) -> bytes:
        """The next n rows, as little-endian bytes."""
        row_bytes = self.dim * self.dtype.itemsize
        data = self.file.read(n * row_bytes)
        if len(data) < n * row_bytes:
            raise ShardFileError(self.shard, self.name, f"ends in row {self.next_row + len(data) // row_bytes}"
                                                        f" of the {self.rows} its header announces")
        if self.dtype.byteorder == ">":
            data = np.frombuffer(data, self.dtype).astype(self.dtype.newbyteorder("<")).tobytes()
        finite = np.isfinite(np.frombuffer(data, self.dtype.newbyteorder("<")))
        if not finite.all():  # ClickHouse refuses to index NaN or Inf: caught here, not hours later
            row = self.next_row + int(np.argmin(finite.reshape(n, self.dim).all(axis=1)))
            raise ShardFileError(self.shard, self.name, f"row {row} holds NaN or infinite values, which a vector"
                                                        " index cannot take")
        self.next_row += n
        return data

    def __enter__(self) -> NpyRows:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def _rows_per_batch(meta: pq.ParquetFile, vector_bytes: int, most: int) -> int:
    """Rows per batch so that a batch holds about BATCH_BYTES: LAION's ~2.5 KB rows make the
    batches `most` rows, a shard of 1 MiB captions makes them a few dozen. The rows' size is the
    metadata's uncompressed bytes per row in its largest row group. (A reader also holds one whole
    page of the source, which the source's writer sized: pyarrow's default of 1024 values a page
    makes 1 GB pages of 1 MiB captions, beyond any reader's control.)"""
    md = meta.metadata
    per_row = max((md.row_group(i).total_byte_size / max(md.row_group(i).num_rows, 1)
                   for i in range(md.num_row_groups)), default=0)
    return int(max(1, min(most, BATCH_BYTES // (per_row + vector_bytes))))


def _open_metadata(dataset: Dataset, shard: int, src_dir: Path, name: str) -> pq.ParquetFile:
    path = Path(src_dir) / name
    try:
        meta = pq.ParquetFile(path)
    except FileNotFoundError:
        raise ShardFileError(shard, name, f"missing ({path})") from None
    except Exception as exc:
        raise ShardFileError(shard, name, f"not a valid Parquet file: {exc}") from exc
    missing = [c for c in dataset.metadata.names if c not in meta.schema_arrow.names]
    if missing:
        raise ShardFileError(shard, name, f"missing columns {missing}")
    return meta


def cast_metadata(dataset: Dataset, shard: int, name: str, batch: pa.RecordBatch) -> list[pa.Array]:
    """The batch's metadata columns in the table's types; a value that would change is an error."""
    columns = []
    for field in dataset.metadata:
        col = batch.column(field.name)
        try:
            col = col.cast(field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ShardFileError(shard, name, f"column {field.name}: {exc}") from exc
        if field.name in NOT_NULL and col.null_count:
            raise ShardFileError(shard, name, f"column {field.name} has {col.null_count} nulls")
        columns.append(col)
    return columns
