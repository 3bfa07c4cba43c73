"""`python -m laion_ingest tune`: the HNSW setting that reaches the recall target cheapest, measured
on one loaded shard of the user's own data.

A shard is one part with its own graph, searched on its own, so the recall measured on a whole shard
is the recall the full table gets, and build time and index bytes grow with rows part by part: the
dataset's whole range costs what one shard costs, times its shards. Each candidate is built in a
scratch table holding a copy of the shard's ids and image vectors as one part (tune_scratch.sql,
made afresh for each candidate), timed (rows/s per core; the cores are max_threads, the server's by
default), its index files weighed (system.parts), and searched with sampled queries (captions'
vectors where the dataset has them, as users search; else images) at
hnsw_candidate_list_size_for_search 16 .. 1024 against an exact scan, stopping at the first that
reaches the target (where this graph crossed it: a graph built again reaches as much or a little
more); i8 and b1 are searched with rescoring, as `evaluate` does. Nothing touches the table users
query.

The grid (M 8..64, ef_construction 64..256, bf16, i8, b1) is pruned as it is walked: recall and cost
both grow with M and ef_construction, so for each M the walk stops at the first ef_construction
that reaches the target, and a larger M tries only the ef_construction values below the smallest
that reached it (as large a one would cost more in build and in RAM at once). i8 and b1 are tried
on the two cheapest bf16 candidates that reached it.

The walk runs in a time budget (--max-hours, 1 h by default) so that tune ends when the user planned
it to, whatever the shard's size and the machine: the seed's (bf16, 64, 256) is measured first and
always (every plan compares against it, and its cost is known exactly before the budget is spent),
then each candidate's measurement is projected from the nearest one measured (project_seconds); a
candidate that would end past the budget is skipped and reported, so the user sees what a larger
budget or a narrower grid would add. On a 1M-row shard of the hard mirror on 2 cores the seed alone
takes 25-45 minutes (bench/INDEX.md).

The recommendation is the candidate that reaches the target with the fewest build core-hours for the
dataset's whole range, then the least RAM, within the budget: --ram-gb per node for the graphs as
the index cache holds them, over --nodes, and --core-hours.
"""
from __future__ import annotations

import functools
import math
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from laion_ingest.clickhouse import ClickHouse, sql
from laion_ingest.datasets import Dataset
from laion_ingest.errors import PermanentError
from laion_ingest.evaluate import RESCORING, kinds
from laion_ingest.index import IndexParams, Measured
from laion_ingest.ledger import shard_status
from laion_ingest.redaction import logger
from laion_ingest.search import hits_rows
from laion_ingest.search_quality import search_settings
from laion_ingest.sizing import estimate

log = logger(__name__)

GRID_M = (8, 16, 32, 64)
GRID_EF_CONSTRUCTION = (64, 128, 256)
QUANTIZATIONS = ("bf16", "i8", "b1")
EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)
SEED = IndexParams()
MAX_HOURS = 1.0
K = 10
KEYS = ("m", "ef_construction", "quantization", "rescore_multiplier", "build_rows_per_s", "index_bytes_per_row",
        "ef_search", "recall_at_10", "p50_ms")


@dataclass(frozen=True)
class Candidate:
    m: int
    ef_construction: int
    quantization: str
    rescore_multiplier: int
    build_rows_per_s: float     # per core
    index_bytes_per_row: float
    ef_search: int              # the smallest reaching the target, else the largest tried
    recall_at_10: float
    p50_ms: float
    reached: bool

    def public(self) -> dict:
        return {key: getattr(self, key) for key in KEYS}

    def label(self) -> str:
        return label(self.params())

    def params(self) -> IndexParams:
        return IndexParams(SEED.metric, self.quantization, self.m, self.ef_construction)


def label(params: IndexParams) -> str:
    return f"{params.quantization} M={params.m} ef_construction={params.ef_construction}"


