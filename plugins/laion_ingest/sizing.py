"""What a shard range costs before a byte is fetched: rows, downloads, disk, the HNSW indexes' RAM
per node, the cache they need, and the build's core-hours (`python -m laion_ingest plan`).

The numbers come from ClickHouse's memory formula for an HNSW index (index.index_bytes) and from
what was measured on this project's machines (the constants below, with where they come from). A
graph must be whole in memory to be built, and in `vector_similarity_index_cache_size` to be
searched without being read from disk on every query (the cache held ~1.24x the files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from laion_ingest.index import CACHE_PER_INDEX_BYTE, IndexParams, index_bytes
from laion_ingest.load import TABLE_BYTES_PER_ROW

ROWS_PER_SHARD = 1_000_448  # img_emb_0's rows; LAION-400M's 410 shards hold about 400M rows
DOWNLOAD_BYTES_PER_SHARD = 2_200_000_000  # two float16 .npy of ~1 GB and ~150 MB of metadata (BRIEF.md)
# Build CPU per row and column with the seed's (M=64, ef_construction=256): 960-1,180 rows/s for both
# columns on 2 cores (bench/RESULTS.md), i.e. ~0.001 core-second. (32, 128) measured ~0.45x of that
# and (16, 64) ~0.26x: sqrt(M x ef_construction / (64 x 256)) fits both within ~15 %.
BUILD_CORE_SECONDS_PER_ROW = 0.00095


@dataclass(frozen=True)
class Sizing:
    shards: int
    nodes: int
    rows: int
    download_bytes: int
    table_bytes: int            # rows with Float32 vectors, the whole range
    index_bytes_per_column: int  # one column's graph, the whole range
    ram_per_column_per_node: int  # the most any node holds (shards are whole on a node)
    cache_per_node: int          # both columns' graphs, as the index cache holds them
    build_core_hours: float      # both columns
    ram_per_node: int
    cache_per_shard: int         # both columns' graphs of one shard, cached

    @property
    def fits(self) -> bool:
        return self.cache_per_node <= self.ram_per_node

    @property
    def nodes_needed(self) -> int:
        """Nodes of ram_per_node each for both columns' graphs to stay cached (whole shards a node)."""
        shards_per_node = self.ram_per_node // self.cache_per_shard
        return math.ceil(self.shards / shards_per_node) if shards_per_node else 0


def build_core_seconds(rows: int, params: IndexParams) -> float:
    """Both columns' build CPU (see BUILD_CORE_SECONDS_PER_ROW)."""
    return 2 * rows * BUILD_CORE_SECONDS_PER_ROW * math.sqrt(params.m * params.ef_construction / (64 * 256))


def estimate(first: int, last: int, params: IndexParams, nodes: int = 1, ram_gb: float = 256,
             rows_per_shard: int = ROWS_PER_SHARD) -> Sizing:
    shards = last - first + 1
    rows = shards * rows_per_shard
    per_node_rows = math.ceil(shards / nodes) * rows_per_shard
    per_column = index_bytes(per_node_rows, params)
    return Sizing(shards=shards, nodes=nodes, rows=rows, download_bytes=shards * DOWNLOAD_BYTES_PER_SHARD,
                  table_bytes=rows * TABLE_BYTES_PER_ROW, index_bytes_per_column=index_bytes(rows, params),
                  ram_per_column_per_node=per_column, cache_per_node=int(2 * per_column * CACHE_PER_INDEX_BYTE),
                  build_core_hours=build_core_seconds(rows, params) / 3600, ram_per_node=int(ram_gb * 1e9),
                  cache_per_shard=int(2 * index_bytes(rows_per_shard, params) * CACHE_PER_INDEX_BYTE))


def report(s: Sizing, params: IndexParams) -> str:
    gb = lambda n: f"{n / 1e9:,.0f} GB" if n >= 1e10 else f"{n / 1e9:,.1f} GB"  # noqa: E731
    lines = [
        f"shards: {s.shards} (about {s.rows:,} rows at {ROWS_PER_SHARD:,} a shard)",
        f"index: {params.type_full()} on image_embedding and text_embedding",
        f"download: {gb(s.download_bytes)}; the work directory holds 4.3 GB per shard in flight",
        f"table on disk: {gb(s.table_bytes)} of rows + {gb(2 * s.index_bytes_per_column)} of indexes",
        f"index RAM per column: {gb(s.index_bytes_per_column)} in all; {gb(s.ram_per_column_per_node)} on the"
        f" fullest of {s.nodes} node(s) (a graph is built and searched whole in memory)",
        f"vector_similarity_index_cache_size per node: at least {gb(s.cache_per_node)} (both columns; default 5 GB)",
        f"index build: about {s.build_core_hours:,.0f} core-hours ({s.build_core_hours / 16:,.1f} h on 16 cores)",
        f"fits {s.nodes} node(s) of {gb(s.ram_per_node)} RAM: {'yes' if s.fits else 'no'}"
        f" (nodes needed at {gb(s.ram_per_node)}: {s.nodes_needed or 'none: one shard does not fit'})",
    ]
    return "\n".join(lines)
