"""What a shard range costs before a byte is fetched: rows, downloads, disk, the HNSW indexes' RAM
per node, the cache they need, and the build's core-hours (`python -m laion_ingest plan`).

The index's bytes per row and build rate are what `tune` measured for the setting on a shard of the
user's data where it has (index.Measured); else ClickHouse's memory formula for an HNSW index
(index.index_bytes) and what was measured on this project's machines (the constant below). A
graph must be whole in memory to be built, and in `vector_similarity_index_cache_size` to be
searched without being read from disk on every query (the cache held ~1.24x the files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from laion_ingest.datasets import Dataset
from laion_ingest.index import CACHE_PER_INDEX_BYTE, IndexParams, Measured, index_bytes
from laion_ingest.settings import vector_type

# Build CPU per row and column with the seed's (M=64, ef_construction=256): 960-1,180 rows/s for both
# columns on 2 cores (bench/RESULTS.md), i.e. ~0.001 core-second. (32, 128) measured ~0.45x of that
# and (16, 64) ~0.26x: sqrt(M x ef_construction / (64 x 256)) fits both within ~15 %.
BUILD_CORE_SECONDS_PER_ROW = 0.00095
# A query's p50 on a node holding N parts, every graph cached, k=10 at ClickHouse's ef of 256, 512-d, on
# 2 cores (bench/LAYOUT-parts.md): a fixed cost plus each part's graph, searched on its own. Parts of
# 20,000 rows: 19.6 ms + 4.3 ms a part. A part's search is bounded by ef, not by its rows: one part of
# 200,000 rows answered as fast as one of 20,000 (23.0 and 23.9 ms), so LAION's 1M-row parts are
# projected at the 20,000-row rate.
QUERY_FIXED_MS, QUERY_MS_PER_PART, QUERY_CORES = 19.6, 4.3, 2


@dataclass(frozen=True)
class Sizing:
    shards: int
    nodes: int
    rows: int
    download_bytes: int
    table_bytes: int            # rows with vectors of LAION_VECTOR_TYPE, the whole range
    index_bytes_per_column: int  # one column's graph, the whole range
    ram_per_column_per_node: int  # the most any node holds (shards are whole on a node)
    cache_per_node: int          # both columns' graphs, as the index cache holds them
    build_core_hours: float      # both columns
    ram_per_node: int
    cache_per_shard: int         # all of one shard's graphs, cached
    parts_per_node: int          # a shard is a part: the fullest node's
    query_ms: float              # a query's p50 on that node
    dataset: Dataset
    measured: Measured | None = None

    @property
    def fits(self) -> bool:
        return self.cache_per_node <= self.ram_per_node

    @property
    def nodes_needed(self) -> int:
        """Nodes of ram_per_node each for both columns' graphs to stay cached (whole shards a node)."""
        shards_per_node = self.ram_per_node // self.cache_per_shard
        return math.ceil(self.shards / shards_per_node) if shards_per_node else 0


def build_core_seconds(rows: int, params: IndexParams, dim: int = 512) -> float:
    """One column's build CPU (see BUILD_CORE_SECONDS_PER_ROW, measured at 512-d; the distance
    computations that dominate a build grow with the dimension)."""
    return rows * BUILD_CORE_SECONDS_PER_ROW * dim / 512 * math.sqrt(params.m * params.ef_construction / (64 * 256))


def query_ms(parts: int, dim: int = 512) -> float:
    """A query's p50 on a node holding `parts` parts (see QUERY_FIXED_MS); the distance computations
    that dominate a graph's search grow with the dimension."""
    return QUERY_FIXED_MS + parts * QUERY_MS_PER_PART * dim / 512


def estimate(dataset: Dataset, first: int, last: int, params: IndexParams, nodes: int = 1,
             ram_gb: float = 256, measured: Measured | None = None) -> Sizing:
    shards, graphs, dim = last - first + 1, len(dataset.vectors), dataset.dim
    rows = shards * dataset.rows_per_shard
    per_node_rows = math.ceil(shards / nodes) * dataset.rows_per_shard
    per_column = index_bytes(per_node_rows, params, dim, measured)
    build_seconds = rows / measured.build_rows_per_s if measured else build_core_seconds(rows, params, dim)
    shard_graphs = graphs * index_bytes(dataset.rows_per_shard, params, dim, measured)
    return Sizing(shards=shards, nodes=nodes, rows=rows, download_bytes=shards * dataset.source_bytes_per_shard,
                  table_bytes=rows * dataset.table_bytes_per_row,
                  index_bytes_per_column=index_bytes(rows, params, dim, measured),
                  ram_per_column_per_node=per_column,
                  cache_per_node=int(graphs * per_column * CACHE_PER_INDEX_BYTE),
                  build_core_hours=graphs * build_seconds / 3600,
                  ram_per_node=int(ram_gb * 1e9),
                  cache_per_shard=int(shard_graphs * CACHE_PER_INDEX_BYTE),
                  parts_per_node=math.ceil(shards / nodes),
                  query_ms=query_ms(math.ceil(shards / nodes), dim),
                  dataset=dataset, measured=measured)


def report(s: Sizing, params: IndexParams) -> str:
    gb = lambda n: f"{n / 1e9:,.0f} GB" if n >= 1e10 else f"{n / 1e9:,.1f} GB"  # noqa: E731
    d, stored_as = s.dataset, vector_type()
    graphs = len(d.vectors)
    fetched = (f"download: {gb(s.download_bytes)}; the work directory holds {gb(2 * d.source_bytes_per_shard)}"
               " per shard in flight" if d.layout == "npy" else "download: none, ClickHouse reads the source in place")
    lines = [
        f"{d.name}: shards {s.shards} (about {s.rows:,} rows at {d.rows_per_shard:,} a shard)",
        f"index: {params.type_full(d.dim)} on {' and '.join(d.vectors)}",
        "index bytes and build rate: " + (s.measured.source if s.measured else
                                          "ClickHouse's formula and this project's build rate (tune measures"
                                          " your data's: python -m laion_ingest tune)"),
        fetched,
        f"table on disk: {gb(s.table_bytes)} of rows + {gb(graphs * s.index_bytes_per_column)} of indexes"
        f" (vectors in {stored_as}{', LAION_VECTOR_TYPE=BFloat16 halves them' * (stored_as == 'Float32')})",
        f"index RAM per column: {gb(s.index_bytes_per_column)} in all; {gb(s.ram_per_column_per_node)} on the"
        f" fullest of {s.nodes} node(s) (a graph is built and searched whole in memory)",
        f"vector_similarity_index_cache_size per node: at least {gb(s.cache_per_node)} ({graphs} column(s);"
        " default 5 GB)",
        f"index build: about {s.build_core_hours:,.0f} core-hours ({s.build_core_hours / 16:,.1f} h on 16 cores)",
        f"a query on a node holding {s.parts_per_node} parts: ~{s.query_ms:,.0f} ms on {QUERY_CORES} cores"
        " (p50 at ef 256, every graph cached; each part's graph is searched: more nodes, fewer parts each)",
        f"fits {s.nodes} node(s) of {gb(s.ram_per_node)} RAM: {'yes' if s.fits else 'no'}"
        f" (nodes needed at {gb(s.ram_per_node)}: {s.nodes_needed or 'none: one shard does not fit'})",
    ]
    return "\n".join(lines)
