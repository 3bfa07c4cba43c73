"""`python -m laion_ingest status`: how far the load is, read from the ledger and the table."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.datasets import Dataset
from laion_ingest.ledger import differing_shards, shard_status


def collect(dataset: Dataset) -> dict:
    """Read only, so a SELECT-only user can watch a load; a database without the tables is "nothing
    loaded yet", not an error."""
    with ClickHouse(dataset) as ch:
        shards = shard_status(ch)
        differing = differing_shards(ch, shards)
        table_rows = ch.run("table_rows")[0][0] if ch.run("table_exists", name=dataset.table)[0][0] else 0
    loaded = [s for s in shards if s["loaded"] and s["shard"] not in differing]
    failing = [s for s in shards if s["last_outcome"] == "failed"]
    return {
        "dataset": dataset.name,
        "shards_total": dataset.shards,
        "shards_loaded": len(loaded),
        "rows_in_table": table_rows,
        "failing": [{"shard": s["shard"], "tries": s["max_try"], "last_error": s["last_error"]} for s in failing],
        "differing": [{"shard": shard, "problem": how} for shard, how in differing.items()],
        "eta_seconds": _eta(sorted(s["loaded_at"] for s in loaded), dataset.shards - len(loaded)),
    }


def _eta(loaded_at: list[datetime], remaining: int, window: int = 20) -> float | None:
    """Seconds to load the remaining shards at the pace of the last `window` loads."""
    recent = loaded_at[-window:]
    if remaining == 0:
        return 0.0
    if len(recent) < 2:
        return None
    span = (recent[-1] - recent[0]).total_seconds()
    return remaining * span / (len(recent) - 1) if span > 0 else None


def report(dataset: Dataset, as_json: bool = False) -> str:
    s = collect(dataset)
    if as_json:
        return json.dumps(s, indent=2)
    lines = [f"{dataset.name}: shards loaded: {s['shards_loaded']} of {s['shards_total']}",
             f"rows in {dataset.table}: {s['rows_in_table']:,}"]
    eta = s["eta_seconds"]
    lines.append("ETA: " + ("done" if eta == 0 else "unknown (fewer than 2 recent loads)" if eta is None
                            else f"{eta / 3600:.1f} h at the recent pace"))
    for f in s["failing"]:
        lines.append(f"failing: shard {f['shard']} (try {f['tries']}): {f['last_error']}")
    for d in s["differing"]:
        lines.append(f"differs from its source: shard {d['shard']}: {d['problem']} (the next run reloads it)")
    lines.append(f"as of {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    return "\n".join(lines)
