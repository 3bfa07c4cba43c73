"""The parquet layout's way in (ClickHouse's 100M subset of LAION-5B): a shard is a slice of a
10M-row source file, read by ClickHouse from where the file is published; the worker downloads and
converts nothing, and its memory does not grow with the file.

A file is cut into SLICES_PER_FILE slices along its row groups, balanced by rows, as its footer
lists them (read with ParquetMetadata over HTTP Range requests). A slice is selected by the id range
of its row groups' statistics, so the reader skips every other row group (measured here: 21.5 of a
213 MB file's bytes read for a tenth of it). Where the file's row groups have no id statistics, or
overlapping id ranges, or are fewer than the slices, a slice is a range of row numbers instead,
which reads the whole file for each slice (a warning says so). Either way the numbering is the
file's own and never changes, so a slice loads and reloads as one partition, idempotently.

Validation is the load's (rows as the footer counts them, unique ids) plus the vectors': every one
of the dataset's dimension, none with NaN or an infinity, a bad one named by its file and row.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from laion_ingest import staging
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.datasets import SLICES_PER_FILE
from laion_ingest.errors import ShardFileError
from laion_ingest.load import check_disk_space, publish
from laion_ingest.redaction import logger

log = logger(__name__)

BY_ID = "id BETWEEN {first_value:UInt64} AND {last_value:UInt64}"
BY_ROW = "_row_number BETWEEN {first_value:UInt64} AND {last_value:UInt64}"


@dataclass(frozen=True)
class Slice:
    file: str          # the source file's name
    location: str      # where it is read: an http(s) or s3:// URL
    piece: int         # which of the file's slices
    rows: int
    source_bytes: int  # compressed bytes of its row groups
    condition: str     # BY_ID or BY_ROW
    first: int
    last: int


def plan_slice(ch: ClickHouse, source_url: str, shard: int) -> Slice:
    """Which rows of which file make the shard, from the file's footer."""
    name, piece = ch.dataset.parquet_file(shard)
    location = source_url.rstrip("/") + "/" + name
    source, params = staging.parquet_source(location, "ParquetMetadata")
    groups = ch.run("parquet_row_groups", {"source": source}, **params)
    if not groups:
        raise ShardFileError(shard, name, "has no row groups")
    cuts = _boundaries([rows for rows, *_ in groups])
    ids = [(lo, hi) for _, _, lo, hi in groups]
    # By id only if every slice of the file can be: the file's slices must never overlap.
    if all(stop > start for start, stop in cuts) and all(None not in pair for pair in ids) and \
            all(_disjoint(ids, start, stop) for start, stop in cuts):
        first, last = cuts[piece]
        mine = groups[first:last]
        return Slice(name, location, piece, sum(r for r, *_ in mine), sum(b for _, b, *_ in mine), BY_ID,
                     ids[first][0], max(hi for _, hi in ids[first:last]))
    log.warning("shard %d: %s's %d row group(s) cannot be told apart by id; slice %d is read by row number,"
                " which reads the whole file", shard, name, len(groups), piece)
    total = sum(r for r, *_ in groups)
    start, stop = total * piece // SLICES_PER_FILE, total * (piece + 1) // SLICES_PER_FILE
    return Slice(name, location, piece, stop - start, 0, BY_ROW, start, stop - 1)


def _boundaries(rows: list[int]) -> list[tuple[int, int]]:
    """For each slice, its row groups as (first, stop): cut where the running count of rows comes
    nearest to each tenth of the file's rows."""
    ends = list(itertools.accumulate(rows, initial=0))  # rows before each row group, and all of them
    cuts = [0]
    for k in range(1, SLICES_PER_FILE):
        target = ends[-1] * k / SLICES_PER_FILE
        cuts.append(max(min(range(len(ends)), key=lambda i: abs(ends[i] - target)), cuts[-1]))
    cuts.append(len(rows))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _disjoint(ids: list[tuple[int, int]], first: int, last: int) -> bool:
    """Whether the id range of row groups first..last-1 meets no other row group's."""
    lo, hi = min(a for a, _ in ids[first:last]), max(b for _, b in ids[first:last])
    return all(b < lo or a > hi for k, (a, b) in enumerate(ids) if not first <= k < last)


def load_slice(node: ClickHouse, piece: Slice, shard: int) -> int:
    """Read the slice into a staging table on `node`, check it, and publish it as the shard's partition."""
    check_disk_space(node, shard, piece.rows)
    source, params = staging.parquet_source(piece.location)

    def vectors_sound(stage: str) -> None:
        for column in node.dataset.vectors:
            shortest, longest, bad, bad_id = node.run("stage_check_vectors", stage=stage, column=column)[0]
            if shortest != node.dataset.dim or longest != node.dataset.dim:
                raise ShardFileError(shard, piece.file, f"column {column} holds vectors of {shortest}..{longest}"
                                                        f" values; {node.dataset.name} is {node.dataset.dim}-d")
            if bad:
                [(row,)] = node.run("source_row_of_id", {"source": source}, id=bad_id, **params)
                raise ShardFileError(shard, piece.file, f"row {row} (id {bad_id}) holds NaN or infinite values in"
                                                        f" {column}, which a vector index cannot take ({bad} rows)")

    return publish(node, shard, piece.rows, "stage_insert_slice", {"source": source, "condition": piece.condition},
                   check=vectors_sound, first_value=piece.first, last_value=piece.last, **params)
