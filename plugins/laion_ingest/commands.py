"""What each command of `python -m laion_ingest` does (the parser is __main__.py): a few lines each,
calling the stage it names. Results go to stdout, logs and progress to stderr."""
from __future__ import annotations

import dataclasses
import json
import logging
import time

from laion_ingest import datasets, settings
from laion_ingest.errors import SettingError


def _dataset(args) -> datasets.Dataset:
    return datasets.get(args.dataset)  # main() set it: --dataset, else LAION_DATASET


def _attempt(args):
    """The command's shard of its dataset, refused outside the dataset's range."""
    from laion_ingest.ledger import Attempt

    dataset = _dataset(args)
    dataset.check_range(args.shard, args.shard)
    return Attempt(args.shard, dataset)


def mirror(args) -> None:
    from laion_ingest.sample.mirror import generate_mirror

    rows = generate_mirror(args.out, range(args.shards), args.rows, args.seed, dataset=args.dataset, hard=args.hard)
    print(json.dumps({"out": args.out, "dataset": args.dataset, "rows": rows}))


def serve(args) -> None:
    from laion_ingest.sample.server import serve_forever

    serve_forever(args.directory, "127.0.0.1", args.port)


def fetch(args) -> None:
    from laion_ingest import pipeline

    attempt = _attempt(args)
    source = args.source_url or settings.source_url(attempt.dataset.name)
    print(json.dumps(pipeline.fetch(attempt, source, args.force)))


def convert(args) -> None:
    from laion_ingest import pipeline

    print(pipeline.convert(_attempt(args)))


def load(args) -> None:
    from laion_ingest import pipeline

    attempt = _attempt(args)
    if attempt.dataset.layout == "parquet":  # read in place: there is nothing fetched to load
        print(pipeline.load_slice(attempt, args.source_url or settings.source_url(attempt.dataset.name)))
    else:
        print(pipeline.load(attempt))