@dataclass(frozen=True)
class Budget:
    ram_gb: float | None = None
    nodes: int = 1
    core_hours: float | None = None


@dataclass(frozen=True)
class Projection:
    """A candidate over the dataset's whole range, from what one shard measured."""
    index_gb_per_column: float
    ram_gb_per_node: float       # every column's graphs, as the index cache holds them
    build_core_hours: float      # every column


def project(c: Candidate, dataset: Dataset, nodes: int = 1) -> Projection:
    s = estimate(dataset, 0, dataset.shards - 1, c.params(), nodes,
                 measured=Measured(c.index_bytes_per_row, c.build_rows_per_s, "tune"))
    return Projection(s.index_bytes_per_column / 1e9, s.cache_per_node / 1e9, s.build_core_hours)


def tune(ch: ClickHouse, shard: int | None = None, target_recall: float = 0.95, queries: int = 50,
         budget: Budget = Budget(), grid: tuple = (GRID_M, GRID_EF_CONSTRUCTION, QUANTIZATIONS),
         plot: Path | None = None, max_hours: float = MAX_HOURS) -> dict:
    """Measure the grid on the shard within max_hours, store every candidate, recommend one; returns
    {"run_id", "shard", "candidates", "recommended", "bound", "plot", "queries", "max_hours", "skipped"}."""
    started = time.monotonic()
    shard = _shard(ch, shard)
    query_column, column = next(iter(kinds(ch.dataset).values()))
    scratch = f"{ch.dataset.table}_tune_scratch"
    copy = {"scratch": scratch, "column": column, "shard": shard}
    ch.run("tune_scratch", **copy, **asdict(SEED))  # its exact scan is every candidate's reference
    try:
        targets = [t for (t,) in ch.run("sample_vectors", column=query_column, n=queries, shards=[shard])]
        exact = [_top(ch, scratch, t, use_skip_indexes=0) for t in targets]
        measured: dict[IndexParams, Candidate] = {}
        seconds: dict[IndexParams, float] = {}  # each measurement's wall time, what projections scale
        skipped: dict[IndexParams, float] = {}  # projected seconds of those the budget left out

        def measure(params: IndexParams) -> Candidate | None:
            if params in measured or params in skipped:
                return measured.get(params)
            left = max_hours * 3600 - (time.monotonic() - started)
            projected = project_seconds(params, seconds)
            if seconds and projected > left:
                skipped[params] = projected
                log.info("tune: skipping %s: projected %s, %s of --max-hours %g left", label(params),
                         duration(projected), duration(max(left, 0)), max_hours)
                return None
            log.info("tune: candidate %d, %s%s", len(measured) + 1, params.type_full(ch.dataset.dim),
                     f": projected {duration(projected)}, {duration(left)} of --max-hours {max_hours:g} left"
                     if seconds else " (the seed's, measured first: every plan compares against it)")
            t = time.monotonic()
            measured[params] = c = _measure(ch, copy, params, targets, exact, target_recall)
            seconds[params] = time.monotonic() - t
            log.info("tune: %s: %.0f rows/s per core, %.0f bytes/row, recall@10 %.3f at ef %d%s, p50 %.1f ms, in %s",
                     c.label(), c.build_rows_per_s, c.index_bytes_per_row, c.recall_at_10, c.ef_search,
                     f" (rescoring ×{c.rescore_multiplier})" if c.rescore_multiplier else "", c.p50_ms,
                     duration(seconds[params]))
            return c

        measure(SEED)
        _walk(measure, grid)
    finally:
        ch.run("tune_drop", scratch=scratch)
    candidates = list(measured.values())
    recommended, bound = recommend(candidates, ch.dataset, budget)
    run_id = uuid.uuid4().hex[:12]
    ch.run("create_tune_results")
    rows = next(s["rows"] for s in shard_status(ch) if s["shard"] == shard)
    for c in candidates:
        ch.run("tune_record", run_id=run_id, shard=shard, rows=rows, column=column, metric=SEED.metric,
               target_recall=target_recall, recommended=int(c == recommended), **c.public())
    if plot:
        _plot(candidates, recommended, ch.dataset, budget, plot)
    return {"run_id": run_id, "shard": shard, "candidates": candidates, "recommended": recommended, "bound": bound,
            "plot": str(plot) if plot else None, "queries": targets, "max_hours": max_hours,
            "skipped": list(skipped.items())}


