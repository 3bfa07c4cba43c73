"""`python -m laion_ingest evaluate`: what the vector index gives, measured on the loaded table.

Sampled rows' vectors are the queries: text→image (a caption's vector against image_embedding,
what users search) and image→image. For each, the exact top k (a brute-force scan) is compared with
the index's top k at several `hnsw_candidate_list_size_for_search` values; recall@k and the p50/p95
latency of each go to the table `laion_search_quality` and to a PNG (recall against latency, one
line per kind of query). The smallest setting that reaches the target recall for both is recorded
as chosen, and `search` uses it by default from then on.

Rescoring: an index quantized to i8 or b1 ranks by approximate distances. For those, each setting is
measured again with `vector_search_with_rescoring = 1` and the index fetching 2-16 times k candidates
(`vector_search_index_fetch_multiplier`), whose exact distances then decide the top k. Plain settings are
preferred. Among rescored ones the smallest multiplier is preferred, then the smallest ef.

It runs on a few shards (two by default), not the table: each shard is one part with its own graph,
searched on its own, so recall is a property of the part, and an exact top k over the whole table
would scan all of it (1.6 TB of vectors for LAION-400M) for every query. `WHERE shard IN (...)`
prunes the other partitions for both the exact and the indexed search.
"""
from __future__ import annotations

import re
import statistics
import time
import uuid
from pathlib import Path

from laion_ingest import search_quality
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.datasets import Dataset
from laion_ingest.errors import PermanentError
from laion_ingest.ledger import shard_status
from laion_ingest.redaction import logger
from laion_ingest.search import hits, recall, with_condition
from laion_ingest.search_quality import search_settings

log = logger(__name__)

RESCORING = {"i8": (2, 4), "b1": (4, 16)}  # fetch multipliers measured with rescoring, by quantization


def kinds(dataset: Dataset) -> dict[str, tuple[str, str]]:
    """The kinds of query measured: text→image (a caption's vector against the images, what users
    search) where the dataset has text vectors, and image→image."""
    image = dataset.vectors[0]
    found = {"text→image": ("text_embedding", image)} if "text_embedding" in dataset.vectors else {}
    return {**found, "image→image": (image, image)}


def evaluate(ch: ClickHouse, queries: int = 50, k: int = 10, ef_values: tuple[int, ...] = (16, 32, 64, 128, 256),
             target_recall: float = 0.95, plot: Path | None = None, shards: int = 2) -> dict:
    """Measure on the first `shards` loaded shards, store and plot; returns {"run_id", "rows": [...],
    "chosen_ef", "chosen_rescore", "plot", "shards"}."""
    sample = [s["shard"] for s in shard_status(ch) if s["loaded"]][:shards]
    if not sample:
        raise PermanentError("no shard is loaded: load shards and build their vector indexes before evaluating")
    [(index,)] = ch.each_node()[0].run("vector_index_type", name=next(iter(ch.dataset.indexes))) or [(None,)]
    if index is None:
        raise PermanentError(f"{ch.dataset.table} has no vector index to evaluate: build it first"
                             " (python -m laion_ingest index)")
    search_quality.prepare(ch)
    statement = with_condition("search_ann", "shard IN {shards:Array(UInt16)}")
    quantization = re.search(r"'(f64|f32|f16|bf16|i8|b1)'", index)
    setups = [(ef, 0) for ef in ef_values] + \
        [(ef, m) for m in RESCORING.get(quantization and quantization[1], ()) for ef in ef_values]
    run_id, rows = uuid.uuid4().hex[:12], []
    for kind, (query_column, column) in kinds(ch.dataset).items():
        targets = [t for (t,) in ch.run("sample_vectors", column=query_column, n=queries, shards=sample)]
        exact, exact_ms = _top_k(ch, statement, sample, targets, column, k, use_skip_indexes=0)
        for ef, rescore in setups:
            ann, ms = _top_k(ch, statement, sample, targets, column, k, **search_settings(ef, rescore))
            row = {"kind": kind, "ef": ef, "rescore": rescore, "k": k, "queries": len(targets), "shards": sample,
                   "recall": statistics.fmean(recall(a, e) for a, e in zip(ann, exact, strict=True)),
                   "p50_ms": _percentile(ms, 50), "p95_ms": _percentile(ms, 95),
                   "exact_p50_ms": _percentile(exact_ms, 50)}
            rows.append(row)
            log.info("%s, ef %d%s: recall@%d %.3f, p50 %.1f ms, p95 %.1f ms (brute force p50 %.1f ms)",
                     kind, ef, f", rescoring ×{rescore}" if rescore else "", k, row["recall"], row["p50_ms"],
                     row["p95_ms"], row["exact_p50_ms"])
    worst = {setup: min(r["recall"] for r in rows if (r["ef"], r["rescore"]) == setup) for setup in setups}
    reaching = [(rescore, ef) for (ef, rescore), recall in worst.items() if recall >= target_recall]
    if reaching:
        chosen_rescore, chosen = min(reaching)
    else:
        chosen, chosen_rescore = max(worst, key=worst.get)
        log.warning("no setting reached recall %.2f; choosing the best, ef %d%s", target_recall, chosen,
                    f" with rescoring ×{chosen_rescore}" if chosen_rescore else "")
    search_quality.record(ch, run_id, index, target_recall, (chosen, chosen_rescore), rows)
    log.info("chosen: %s (recall target %.2f)", search_settings(chosen, chosen_rescore), target_recall)
    if plot:
        _plot(rows, index, (chosen, chosen_rescore), plot)
        log.info("plot: %s", plot)
    return {"run_id": run_id, "rows": rows, "chosen_ef": chosen, "chosen_rescore": chosen_rescore,
            "plot": str(plot) if plot else None, "shards": sample}


def _top_k(ch: ClickHouse, statement: str, shards: list[int], targets: list, column: str, k: int,
           **settings) -> tuple[list, list[float]]:
    found, ms = [], []
    for target in targets:
        started = time.perf_counter()
        params = {"column": column, "target": [float(x) for x in target], "k": k, "shards": shards}
        found.append(hits(ch, statement, params, **settings))
        ms.append(1000 * (time.perf_counter() - started))
    return found, ms


def _percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _plot(rows: list[dict], index: str, chosen: tuple[int, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, rescore in dict.fromkeys((r["kind"], r["rescore"]) for r in rows):
        mine = [r for r in rows if (r["kind"], r["rescore"]) == (kind, rescore)]
        ax.plot([r["p50_ms"] for r in mine], [r["recall"] for r in mine], marker="o",
                label=kind + (f", rescoring ×{rescore}" if rescore else ""))
        for r in mine:
            ax.annotate(f"ef {r['ef']}" + (" (chosen)" if (r["ef"], r["rescore"]) == chosen else ""),
                        (r["p50_ms"], r["recall"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.axvline(mine[0]["exact_p50_ms"], linestyle=":", color=ax.lines[-1].get_color(), linewidth=1)
    ax.set_xlabel("p50 latency per query, ms (dotted: brute force)")
    ax.set_ylabel(f"recall@{rows[0]['k']}")
    ax.set_title(index, fontsize=8)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
