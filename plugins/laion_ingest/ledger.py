"""The ledger: one row per attempt to load a shard (laion_ledger, one per dataset), and what it says now."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from laion_ingest import datasets, settings
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.datasets import Dataset
from laion_ingest.redaction import logger, redact

log = logger(__name__)


@dataclass
class Attempt:
    """One try at one shard of a dataset (LAION_DATASET's unless given); the pipeline fills it in as the
    stages go."""
    shard: int
    dataset: Dataset = field(default_factory=lambda: datasets.get(settings.dataset()))
    try_number: int = 1
    run_id: str = ""
    started_at: float = field(default_factory=time.time)
    rows: int = 0
    source_bytes: dict[str, int] = field(default_factory=dict)

    def record(self, ch: ClickHouse, outcome: str, stage: str, error: str = "") -> None:
        ch.run("ledger_record", shard=self.shard, outcome=outcome, stage=stage,
               try_number=self.try_number, rows=self.rows, source_files=list(self.source_bytes),
               source_bytes=list(self.source_bytes.values()),
               started_at=self.started_at, finished_at=time.time(), error=redact(error)[:2000],
               run_id=self.run_id)

    def log_previous_failure(self, ch: ClickHouse) -> None:
        """On a retry, say which try this is and why the previous one failed."""
        last = ch.run("ledger_last_failure", shard=self.shard, run_id=self.run_id)
        reason = f"try {last[0][0]} failed in {last[0][1]}: {last[0][2]}" if last else "no failure recorded"
        log.warning("shard %d, try %d; previous %s", self.shard, self.try_number, reason)


def shard_status(ch: ClickHouse) -> list[dict]:
    """Each shard the ledger knows, as it stands; errors redacted again on the way out (a ledger
    written by an earlier version may hold what redaction now removes)."""
    names = ("shard", "loaded", "rows", "loaded_at", "last_outcome", "last_error", "max_try")
    if not ch.run("table_exists", name=ch.dataset.ledger)[0][0]:
        return []  # nothing was ever loaded here (and a SELECT-only user cannot create the ledger)
    return [{**dict(zip(names, r, strict=True)), "last_error": redact(r[5])} for r in ch.run("shard_status")]


def differing_shards(ch: ClickHouse, shards: list[dict]) -> dict[int, str]:
    """Shards whose rows in the table differ from what the ledger (shards: its shard_status) says was
    loaded, with how: more or fewer rows, or several parts (published twice), or rows the ledger never
    loaded. The plan loads them again, which replaces the whole partition."""
    table: dict[int, tuple[int, int]] = {}
    for node in ch.each_node(reachable=True):  # a shard copied to two nodes shows as two parts
        for shard, rows, parts in node.run("table_shards"):
            held = table.get(shard, (0, 0))
            table[shard] = (held[0] + rows, held[1] + parts)
    ledger = {s["shard"]: s["rows"] for s in shards if s["loaded"]}
    differing = {}
    for shard in sorted(set(table) | set(ledger)):
        rows, parts = table.get(shard, (0, 0))
        if shard not in ledger:
            differing[shard] = f"the table holds {rows} rows that the ledger never loaded"
        elif rows != ledger[shard] or parts != 1:
            differing[shard] = f"the table holds {rows} rows in {parts} part(s), the ledger loaded {ledger[shard]}"
    return differing