def rebalance(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.rebalance import rebalance

    with ClickHouse(_dataset(args)) as ch:
        for move in rebalance(ch):
            print(json.dumps(move))


def index(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.index import IndexParams, build_indexes

    with ClickHouse(_dataset(args)) as ch:
        build_indexes(ch, IndexParams(args.metric, args.quantization, args.m, args.ef_construction))


def search(args) -> None:
    from laion_ingest import clip
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.search import Filters, id_vector, recall, row_vector, search

    filters = Filters(tuple(args.nsfw), args.min_similarity, args.min_width)
    dataset = _dataset(args)
    started = time.perf_counter()
    with ClickHouse(dataset) as ch:
        if args.text is not None:
            target = clip.text_encoder(dataset.model)([args.text])[0]
        elif args.image or args.image_url:
            target = clip.image_encoder(dataset.model)([clip.read_image(args.image or args.image_url)])[0]
        else:  # a stored vector: the text's by default, to find the images a caption describes
            query_column = args.query_column or ("text_embedding" if "text_embedding" in dataset.vectors else None)
            target = (id_vector(ch, query_column, args.id) if args.id is not None
                      else row_vector(ch, query_column, args.shard, args.row))
        encoded = time.perf_counter()
        ann = search(ch, target, args.column, args.k, filters=filters, ef=args.ef)
        searched = time.perf_counter()
        exact = search(ch, target, args.column, args.k, exact=True, filters=filters) if args.compare else None
    logging.info("query vector in %.0f ms (model load and connection included), search in %.0f ms",
                 1000 * (encoded - started), 1000 * (searched - encoded))
    if args.json:
        for h in ann:
            print(json.dumps(dataclasses.asdict(h), ensure_ascii=False))
        return
    for title, hits in (("HNSW index", ann), ("brute force", exact)):
        if hits is None:
            continue
        print(f"top {args.k} by {title}:")
        for h in hits:
            print(f"  {h.distance:.4f}  {h.nsfw or '':8}  {h.url}  {(h.caption or '')[:70]!r}")
    if exact is not None:
        print(f"recall@{args.k}: {recall(ann, exact):.2f}")


def evaluate(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.evaluate import evaluate

    ef_values = tuple(settings.number("--ef", v, 1, 100_000, whole=True) for v in args.ef.split(","))
    plot = args.plot or settings.work_dir() / f"search_quality_{args.dataset}.png"
    with ClickHouse(_dataset(args)) as ch:
        result = evaluate(ch, args.queries, args.k, ef_values, args.target_recall, plot, args.shards)
    for r in result["rows"]:
        rescoring = f" rescoring ×{r['rescore']:<2}" if r["rescore"] else ""
        print(f"{r['kind']:12} ef {r['ef']:5}{rescoring}  recall@{r['k']} {r['recall']:.3f}  p50 {r['p50_ms']:7.1f} ms"
              f"  p95 {r['p95_ms']:7.1f} ms  (brute force p50 {r['exact_p50_ms']:.1f} ms)")
    print(f"measured on shards {result['shards']}")
    print(f"chosen hnsw_candidate_list_size_for_search: {result['chosen_ef']}"
          + (f", with rescoring ×{result['chosen_rescore']}" if result["chosen_rescore"] else "")
          + f"; plot: {result['plot']}")


def tune(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.tune import Budget, plan, report, tune

    ints = lambda name, text, low, high: tuple(settings.number(name, v, low, high, whole=True)  # noqa: E731
                                               for v in text.split(","))
    quantizations = tuple(dict.fromkeys(["bf16", *args.quantizations.split(",")]))
    if set(quantizations) - {"bf16", "i8", "b1"}:
        raise SettingError(f"--quantizations: {args.quantizations[:40]!r} is not a list of bf16, i8, b1")
    grid = (ints("--m", args.m, 2, 512), ints("--ef-construction", args.ef_construction, 1, 4096), quantizations)
    budget = Budget(args.ram_gb, args.nodes, args.core_hours)
    dataset = _dataset(args)
    plot = args.plot or settings.work_dir() / f"tune_{args.dataset}.png"
    with ClickHouse(dataset) as ch:
        result = tune(ch, args.shard, args.target_recall, args.queries, budget, grid, plot, args.max_hours)
    print(report(result, dataset, budget, args.target_recall))
    if args.json:
        chosen = result["recommended"]
        print(json.dumps({"candidates": [c.public() for c in result["candidates"]],
                          "recommended": chosen.public() if chosen else None,
                          "plan": plan(result, dataset, budget),
                          "skipped": [{"m": p.m, "ef_construction": p.ef_construction, "quantization": p.quantization,
                                       "projected_seconds": round(s, 2)} for p, s in result["skipped"]]}))


def clip_check(args) -> int:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.clip_check import MATCH, check

    dataset = _dataset(args)
    with ClickHouse(dataset) as ch:
        r = check(ch, args.captions)
    row, caption, cosine = r["worst"]
    print(f"{r['captions']} captions of shard {r['shard']} encoded and compared with their stored text_embedding:\n"
          f"  cosine similarity median {r['median']:.4f}, 5th percentile {r['p5']:.4f}, min {r['min']:.4f}"
          f" (row {row}: {(caption or '')[:60]!r})")
    if r["matches"]:
        print("the model matches the data: text queries are encoded as the stored vectors were")
        return 0
    print(f"the model does NOT match the data (median below {MATCH}): text queries will find unrelated rows."
          f" {dataset.name} needs OpenAI's CLIP {dataset.model.name} in {dataset.model.setting} (docs/search.md)")
    return 1


def clip_udf(args) -> None:
    from laion_ingest.clip_udf import install, script_settings

    out = install(args.directory)
    print(f"wrote {out}/clip_functions.xml and {out}/laion_clip_udf, with "
          + ", ".join(f"{k}={v}" for k, v in script_settings().items())
          + f"; the server's config.xml needs:\n  <user_scripts_path>{out}</user_scripts_path>\n"
          f"  <user_defined_executable_functions_config>{out}/*.xml</user_defined_executable_functions_config>")


def clip_export(args) -> None:
    from laion_ingest.clip_export import export

    out = export(datasets.MODELS[args.model], args.out, args.source)
    print(f"wrote {out}/text and {out}/vision; set {datasets.MODELS[args.model].setting}={out}")


def plan(args) -> None:
    from laion_ingest.index import IndexParams
    from laion_ingest.sizing import estimate, report

    dataset = _dataset(args)
    first, last = args.shards or (0, dataset.shards - 1)
    dataset.check_range(first, last)
    params = IndexParams(args.metric, args.quantization, args.m, args.ef_construction)
    measured = _measured_cost(dataset, params)
    print(report(estimate(dataset, first, last, params, args.nodes, args.ram_gb, measured), params))


def _measured_cost(dataset: datasets.Dataset, params):
    """tune's measurement of the setting where ClickHouse holds one. plan needs no database: it opens
    none where the embedded one was never created, and says so where a server cannot be reached."""
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.engines import QueryError
    from laion_ingest.index import measured_cost

    if not settings.clickhouse_conn_id() and not settings.chdb_path().exists():
        return None
    try:
        with ClickHouse(dataset) as ch:
            return measured_cost(ch, params)
    except QueryError as exc:
        print(f"(tune's measurements not read, ClickHouse: {str(exc)[:200]})")
        return None


def status(args) -> None:
    from laion_ingest.status import report

    print(report(_dataset(args), as_json=args.json))
