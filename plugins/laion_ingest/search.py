"""Stage 5: nearest neighbours of a vector, through the HNSW index and by brute force."""
from __future__ import annotations

from dataclasses import dataclass

from laion_ingest.clickhouse import ClickHouse, sql

COLUMNS = ("image_embedding", "text_embedding")


@dataclass(frozen=True)
class Hit:
    id: int
    url: str
    caption: str | None
    distance: float


def search(ch: ClickHouse, target: list[float], column: str = "image_embedding", k: int = 10,
           exact: bool = False) -> list[Hit]:
    """Top-k rows by cosine distance; exact=True scans every row instead of using the index."""
    if column not in COLUMNS:
        raise ValueError(f"column must be one of {COLUMNS}, not {column!r}")
    [statement] = sql("search_ann")
    if exact:
        statement += " SETTINGS use_skip_indexes = 0"
    rows = ch.query(statement, column=column, target=[float(x) for x in target], k=k)
    return [Hit(*r) for r in rows]


def explain(ch: ClickHouse, target: list[float], column: str = "image_embedding", k: int = 10) -> str:
    """EXPLAIN indexes = 1 of the search: names the vector index when ClickHouse uses it."""
    [statement] = sql("search_ann")
    rows = ch.query("EXPLAIN indexes = 1 " + statement, column=column, target=[float(x) for x in target], k=k)
    return "\n".join(r[0] for r in rows)


def recall(approximate: list[Hit], exact: list[Hit]) -> float:
    """Share of the exact top-k that the index also returned."""
    truth = {h.id for h in exact}
    return len(truth & {h.id for h in approximate}) / len(truth) if truth else 1.0


def row_vector(ch: ClickHouse, column: str, shard: int, row: int) -> list[float]:
    """A stored vector, for a query like "rows whose images match this caption"."""
    if column not in COLUMNS:
        raise ValueError(f"column must be one of {COLUMNS}, not {column!r}")
    rows = ch.run("row_vector", column=column, shard=shard, row=row)
    if not rows:
        raise LookupError(f"no row {row} in shard {shard}")
    return rows[0][0]
