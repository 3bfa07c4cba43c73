"""Stage 3: put a shard into its dataset's table (laion, ...), replacing that shard as one unit.

The rows go into a private staging table first, are checked there (row count, unique ids, the
right shard), merged into one part, and then swapped in with REPLACE PARTITION. So a reload never
duplicates a row, a crash never shows half a shard, and a failed reload keeps the previous one.
No vector index is built here: the index stage builds it once per part afterwards.
"""
from __future__ import annotations

import time
from pathlib import Path

from laion_ingest import settings, staging
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import DiskSpaceError, PermanentError, SettingError
from laion_ingest.redaction import logger

log = logger(__name__)

def create_tables(ch: ClickHouse, node: ClickHouse | None = None) -> None:
    """The dataset's table (on a cluster: <table>_local and the Distributed <table> on every node, or
    on `node` only) and its ledger, on the connection's node. Every statement is IF NOT EXISTS, so
    running them again is harmless: a shard's load runs them on its own node, which may have been down
    before."""
    vector_type = settings.vector_type()
    tables = [(ch.dataset.create_sql, {"vector_type": vector_type}, {})]
    if ch.cluster:
        tables.append(("create_laion_distributed", {}, {"cluster": ch.cluster, "database": ch.database}))
    for file, fragments, params in tables:
        if node is None:
            ch.on_every_node(file, fragments, **params)
        else:
            node.run(file, fragments, **params)
    check_vector_type(node or ch, vector_type)
    ch.run("create_ledger")


def check_vector_type(ch: ClickHouse, vector_type: str) -> None:
    """Refuse to load into a table whose vectors are of another type than LAION_VECTOR_TYPE says: the
    disk check and `plan` size by the setting, and a user who set it expects what it says."""
    column = ch.dataset.vectors[0]
    [(found,)] = ch.run("column_type", column=column)
    if found != f"Array({vector_type})":
        raise SettingError(f"LAION_VECTOR_TYPE is {vector_type}, but {ch.table}.{column} was created as"
                           f" {found}: a table keeps the type it was created with; set LAION_VECTOR_TYPE to match"
                           " it, or load into a new database")


def load_shard(ch: ClickHouse, shard: int, parquet: Path, expected_rows: int) -> int:
    """Load one converted shard; returns its row count. Raises before touching laion on any mismatch."""
    started = time.monotonic()
    check_disk_space(ch, shard, expected_rows)
    source, params = staging.stage(parquet, ch.is_server)
    try:
        rows = publish(ch, shard, expected_rows, "stage_insert", {"source": source}, **params)
    finally:
        staging.unstage(parquet)
    if not ch.is_server:
        wait_for_replaced_parts(ch)
    seconds = time.monotonic() - started
    log.info("shard %d: %d rows loaded in %.1f s (%.0f rows/s)", shard, rows, seconds, rows / max(seconds, 1e-9))
    return rows


def publish(ch: ClickHouse, shard: int, expected_rows: int, insert_sql: str, fragments: dict | None = None,
            check=None, **params) -> int:
    """Fill a private staging table with include/sql/<insert_sql>.sql, check that it holds exactly the
    shard's expected rows with unique ids (and whatever `check(stage)` checks besides), and swap it in
    for the shard's partition (REPLACE PARTITION)."""
    stage = f"{ch.dataset.table}_stage_{shard}"
    ch.run("stage_create", stage=stage)
    try:
        ch.run(insert_sql, fragments, stage=stage, shard=shard, **params)
        rows, ids, shards = ch.run("stage_check", stage=stage)[0]
        if rows != expected_rows or ids != rows or list(shards) != [shard]:
            raise PermanentError(f"shard {shard}: staged {rows} rows, {ids} distinct ids, shards {shards};"
                                 f" expected {expected_rows} rows of shard {shard}")
        if check:
            check(stage)
        ch.run("stage_publish", stage=stage, shard=shard)
    except BaseException:
        ch.run("stage_drop", stage=stage)
        raise
    return rows


def drop_other_copies(ch: ClickHouse, node: ClickHouse, shard: int) -> None:
    """On a cluster a shard lives on one node: drop its copies on the others, left by a rebalance
    that stopped between its copy and its drop (reads through laion counted them twice), or by a
    reload while the node holding it was down."""
    for other in ch.each_node(reachable=True):
        if other is not node and any(s == shard for s, _, _ in other.run("table_shards")):
            log.info("shard %d: dropping its copy on node %d; it is on node %d", shard, other.node, node.node)
            other.run("drop_shard", shard=shard)


def check_disk_space(ch: ClickHouse, shard: int, rows: int) -> None:
    """Refuse to start a load the engine's disk cannot hold: at its peak a reload has the staged
    parts, their merge and the shard it replaces on disk, about 3x the shard in the table. Transient:
    another load's cleanup or the operator may free space before the retry."""
    need = 3 * rows * ch.dataset.table_bytes_per_row
    [(paths, free)] = ch.run("disk_free")
    if free < need:
        raise DiskSpaceError(f"shard {shard}: loading {rows:,} rows needs about {need / 1e9:,.1f} GB free on"
                             f" ClickHouse's disk ({', '.join(paths)}), which has {free / 1e9:,.1f} GB")


def wait_for_replaced_parts(ch: ClickHouse, timeout: float = 15.0) -> None:
    """Wait until ClickHouse has deleted the parts a reload replaced (seconds: create_laion.sql).
    The embedded engine deletes them only while its process lives, and a task's process ends right
    after the load, so without this every reload left a whole shard behind on disk."""
    deadline = time.monotonic() + timeout
    while (left := ch.run("outdated_parts")[0])[0]:
        if time.monotonic() > deadline:
            log.warning("%d replaced part(s) (%d bytes) not deleted yet. A laion table made before"
                        " old_parts_lifetime was set keeps them 8 minutes: see docs/operations.md,"
                        " 'Disk a load needs'", *left)
            return
        time.sleep(0.2)