def _walk(measure, grid: tuple) -> None:
    """measure(params) gives the Candidate, or None when the time budget skipped it."""
    ms, efs, quantizations = grid
    below, reached = max(efs) + 1, []
    for m in sorted(ms):
        for ef in sorted(e for e in efs if e < below):
            c = measure(IndexParams(SEED.metric, "bf16", m, ef))
            if c and c.reached:
                below = ef
                reached.append(c.params())
                break
    for params in sorted(reached, key=_cost)[:2]:
        for quantization in (q for q in quantizations if q != "bf16"):
            measure(replace(params, quantization=quantization))


def _cost(params: IndexParams) -> int:
    """What a build's time grows with (sizing.build_core_seconds scales with its square root)."""
    return params.m * params.ef_construction


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def project_seconds(params: IndexParams, seconds: dict[IndexParams, float]) -> float:
    """How long measuring params will take, from the measured setting of the nearest build cost (the
    same quantization first); 0 before anything is measured. Scaled up the grid in proportion to the
    cost and down by its square root, so that it errs long both ways and tune ends inside its budget:
    on a 1M-row shard of the hard mirror each doubling of ef_construction at M=8 took 1.7-1.8x the
    time, while the seed's build took 7.6x M=8/64's for 32x the cost (bench/INDEX.md)."""
    if not seconds:
        return 0.0
    near = min(seconds, key=lambda p: (abs(math.log(_cost(p) / _cost(params))), p.quantization != params.quantization))
    ratio = _cost(params) / _cost(near)
    return seconds[near] * (ratio if ratio > 1 else math.sqrt(ratio))


def _measure(ch: ClickHouse, copy: dict, params: IndexParams, targets: list, exact: list,
             target_recall: float) -> Candidate:
    """A fresh copy of the shard with the candidate's index declared (so the package needs no grant to
    drop an index), its build timed, weighed and searched."""
    scratch = copy["scratch"]
    ch.run("tune_scratch", **copy, **asdict(params))
    started = time.perf_counter()
    ch.run("tune_build", scratch=scratch)
    seconds = time.perf_counter() - started
    [(rows, index_bytes, cores)] = ch.run("tune_index_size", scratch=scratch)
    multipliers = RESCORING.get(params.quantization, (0,))
    best = None
    for ef in EF_SEARCH:
        for rescore in multipliers:
            found, ms = [], []
            for target in targets:
                t = time.perf_counter()
                found.append(_top(ch, scratch, target, **search_settings(ef, rescore)))
                ms.append(1000 * (time.perf_counter() - t))
            recall = statistics.fmean(len(set(a) & set(e)) / len(e) for a, e in zip(found, exact, strict=True))
            best = (recall, ef, rescore, statistics.median(ms))
            if recall >= target_recall:
                break
        if best[0] >= target_recall:
            break
    recall, ef, rescore, p50 = best
    return Candidate(params.m, params.ef_construction, params.quantization, rescore, rows / seconds / max(cores, 1),
                     index_bytes / max(rows, 1), ef, recall, p50, recall >= target_recall)


def _top(ch: ClickHouse, scratch: str, target, **settings) -> list[int]:
    statement = _search_statement()
    params = {"scratch": scratch, "metric": SEED.metric, "target": [float(x) for x in target], "k": K}
    return [i for (i,) in hits_rows(ch, statement, params, settings)]


@functools.cache
def _search_statement() -> str:
    """tune_search.sql, read once: it runs for every query of every candidate."""
    [statement] = sql("tune_search")
    return statement


