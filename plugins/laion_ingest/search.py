"""Stage 5: nearest neighbours of a vector, through the HNSW index and by brute force.

Filters (NSFW tag, similarity, width) and the index: ClickHouse takes the top k from each part's
graph and filters afterwards, so a filter that keeps 90 % of rows still returned fewer than k rows
for most queries. The search therefore asks the index for more candidates, in proportion to the
share of rows the filter keeps (`vector_search_index_fetch_multiplier`), and where that is not
enough or the filter is too selective for it, scans the rows the filter keeps exactly
(`vector_search_filter_strategy = 'prefilter'`): k rows come back whenever k rows match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from laion_ingest import settings
from laion_ingest.clickhouse import ClickHouse, sql
from laion_ingest.errors import SettingError
from laion_ingest.redaction import logger
from laion_ingest.search_quality import chosen_settings

log = logger(__name__)



@dataclass(frozen=True)
class Hit:
    id: int
    url: str
    caption: str | None
    nsfw: str
    distance: float


NSFW_TAGS = ("UNLIKELY", "UNSURE", "NSFW")


@dataclass(frozen=True)
class Filters:
    """What a search keeps; checked here for the command line and the search page alike (a width of
    2^32 wrapped to 0 in the UInt32 parameter and the filter silently vanished; a NaN similarity
    matched nothing)."""
    nsfw: tuple[str, ...] = ()       # NSFW tags kept, e.g. ("UNLIKELY",)
    min_similarity: float | None = None
    min_width: int | None = None

    def __post_init__(self):
        unknown = [tag for tag in self.nsfw if tag not in NSFW_TAGS]
        if unknown:
            raise SettingError(f"nsfw: {unknown[0][:40]!r} is not one of {', '.join(NSFW_TAGS)}")
        if self.min_similarity is not None:
            object.__setattr__(self, "min_similarity", settings.number("min_similarity", self.min_similarity, -1, 1))
        if self.min_width is not None:
            object.__setattr__(self, "min_width",
                               settings.number("min_width", self.min_width, 0, 2**32 - 1, whole=True))

    def condition(self) -> tuple[str, dict]:
        """The filter as SQL made of fixed fragments, and its query parameters ("" for none)."""
        parts, params = [], {}
        if self.nsfw:
            parts.append("NSFW IN {nsfw:Array(String)}")
            params["nsfw"] = list(self.nsfw)
        if self.min_similarity is not None:
            parts.append("similarity >= {min_similarity:Float64}")
            params["min_similarity"] = self.min_similarity
        if self.min_width is not None:
            parts.append("width >= {min_width:UInt32}")
            params["min_width"] = self.min_width
        return " AND ".join(parts), params


MAX_FETCH_MULTIPLIER = 100  # beyond this the filter keeps under ~2 % of rows: scan those exactly
# Above max_limit_for_vector_search_queries (1000 by default, from 25.8 to 26.9) ClickHouse silently
# scans every row instead of using the index: a larger k raises the setting for its query.
INDEX_LIMIT = 1000


def search(ch: ClickHouse, target: list[float], column: str | None = None, k: int = 10,
           exact: bool = False, filters: Filters = Filters(), ef: int | None = None,
           tuned: dict | None = None) -> list[Hit]:
    """Top-k rows by cosine distance among those the filters keep, in column (the dataset's image
    vectors by default); exact=True scans every row instead of using the index. tuned: the index's
    search settings, by default tuned_settings(ch, ef): what the latest `evaluate` chose, with ef as
    hnsw_candidate_list_size_for_search if given. A target of another dimension than the dataset's is
    refused before any SQL."""
    column = vector_column(ch, column)
    if len(target) != ch.dataset.dim:
        raise SettingError(f"the query vector has {len(target)} values, but {ch.dataset.name}'s vectors are"
                           f" {ch.dataset.dim}-d: encode it with {ch.dataset.model.name}"
                           f" ({ch.dataset.model.setting}), the model that made them")
    condition, params = filters.condition()
    params.update(column=column, target=[float(x) for x in target], k=k)
    statement = with_condition("search_ann", condition)
    if exact:
        return hits(ch, statement, params, use_skip_indexes=0)
    settings = {**(tuned or tuned_settings(ch, ef)), **index_limit(k)}
    if not condition:
        return hits(ch, statement, params, **settings)
    kept = ch.query(with_condition("filter_selectivity", condition), **params)[0][0] or 0.0
    multiplier = math.ceil(2 / kept) if kept else math.inf  # twice the candidates the filter needs, on average
    if multiplier <= MAX_FETCH_MULTIPLIER:
        rescoring = settings.get("vector_search_index_fetch_multiplier", 1)
        found = hits(ch, statement, params,
                     **{**settings, "vector_search_index_fetch_multiplier": multiplier * rescoring})
        if len(found) == k:
            return found
    log.info("the filter keeps %.1f%% of rows: scanning those exactly", 100 * kept)
    return hits(ch, statement, params, vector_search_filter_strategy="'prefilter'", **settings)


def tuned_settings(ch: ClickHouse, ef: int | None = None) -> dict:
    """What the latest `evaluate` chose (ef, and rescoring for i8/b1 indexes), ClickHouse's ef of 256
    before any; a given ef replaces the chosen one."""
    settings = chosen_settings(ch) or {"hnsw_candidate_list_size_for_search": 256}
    return {**settings, "hnsw_candidate_list_size_for_search": ef} if ef else settings


def index_limit(k: int) -> dict:
    """The setting that keeps a top k above ClickHouse's default limit on the index."""
    return {"max_limit_for_vector_search_queries": k} if k > INDEX_LIMIT else {}


