"""Stage 4: the HNSW vector indexes, one on each of the dataset's vector columns (image_embedding and
text_embedding, or vector alone), at its dimension.

ADD INDEX only declares an index; MATERIALIZE INDEX builds the graph, part by part. Loads never
build it (materialize_skip_indexes_on_insert = 0, and the table sets
materialize_skip_indexes_on_merge = 0), and each shard is one part in its own partition, so this
stage builds each part's graph exactly once: it materializes only the partitions whose part has no
index yet, both indexes in one mutation, and waits for the mutations while logging their progress.

ClickHouse refuses an ALTER on a table with number_of_mutations_to_throw (1,000) unfinished
mutations: an index just added is built by one mutation for the whole table, and the parts loaded
since the last build by one mutation each, at most MUTATIONS_IN_FLIGHT at a time per node, each
poll submitting the next as earlier ones finish (laion2b-en has 2,314 parts).
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger

log = logger(__name__)

@dataclass(frozen=True)
class IndexParams:
    """vector_similarity('hnsw', metric, dim, quantization, m, ef_construction); the seed's values."""
    metric: str = "cosineDistance"
    quantization: str = "bf16"
    m: int = 64
    ef_construction: int = 256

    def type_full(self, dim: int) -> str:
        return (f"vector_similarity('hnsw', '{self.metric}', {dim}, '{self.quantization}',"
                f" {self.m}, {self.ef_construction})")


QUANTIZATION_BYTES = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "i8": 1, "b1": 1 / 8}
MUTATIONS_IN_FLIGHT = 100  # per node: under number_of_mutations_to_delay (500); the pool builds 16 at once
CACHE_PER_INDEX_BYTE = 1.24  # the index cache held 1.24x the index files, measured here (2026-11)


@dataclass(frozen=True)
class Measured:
    """What `tune` measured for one setting on a shard of the user's data: the capacity check and
    `plan` use it instead of ClickHouse's formula and sizing's build rate."""
    index_bytes_per_row: float
    build_rows_per_s: float  # per core
    source: str              # where it was measured, for the messages


def measured_cost(ch: ClickHouse, params: IndexParams) -> Measured | None:
    """The latest `tune` measurement of exactly these parameters on this dataset; None without one."""
    if not ch.run("table_exists", name=ch.dataset.tune_results)[0][0]:
        return None
    rows = ch.run("tune_measured", **asdict(params))
    if not rows:
        return None
    bytes_per_row, rows_per_s, shard, shard_rows, at = rows[0]
    where = f"measured by tune on shard {shard} ({shard_rows:,} rows, {at:%Y-%m-%d})"
    return Measured(bytes_per_row, rows_per_s, where)


def index_bytes(rows: int, params: IndexParams, dim: int, measured: Measured | None = None) -> int:
    """One column's HNSW index in memory: tune's measured bytes per row where given, else ClickHouse's
    formula, N x dim x bytes(quantization) + N x M x 8, which matched the index files here within ~21
    bytes per row."""
    if measured:
        return int(rows * measured.index_bytes_per_row)
    return int(rows * (dim * QUANTIZATION_BYTES[params.quantization] + params.m * 8))


def check_capacity(ch: ClickHouse, params: IndexParams, measured: Measured | None = None) -> None:
    """Before hours of build: refuse a part whose graphs cannot be built within the server's memory
    limit, and warn when the index cache cannot hold every graph (each query would then read the
    graphs from disk: 3x slower than brute force was measured). `python -m laion_ingest plan` gives the
    same numbers for a shard range."""
    rows, largest, cache, memory = ch.run("index_capacity")[0]
    graphs, dim = len(ch.dataset.vectors), ch.dataset.dim  # one mutation builds all of a part's graphs
    build = graphs * index_bytes(largest or 0, params, dim, measured)
    source = measured.source if measured else "ClickHouse's formula"
    if memory and build > memory:
        raise PermanentError(
            f"the largest part ({largest:,} rows) needs about {build / 1e9:,.1f} GB to build its {graphs} graph(s)"
            f" with {params.type_full(dim)} ({source}), over the server's memory limit of {memory / 1e9:,.1f} GB"
            " (max_server_memory_usage): choose a smaller M or quantization, or give ClickHouse more memory")
    cached = int(graphs * index_bytes(rows or 0, params, dim, measured) * CACHE_PER_INDEX_BYTE)
    if cached > cache:
        log.warning("the vector indexes of %s rows need about %.1f GB of index cache (%s) to be searched without"
                    " reading graphs from disk on every query, and vector_similarity_index_cache_size is %.1f GB:"
                    " raise it in the server's config to at least %d", f"{rows:,}", cached / 1e9, source,
                    cache / 1e9, cached)


