"""The staged file's writer: a Parquet file whose embedding pages are the .npy bytes as they are.

Why not pyarrow alone: a 512-d embedding is a Parquet list, and pyarrow derives and encodes a
repetition and a definition level for each of its 512 values. For a LAION shard that is a billion
levels: pyarrow alone took 0.69 s for the 100,000-row shard, this writer 0.26 s (bench/RESULTS.md,
convert variants). Here every row of an embedding column has
the same levels, and PLAIN-encoded floats are the little-endian bytes the .npy file already holds,
so a page is a small constant header and levels followed by a slice of the source.

pyarrow still encodes everything else: the other columns of each row group (dictionaries, zstd,
statistics), the schema and the Arrow schema readers use to see fixed-size lists. This module
moves their offsets into place and adds the embedding column chunks; thrift_compact keeps every
footer field it does not touch as pyarrow wrote it. tests/test_convert.py checks the result
against pyarrow's own writer, value by value.
"""
from __future__ import annotations

import io
import struct
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from laion_ingest.thrift_compact import I32, I64, LIST, STRUCT, Struct, read_struct, struct_of, varint, write_struct

MAGIC = b"PAR1"
PAGE_BYTES = 1 << 20  # a data page's values; pyarrow's default page size too
PLAIN, RLE, UNCOMPRESSED, DATA_PAGE = 0, 3, 0, 0


class EmbeddingParquetWriter:
    """Row groups of pyarrow-encoded columns followed by embedding columns, which must be the
    schema's last fields, each a non-nullable fixed-size list of non-nullable floats."""

    def __init__(self, path, schema: pa.Schema, embeddings: list[str], **pyarrow_options):
        self.plain_schema = pa.schema([f for f in schema if f.name not in embeddings])
        if schema.names[len(self.plain_schema):] != embeddings:
            raise ValueError(f"embedding columns {embeddings} must be the schema's last fields")
        self.options = pyarrow_options
        # pyarrow's footer for no rows: the schema, the Arrow schema, and one empty row group whose
        # last column chunks give each embedding's physical type and path in the schema.
        self.footer = _footer(_parquet_bytes(schema.empty_table()))
        (empty,) = self.footer.get(4)[1]
        templates = empty.get(1)[1][-len(embeddings):]
        self.embeddings = [_EmbeddingColumn(schema.field(name), chunk.get(3))
                           for name, chunk in zip(embeddings, templates)]
        self.footer.set(4, LIST, (STRUCT, []))
        self.rows = 0
        self.file: BinaryIO = open(path, "wb")
        self.file.write(MAGIC)

    def write(self, batch: pa.RecordBatch, embeddings: list[bytes]) -> None:
        """One row group: batch holds the other columns, embeddings each column's rows as
        little-endian bytes, row after row (what a C-order .npy holds)."""
        start = self.file.tell()
        plain = _parquet_bytes(pa.Table.from_batches([batch], self.plain_schema),
                               **self.options, row_group_size=max(1, batch.num_rows))  # one row group
        footer_start = _footer_start(plain)
        self.file.write(memoryview(plain)[len(MAGIC):footer_start])
        (group,) = read_struct(plain, footer_start)[0].get(4)[1]
        chunks = group.get(1)[1]
        for chunk in chunks:
            _move_offsets(chunk, start - len(MAGIC))
        for column, data in zip(self.embeddings, embeddings):
            chunks.append(column.write(self.file, data, batch.num_rows))
        group.set(2, I64, sum(c.get(3).get(6) for c in chunks))  # uncompressed bytes
        group.set(5, I64, start)
        group.set(6, I64, self.file.tell() - start)  # bytes in the file
        self.footer.get(4)[1].append(group)
        self.rows += batch.num_rows

    def close(self) -> None:
        self.footer.set(3, I64, self.rows)
        footer = write_struct(self.footer)
        self.file.write(footer + struct.pack("<i", len(footer)) + MAGIC)
        self.file.close()

    def __enter__(self) -> EmbeddingParquetWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.file.close()


class _EmbeddingColumn:
    """One embedding column: pages of PLAIN values with constant RLE levels."""

    def __init__(self, field: pa.Field, template: Struct):
        vector = field.type
        if (field.nullable or not isinstance(vector, pa.FixedSizeListType)
                or vector.value_field.nullable or not pa.types.is_floating(vector.value_type)):
            raise ValueError(f"{field.name}: expected a non-nullable fixed-size list of non-nullable"
                             f" floats, got {field}")
        self.dim = vector.list_size
        self.physical, self.path = template.get(1), template.get(3)
        self.row_bytes = self.dim * vector.value_type.byte_width
        self.page_rows = max(1, PAGE_BYTES // self.row_bytes)
        # Levels (bit width 1, as the schema is required list -> repeated group -> required value,
        # so both maximum levels are 1): a row repeats "one 0, then dim-1 ones"; every value is
        # defined. Each is an RLE run: varint(count << 1), then the value in one byte.
        self.row_rep_levels = varint(1 << 1) + b"\0" + (varint((self.dim - 1) << 1) + b"\1"
                                                          if self.dim > 1 else b"")

    def write(self, out: BinaryIO, data: bytes, rows: int) -> Struct:
        """Write rows as data pages; returns the column chunk's metadata."""
        if len(data) != rows * self.row_bytes:
            raise ValueError(f"{self.path[1][0].decode()}: {len(data)} bytes for {rows} rows of {self.row_bytes}")
        view, start, pages = memoryview(data), out.tell(), 0
        for first in range(0, rows, self.page_rows):
            n = min(self.page_rows, rows - first)
            rep = self.row_rep_levels * n
            defined = varint(n * self.dim << 1) + b"\1"
            size = 8 + len(rep) + len(defined) + n * self.row_bytes
            out.write(write_struct(struct_of(
                (1, I32, DATA_PAGE), (2, I32, size), (3, I32, size),
                (5, STRUCT, struct_of((1, I32, n * self.dim), (2, I32, PLAIN), (3, I32, RLE),
                                      (4, I32, RLE))))))
            out.write(struct.pack("<i", len(rep)) + rep + struct.pack("<i", len(defined)) + defined)
            out.write(view[first * self.row_bytes:(first + n) * self.row_bytes])
            pages += 1
        size = out.tell() - start
        meta = struct_of(
            (1, I32, self.physical), (2, LIST, (I32, [RLE, PLAIN])),
            (3, LIST, self.path), (4, I32, UNCOMPRESSED),
            (5, I64, rows * self.dim), (6, I64, size), (7, I64, size), (9, I64, start),
            (13, LIST, (STRUCT, [struct_of((1, I32, DATA_PAGE), (2, I32, PLAIN), (3, I32, pages))])))
        return struct_of((2, I64, 0), (3, STRUCT, meta))


def _parquet_bytes(table: pa.Table, **options) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return buf.getvalue()


def _footer_start(data: bytes) -> int:
    return len(data) - 8 - struct.unpack_from("<i", data, len(data) - 8)[0]


def _footer(data: bytes) -> Struct:
    return read_struct(data, _footer_start(data))[0]


def _move_offsets(chunk: Struct, by: int) -> None:
    """Shift a column chunk copied `by` bytes further into the file."""
    if any(chunk.has(f) for f in (4, 6)):  # page indexes sit in the footer, which is not copied
        raise ValueError("page indexes are not supported in the staged file")
    meta = chunk.get(3)
    if meta.has(14):
        raise ValueError("bloom filters are not supported in the staged file")
    for fid in (9, 10, 11):  # data, index and dictionary page offsets
        if meta.has(fid):
            meta.set(fid, I64, meta.get(fid) + by)