def recommend(candidates: list[Candidate], dataset: Dataset, budget: Budget) -> tuple[Candidate | None, str]:
    """The cheapest candidate to build that reaches the target within the budget, and what bound the
    choice: the target alone, or the budget that ruled out a cheaper one."""
    reached = sorted((c for c in candidates if c.reached),
                     key=lambda c: (project(c, dataset).build_core_hours, c.index_bytes_per_row))
    if not reached:
        return None, "no candidate reached the target recall: raise M or ef_construction, or lower --target-recall"
    refusals = []
    for c in reached:
        p = project(c, dataset, budget.nodes)
        if budget.ram_gb is not None and p.ram_gb_per_node > budget.ram_gb:
            refusals.append(f"{c.label()} needs {p.ram_gb_per_node:,.0f} GB per node over --ram-gb {budget.ram_gb:g}"
                            f" on {budget.nodes} node(s)")
        elif budget.core_hours is not None and p.build_core_hours > budget.core_hours:
            refusals.append(f"{c.label()} needs {p.build_core_hours:,.0f} core-hours over --core-hours"
                            f" {budget.core_hours:g}")
        else:
            return c, ("the recall target alone: it is the cheapest to build that reaches it" if not refusals
                       else "the budget: " + "; ".join(refusals[:3]))
    return None, "no candidate reaching the target fits the budget: " + "; ".join(refusals[:3])


def _shard(ch: ClickHouse, shard: int | None) -> int:
    loaded = [s["shard"] for s in shard_status(ch) if s["loaded"]]
    if not loaded:
        raise PermanentError(f"no shard of {ch.dataset.name} is loaded: load one before tuning (tune measures on it)")
    if shard is None:
        return loaded[0]
    if shard not in loaded:
        raise PermanentError(f"shard {shard} of {ch.dataset.name} is not loaded; loaded: {loaded[:20]}")
    return shard


def report(result: dict, dataset: Dataset, budget: Budget, target_recall: float) -> str:
    """The candidates, the recommendation and why, and the plan of the whole range with the seed's
    setting and the recommended one side by side."""
    lines = [f"tune on shard {result['shard']} of {dataset.name} ({len(result['queries'])} queries, target recall@10"
             f" {target_recall:g}); synthetic or not, these are this shard's numbers: run tune on your own data",
             "", "| setting | rescoring | build rows/s per core | index bytes/row | ef_search | recall@10 | p50 |",
             "|---|---|---|---|---|---|---|"]
    for c in sorted(result["candidates"], key=lambda c: (c.quantization, c.m, c.ef_construction)):
        mark = " **recommended**" if c == result["recommended"] else ""
        lines.append(f"| {c.label()}{mark} | {f'×{c.rescore_multiplier}' if c.rescore_multiplier else '-'} |"
                     f" {c.build_rows_per_s:,.0f} | {c.index_bytes_per_row:,.0f} | {c.ef_search} |"
                     f" {c.recall_at_10:.3f}{'' if c.reached else ' (short)'} | {c.p50_ms:.1f} ms |")
    if result["skipped"]:
        lines += ["", f"skipped, as they would have ended past --max-hours {result['max_hours']:g} (projected from"
                      " the candidates measured): " + ", ".join(f"{label(p)} (~{duration(s)})"
                                                                for p, s in result["skipped"]),
                  "a larger --max-hours, or a grid narrowed with --m and --ef-construction, measures them"]
    lines += ["", f"recommended: {result['recommended'].label() if result['recommended'] else 'none'}",
              f"bound by: {result['bound']}", ""]
    lines += _side_by_side(result, dataset, budget)
    if result["plot"]:
        lines.append(f"\nPareto front: {result['plot']}")
    return "\n".join(lines)


def _seed(result: dict) -> Candidate:
    return next(c for c in result["candidates"] if (c.quantization, c.m, c.ef_construction) ==
                (SEED.quantization, SEED.m, SEED.ef_construction))