def add_indexes(ch: ClickHouse, params: IndexParams) -> list[str]:
    """Declare the dataset's indexes (on every node of a cluster); returns the ones some node lacked.
    An existing index with other parameters is an error rather than a silent rebuild of hours of work.
    Checks the capacity first, with tune's measurement of these parameters where there is one."""
    missing: list[str] = []
    wanted = params.type_full(ch.dataset.dim)
    cost = measured_cost(ch, params)
    for node in ch.each_node():
        check_capacity(node, params, cost)
        existing = {name: type_full for name, _, type_full in node.run("vector_index_definitions")}
        for name in ch.dataset.indexes:
            if name in existing and existing[name].replace(" ", "") != wanted.replace(" ", ""):
                raise PermanentError(
                    f"{_where(node)}index {name} exists as {existing[name]}, not {wanted}; to rebuild"
                    f" it with the new parameters run: ALTER TABLE {node.table} DROP INDEX {name}")
            if name not in existing and name not in missing:
                missing.append(name)
    for name in missing:
        ch.on_every_node("vector_index_add", name=name, column=ch.dataset.indexes[name], **asdict(params))
    return missing


def declared_params(ch: ClickHouse) -> IndexParams | None:
    """The parameters of the vector indexes declared on the first node that has them; None if none has."""
    for node in ch.each_node():
        for _, _, type_full in node.run("vector_index_definitions"):
            found = re.fullmatch(r"vector_similarity\('hnsw',\s*'(\w+)',\s*\d+,\s*'(\w+)',"
                                 r"\s*(\d+),\s*(\d+)\)", type_full)
            if found:
                metric, quantization, m, ef = found.groups()
                return IndexParams(metric, quantization, int(m), int(ef))
    return None


def _where(node: ClickHouse) -> str:
    return f"node {node.node}: " if node.node else ""


def build_indexes(ch: ClickHouse, params: IndexParams, poll_seconds: float = 5.0) -> list[int]:
    """Declare the indexes and materialize them where missing; returns the shards indexed now."""
    added = add_indexes(ch, params)
    if added:
        log.info("added %s: %s", ", ".join(added), params.type_full(ch.dataset.dim))
    return materialize_indexes(ch, every_shard=bool(added), poll_seconds=poll_seconds)


def materialize_indexes(ch: ClickHouse, every_shard: bool = False, poll_seconds: float = 5.0) -> list[int]:
    """Build the graphs of the parts that have none, and wait for them."""
    shards = submit_builds(ch, every_shard)
    if shards:
        started = time.monotonic()
        while not advance_builds(ch, shards):
            time.sleep(poll_seconds)
        log.info("vector indexes built for %d shard(s) in %.1f s", len(shards), time.monotonic() - started)
    return shards


def submit_builds(ch: ClickHouse, every_shard: bool = False) -> list[int]:
    """Start building the parts without graphs: every part, in one mutation per node, after an index
    was added; else the first wave of one mutation per part. Returns the shards to build; the
    mutations run in ClickHouse's background and advance_builds follows them."""
    shards = []
    for node in ch.each_node():
        mine = [int(p) for (p,) in node.run("loaded_partitions" if every_shard else "vector_index_pending")]
        if mine:
            log.info("%sbuilding vector indexes for %d shard(s), %d to %d", _where(node), len(mine), mine[0], mine[-1])
        if mine and every_shard:
            _materialize(node)
        shards += mine
    if not shards:
        log.info("every shard's part already has its vector indexes")
        return []
    advance_builds(ch, shards)
    return sorted(shards)


def advance_builds(ch: ClickHouse, shards: list[int]) -> bool:
    """Log parts done of total (per node on a cluster), submit the next wave of per-part mutations
    where fewer than MUTATIONS_IN_FLIGHT run; True once every build is done. A failed mutation is
    killed and raised naming its node and shard, with ClickHouse's latest_fail_reason."""
    wanted, left = set(shards), 0
    for node in ch.each_node():
        rows = node.run("vector_index_progress")
        for mutation_id, command, _, failed_part, reason in rows:
            if reason:
                node.run("vector_index_kill", mutation_id=mutation_id)
                shard = re.search(r"IN PARTITION (\d+)", command) or re.match(r"(\d+)_", failed_part)
                raise RuntimeError(f"{_where(node)}shard {shard[1] if shard else '?'}: vector index build failed"
                                   f" (mutation {mutation_id}, {command}): {reason}")
        submitted = {int(m[1]) for _, command, *_ in rows if (m := re.search(r"IN PARTITION (\d+)", command))}
        whole_table = len(submitted) < len(rows)  # that mutation builds every part: nothing to add
        waiting = [] if whole_table else [int(p) for (p,) in node.run("vector_index_pending")
                                          if int(p) in wanted and int(p) not in submitted]
        for shard in waiting[:max(MUTATIONS_IN_FLIGHT - len(rows), 0)]:
            _materialize(node, shard)
        per_index = sum(int(r[2]) for r in rows)  # a mutation per index: rounded up, not done while one runs
        building = -(-per_index // len(node.dataset.indexes)) + len(waiting)
        if node.node:
            log.info("node %d: %d part(s) still building", node.node, building)
        left += building
    log.info("vector index build: %d of %d part(s) done", len(shards) - left, len(shards))
    return left == 0


def _materialize(node: ClickHouse, shard: int | None = None) -> None:
    """One mutation building the dataset's indexes on one shard's part, or on every part: both in
    one where it has two, so a part is read once."""
    names = list(node.dataset.indexes)
    sql = "vector_index_materialize" + ("_table" if shard is None else "") + ("_one" if len(names) == 1 else "")
    scope = {} if shard is None else {"shard": shard}
    if len(names) == 2:
        node.run(sql, first=names[0], second=names[1], **scope)
    else:
        node.run(sql, name=names[0], **scope)
