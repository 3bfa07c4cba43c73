"""Stage 3: put a converted shard into the `laion` table, replacing that shard as one unit.

The rows go into a private staging table first, are checked there (row count, unique ids, the
right shard), merged into one part, and then swapped in with REPLACE PARTITION. So a reload never
duplicates a row, a crash never shows half a shard, and a failed reload keeps the previous one.
No vector index is built here: the index stage builds it once per part afterwards.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from laion_ingest import staging
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError

log = logging.getLogger(__name__)


def create_tables(ch: ClickHouse) -> None:
    ch.run("create_laion")
    ch.run("create_ledger")


def load_shard(ch: ClickHouse, shard: int, parquet: Path, expected_rows: int) -> int:
    """Load one converted shard; returns its row count. Raises before touching laion on any mismatch."""
    stage = f"laion_stage_{shard}"
    started = time.monotonic()
    insert_sql, params = staging.stage(parquet, ch.is_server)
    ch.run("stage_create", stage=stage)
    try:
        ch.run(insert_sql, stage=stage, **params)
        rows, ids, shards = ch.run("stage_check", stage=stage)[0]
        if rows != expected_rows or ids != rows or list(shards) != [shard]:
            raise PermanentError(f"shard {shard}: staged {rows} rows, {ids} distinct ids, shards {shards};"
                                 f" expected {expected_rows} rows of shard {shard}")
        ch.run("stage_publish", stage=stage, shard=shard)
    except BaseException:
        ch.run("stage_drop", stage=stage)
        raise
    finally:
        staging.unstage(parquet)
    seconds = time.monotonic() - started
    log.info("shard %d: %d rows loaded in %.1f s (%.0f rows/s)", shard, rows, seconds, rows / max(seconds, 1e-9))
    return rows