def with_condition(name: str, condition: str) -> str:
    """The one statement of include/sql/<name>.sql with its {condition} placeholder written in (true for
    none). Conditions are the fixed fragments of Filters.condition and evaluate, never input."""
    [statement] = sql(name, condition=condition or "true")
    return statement


def hits(ch: ClickHouse, statement: str, params: dict, **settings) -> list[Hit]:
    return [Hit(*r) for r in hits_rows(ch, statement, params, settings)]


def hits_rows(ch: ClickHouse, statement: str, params: dict, settings: dict) -> list[tuple]:
    """The statement with its SETTINGS (whole numbers and quoted words, written here, never input)."""
    if settings:
        statement += " SETTINGS " + ", ".join(f"{name} = {value}" for name, value in settings.items())
    return ch.query(statement, **params)


def explain(ch: ClickHouse, target: list[float], column: str | None = None, k: int = 10) -> str:
    """EXPLAIN indexes = 1 of the search: names the vector index when ClickHouse uses it."""
    rows = hits_rows(ch, "EXPLAIN indexes = 1 " + with_condition("search_ann", ""),
                     dict(column=vector_column(ch, column), target=[float(x) for x in target], k=k), index_limit(k))
    return "\n".join(r[0] for r in rows)


def recall(approximate: list[Hit], exact: list[Hit]) -> float:
    """Share of the exact top-k that the index also returned."""
    truth = {h.id for h in exact}
    return len(truth & {h.id for h in approximate}) / len(truth) if truth else 1.0


def vector_column(ch: ClickHouse, column: str | None) -> str:
    """column, checked against the dataset's vector columns; by default its first (image) one."""
    if column is None:
        return ch.dataset.vectors[0]
    if column not in ch.dataset.vectors:
        raise SettingError(f"column: {column[:40]!r} is not one of {ch.dataset.name}'s vector columns,"
                           f" {', '.join(ch.dataset.vectors)}")
    return column


def row_vector(ch: ClickHouse, column: str | None, shard: int, row: int) -> list[float]:
    """A stored vector, for a query like "rows whose images match this caption"."""
    rows = ch.run("row_vector", column=vector_column(ch, column), shard=shard, row=row)
    if not rows:
        raise LookupError(f"no row {row} in shard {shard}")
    return rows[0][0]


def id_vector(ch: ClickHouse, column: str | None, row_id: int) -> list[float]:
    """The stored vector of the row with an id (the files' own id for laion_5b_100m)."""
    rows = ch.run("id_vector", column=vector_column(ch, column), id=row_id)
    if not rows:
        raise LookupError(f"no row with id {row_id} in {ch.dataset.table}")
    return rows[0][0]