def plan(result: dict, dataset: Dataset, budget: Budget) -> dict:
    """The JSON's plan: the whole range with the seed's setting and the recommended one."""
    out = {}
    for name, c in (("seed", _seed(result)), ("recommended", result["recommended"])):
        if c is not None:
            p = project(c, dataset, budget.nodes)
            out[name] = {"index_gb_per_column": round(p.index_gb_per_column, 1),
                         "build_core_hours": round(p.build_core_hours, 1)}
    return out


def _side_by_side(result: dict, dataset: Dataset, budget: Budget) -> list[str]:
    chosen = [("the seed's", _seed(result))]
    if result["recommended"]:
        chosen.append(("recommended", result["recommended"]))
    lines = [f"plan for {dataset.name}'s {dataset.shards:,} shards (~{dataset.shards * dataset.rows_per_shard:,} rows)"
             f" on {budget.nodes} node(s), from the measured rates:", "",
             "| | setting | index per column | graphs cached per node | build |", "|---|---|---|---|---|"]
    for name, c in chosen:
        p = project(c, dataset, budget.nodes)
        lines.append(f"| {name} | {c.label()} | {p.index_gb_per_column:,.0f} GB | {p.ram_gb_per_node:,.0f} GB |"
                     f" {p.build_core_hours:,.0f} core-hours |")
    return lines


def _plot(candidates: list[Candidate], recommended: Candidate | None, dataset: Dataset, budget: Budget,
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, what, unit in ((axes[0], "build_core_hours", "build, core-hours"),
                           (axes[1], "ram_gb_per_node", "graphs cached per node, GB")):
        xs = [getattr(project(c, dataset, budget.nodes), what) for c in candidates]
        for q in dict.fromkeys(c.quantization for c in candidates):
            mine = [(x, c) for x, c in zip(xs, candidates, strict=True) if c.quantization == q]
            ax.scatter([x for x, _ in mine], [c.recall_at_10 for _, c in mine], label=q)
            for x, c in mine:
                ax.annotate(f"M{c.m}/{c.ef_construction}" + (" ★" if c == recommended else ""),
                            (x, c.recall_at_10), textcoords="offset points", xytext=(4, 3), fontsize=7)
        front = sorted(zip(xs, candidates, strict=True), key=lambda p: p[0])
        best, pareto = -1.0, []
        for x, c in front:
            if c.recall_at_10 > best:
                best = c.recall_at_10
                pareto.append((x, c.recall_at_10))
        ax.plot(*zip(*pareto, strict=True), linestyle=":", color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel(f"{unit}, {dataset.name} whole (projected)")
    axes[0].set_ylabel("recall@10 at the smallest ef_search reaching the target")
    axes[0].legend()
    fig.suptitle("tune: recall against cost (dotted: the Pareto front). Synthetic data is not CLIP's:"
                 " tune on your own shard", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recommended_setting(ch: ClickHouse, metric: str = SEED.metric) -> tuple[IndexParams, str]:
    """The index parameters the latest tune run recommended (the DAG's index_setting = tuned), and a
    line saying what it measured; a PermanentError when tune has not recommended one."""
    rows = ch.run("tune_recommended") if ch.run("table_exists", name=ch.dataset.tune_results)[0][0] else []
    if not rows:
        raise PermanentError(f"index_setting is 'tuned' but tune has recommended no setting for {ch.dataset.name}:"
                             f" run `python -m laion_ingest tune --dataset {ch.dataset.name}` on a loaded shard first")
    m, ef_construction, quantization, recall, ef, rescore, shard, target = rows[0]
    params = IndexParams(metric, quantization, m, ef_construction)
    return params, (f"tuned on shard {shard}: recall@10 {recall:.3f} (target {target:g}) at"
                    f" hnsw_candidate_list_size_for_search {ef}" + (f", rescoring ×{rescore}" if rescore else ""))
