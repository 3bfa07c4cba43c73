"""The table laion_search_quality: what `evaluate` measured and chose, and the search settings that
`search` reads back from it. Both stages use the table, so neither imports the other for it."""
from __future__ import annotations

from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger

log = logger(__name__)

OLDER_TABLE = ("laion_search_quality was made by an earlier version (it has no column rescore_multiplier);"
               " it holds only measurements: DROP TABLE laion_search_quality, then run evaluate again")


def search_settings(ef: int, rescore: int = 0) -> dict:
    """The query settings of one measured setup: ef, and the rescoring multiplier (0: none)."""
    settings = {"hnsw_candidate_list_size_for_search": int(ef)}
    if rescore:
        settings.update(vector_search_with_rescoring=1, vector_search_index_fetch_multiplier=int(rescore))
    return settings


def prepare(ch: ClickHouse) -> None:
    """Create the table, or refuse one made by an earlier version (which lacks a column)."""
    ch.run("create_search_quality")
    if _current_table(ch) is False:
        raise PermanentError(OLDER_TABLE)


def record(ch: ClickHouse, run_id: str, index: str, target_recall: float, chosen: tuple[int, int],
           rows: list[dict]) -> None:
    """Store one evaluation's measurements; `chosen` (ef, rescore) marks the setup search will use."""
    for row in rows:
        ch.run("search_quality_record", run_id=run_id, index_type=index, target_recall=target_recall,
               chosen=int((row["ef"], row["rescore"]) == chosen), **row)


def chosen_settings(ch: ClickHouse) -> dict:
    """The search settings the latest evaluation chose ({} if there was none). It only reads, so a
    connection with SELECT alone can search."""
    current = _current_table(ch)
    if current is False:
        log.warning("%s; until then search uses the default settings", OLDER_TABLE)
    rows = ch.run("search_quality_chosen") if current else []
    return search_settings(*rows[0]) if rows else {}


def _current_table(ch: ClickHouse) -> bool | None:
    """Whether laion_search_quality has this version's columns; None if there is no such table."""
    columns = {name for (name,) in ch.run("search_quality_columns")}
    return "rescore_multiplier" in columns if columns else None
