"""Command line: every stage on its own, outside Airflow.

    python -m laion_ingest mirror --out DIR --shards 4 --rows 20000   # generate a sample mirror
    python -m laion_ingest serve DIR --port 8000                       # serve it on 127.0.0.1
    python -m laion_ingest fetch 0 --source-url http://127.0.0.1:8000/
    python -m laion_ingest convert 0
    python -m laion_ingest load 0
    python -m laion_ingest index --m 16 --ef-construction 64
    python -m laion_ingest search --text "a dog and a cat"             # CLIP; also --image, --image-url
    python -m laion_ingest search --shard 0 --row 42 --compare         # a stored vector, with recall
    python -m laion_ingest status
    python -m laion_ingest plan --shards 0-409 --nodes 4 --ram-gb 256   # what a range costs
    python -m laion_ingest evaluate --queries 50                          # recall and latency
    python -m laion_ingest clip-check                                     # the CLIP model fits the data?
    python -m laion_ingest rebalance                                      # after nodes joined the cluster
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from laion_ingest import settings
from laion_ingest.errors import SettingError
from laion_ingest.redaction import redact


def main(argv: list[str] | None = None) -> int:
    """Run a stage; an error is one redacted line on stderr and exit status 1 (--traceback for the
    traceback), never a secret."""
    args = _parser().parse_args(argv)
    try:
        if settings.clickhouse_conn_id() or settings.source_conn_id():
            import airflow.sdk  # noqa: F401  the server's connection is Airflow's; importing it sets up its logging
        # Logs and progress go to stderr, whatever Airflow configured: stdout is each stage's result.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        return args.run(args) or 0
    except Exception as exc:
        if args.traceback:
            raise
        print(f"python -m laion_ingest {args.stage}: error: {redact(exc)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m laion_ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--traceback", action="store_true", help="on an error, show the traceback, not one line")
    sub = p.add_subparsers(required=True, metavar="STAGE", dest="stage")

    s = sub.add_parser("mirror", help="generate a small mirror in the LAION-400M file formats")
    s.add_argument("--out", required=True)
    s.add_argument("--shards", type=int, default=4, help="shards 0..N-1 (default 4)")
    s.add_argument("--rows", type=int, default=20_000, help="nominal rows per shard (default 20000)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=_mirror)

    s = sub.add_parser("serve", help="serve a directory over HTTP on 127.0.0.1, with Range support")
    s.add_argument("directory")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(run=_serve)

    s = sub.add_parser("fetch", help="download a shard's three files into the work directory")
    s.add_argument("shard", type=bounded(0, settings.SHARD_COUNT - 1))
    s.add_argument("--source-url", type=checked(settings.source_url_value, "--source-url"), default=None,
                   help=f"default: $LAION_SOURCE_URL or {settings.LAION_URL}")
    s.add_argument("--force", action="store_true", help="fetch again what the work directory already holds")
    s.set_defaults(run=_fetch)

    s = sub.add_parser("convert", help="convert a fetched shard to one Parquet file")
    s.add_argument("shard", type=bounded(0, settings.SHARD_COUNT - 1))
    s.set_defaults(run=_convert)

    s = sub.add_parser("load", help="load a converted shard into ClickHouse (replaces the shard)")
    s.add_argument("shard", type=bounded(0, settings.SHARD_COUNT - 1))
    s.set_defaults(run=_load)

    s = sub.add_parser("index", help="add and build the HNSW vector indexes where missing")
    _index_args(s)
    s.set_defaults(run=_index)

    s = sub.add_parser("search", help="nearest rows to a text, an image or a stored row, through the HNSW index")
    query = s.add_mutually_exclusive_group()
    query.add_argument("--text", help="a text query, encoded by CLIP (LAION_CLIP_MODEL_DIR)")
    query.add_argument("--image", metavar="PATH", help="an image file, encoded by CLIP")
    query.add_argument("--image-url", metavar="URL", help="an image on the web, encoded by CLIP")
    query.add_argument("--shard", type=bounded(0, settings.SHARD_COUNT - 1), default=0,
                       help="query with the stored vector of this row (default 0/0)")
    s.add_argument("--row", type=bounded(0, 10**9 - 1), default=0)
    s.add_argument("--query-column", default="text_embedding", help="which stored vector of --shard/--row")
    s.add_argument("--column", default="image_embedding", choices=["image_embedding", "text_embedding"],
                   help="the column searched (default image_embedding)")
    s.add_argument("-k", type=bounded(1, 10_000), default=10,
                   help="hits, 1..10000 (above 100 the query raises max_limit_for_vector_search_queries)")
    s.add_argument("--ef", type=bounded(1, 100_000), default=None,
                   help="hnsw_candidate_list_size_for_search (default: the one `evaluate` chose, else 256)")
    s.add_argument("--nsfw", action="append", default=[], metavar="{UNLIKELY,UNSURE,NSFW}",
                   help="keep rows with this NSFW tag (repeat for several)")
    s.add_argument("--min-similarity", default=None, help="keep rows with similarity >= this, -1..1")
    s.add_argument("--min-width", default=None, help="keep images at least this wide (pixels)")
    s.add_argument("--compare", action="store_true", help="also search by brute force and print recall@k")
    s.add_argument("--json", action="store_true", help="hits as JSON lines")
    s.set_defaults(run=_search)

    s = sub.add_parser("evaluate", help="recall@k and latency of the vector index at several search settings")
    s.add_argument("--queries", type=bounded(1, 10_000), default=50, help="sampled rows per kind of query (default 50)")
    s.add_argument("-k", type=bounded(1, 1000), default=10)
    s.add_argument("--ef", default="16,32,64,128,256",
                   help="hnsw_candidate_list_size_for_search values, comma-separated (default 16,32,64,128,256)")
    s.add_argument("--target-recall", type=checked(settings.number, "--target-recall", 0, 1), default=0.95,
                   help="the smallest ef reaching it is chosen (0.95)")
    s.add_argument("--shards", type=bounded(1, settings.SHARD_COUNT), default=2,
                   help="loaded shards (parts) to measure on, the first ones (default 2)")
    s.add_argument("--plot", default=None, help="PNG path (default <work dir>/search_quality.png)")
    s.set_defaults(run=_evaluate)

    s = sub.add_parser("clip-check", help="does the CLIP model (LAION_CLIP_MODEL_DIR) match the stored vectors?")
    s.add_argument("--captions", type=bounded(1, 100_000), default=200, help="stored captions to encode (200)")
    s.set_defaults(run=_clip_check)

    s = sub.add_parser("clip-udf",
                       help="write encode_text()/encode_image() for a ClickHouse server's user_scripts_path")
    s.add_argument("directory", help="the server's user_scripts_path, e.g. /var/lib/clickhouse/user_scripts")
    s.set_defaults(run=_clip_udf)

    s = sub.add_parser("rebalance",
                       help="move each shard to the node the placement rule gives it (after nodes were added)")
    s.set_defaults(run=_rebalance)

    s = sub.add_parser("plan", help="rows, disk, index RAM per node, cache and build core-hours of a shard range")
    s.add_argument("--shards", type=shard_range, default=(0, settings.SHARD_COUNT - 1), help="A-B or N (default 0-409)")
    s.add_argument("--nodes", type=bounded(1, 1000), default=1, help="ClickHouse nodes the shards spread over")
    s.add_argument("--ram-gb", type=checked(settings.number, "--ram-gb", 0.001, 1e6), default=256,
                   help="RAM of a node, GB (default 256)")
    _index_args(s)
    s.set_defaults(run=_plan)

    s = sub.add_parser("status", help="shards loaded, rows and failures, from the ledger")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=_status)
    return p


def checked(check, *args):
    """An argparse type from one of settings.py's checks: its SettingError becomes argparse's usage error."""
    def parse(text: str):
        try:
            return check(args[0], text, *args[1:])
        except SettingError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def bounded(low: int, high: int):
    """An argparse type: a whole number in low..high, refused naming the value otherwise (the SQL types
    behind them, UInt16 for shards, would wrap a larger one silently)."""
    return checked(settings.number, None, low, high, True)


def shard_range(text: str) -> tuple[int, int]:
    """An argparse type: "A-B" or "N", shards in 0..409, A <= B."""
    first, _, last = text.partition("-")
    shard = bounded(0, settings.SHARD_COUNT - 1)
    low, high = shard(first), shard(last or first)
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r}: {low} is after {high}")
    return low, high


def _index_args(s: argparse.ArgumentParser) -> None:
    from laion_ingest.index import IndexParams

    d = IndexParams()
    s.add_argument("--metric", default=d.metric, choices=["cosineDistance", "L2Distance"])
    s.add_argument("--quantization", default=d.quantization, choices=["f64", "f32", "f16", "bf16", "i8", "b1"])
    s.add_argument("--m", type=bounded(2, 512), default=d.m)
    s.add_argument("--ef-construction", type=bounded(1, 4096), default=d.ef_construction)


def _mirror(args) -> None:
    from laion_ingest.sample.mirror import generate_mirror

    rows = generate_mirror(args.out, range(args.shards), args.rows, args.seed)
    print(json.dumps({"out": args.out, "rows": rows}))


def _serve(args) -> None:
    from laion_ingest.sample.server import serve_forever

    serve_forever(args.directory, "127.0.0.1", args.port)


def _fetch(args) -> None:
    from laion_ingest import pipeline
    from laion_ingest.ledger import Attempt

    print(json.dumps(pipeline.fetch(Attempt(args.shard), args.source_url or settings.source_url(), args.force)))


def _convert(args) -> None:
    from laion_ingest import pipeline
    from laion_ingest.ledger import Attempt

    print(pipeline.convert(Attempt(args.shard)))


def _load(args) -> None:
    from laion_ingest import pipeline
    from laion_ingest.ledger import Attempt

    print(pipeline.load(Attempt(args.shard)))


def _rebalance(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.rebalance import rebalance

    with ClickHouse() as ch:
        for move in rebalance(ch):
            print(json.dumps(move))


def _index(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.index import IndexParams, build_indexes

    with ClickHouse() as ch:
        build_indexes(ch, IndexParams(args.metric, args.quantization, args.m, args.ef_construction))


def _search(args) -> None:
    import time

    from laion_ingest import clip
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.search import Filters, recall, row_vector, search

    filters = Filters(tuple(args.nsfw), args.min_similarity, args.min_width)
    started = time.perf_counter()
    with ClickHouse() as ch:
        if args.text is not None:
            target = clip.text_encoder()([args.text])[0]
        elif args.image or args.image_url:
            target = clip.image_encoder()([clip.read_image(args.image or args.image_url)])[0]
        else:
            target = row_vector(ch, args.query_column, args.shard, args.row)
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
            print(f"  {h.distance:.4f}  {h.nsfw:8}  {h.url}  {(h.caption or '')[:70]!r}")
    if exact is not None:
        print(f"recall@{args.k}: {recall(ann, exact):.2f}")


def _evaluate(args) -> None:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.evaluate import evaluate

    ef_values = tuple(settings.number("--ef", v, 1, 100_000, whole=True) for v in args.ef.split(","))
    plot = args.plot or settings.work_dir() / "search_quality.png"
    with ClickHouse() as ch:
        result = evaluate(ch, args.queries, args.k, ef_values, args.target_recall, plot, args.shards)
    for r in result["rows"]:
        rescoring = f" rescoring ×{r['rescore']:<2}" if r["rescore"] else ""
        print(f"{r['kind']:12} ef {r['ef']:5}{rescoring}  recall@{r['k']} {r['recall']:.3f}  p50 {r['p50_ms']:7.1f} ms"
              f"  p95 {r['p95_ms']:7.1f} ms  (brute force p50 {r['exact_p50_ms']:.1f} ms)")
    print(f"measured on shards {result['shards']}")
    print(f"chosen hnsw_candidate_list_size_for_search: {result['chosen_ef']}"
          + (f", with rescoring ×{result['chosen_rescore']}" if result["chosen_rescore"] else "")
          + f"; plot: {result['plot']}")


def _clip_check(args) -> int:
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.clip_check import MATCH, check

    with ClickHouse() as ch:
        r = check(ch, args.captions)
    row, caption, cosine = r["worst"]
    print(f"{r['captions']} captions of shard {r['shard']} encoded and compared with their stored text_embedding:\n"
          f"  cosine similarity median {r['median']:.4f}, 5th percentile {r['p5']:.4f}, min {r['min']:.4f}"
          f" (row {row}: {(caption or '')[:60]!r})")
    if r["matches"]:
        print("the model matches the data: text queries are encoded as the stored vectors were")
        return 0
    print(f"the model does NOT match the data (median below {MATCH}): text queries will find unrelated rows."
          " LAION-400M needs OpenAI's CLIP ViT-B/32 (docs/search.md)")
    return 1


def _clip_udf(args) -> None:
    from laion_ingest.clip_udf import install, script_settings

    out = install(args.directory)
    print(f"wrote {out}/clip_functions.xml and {out}/laion_clip_udf, with "
          + ", ".join(f"{k}={v}" for k, v in script_settings().items())
          + f"; the server's config.xml needs:\n  <user_scripts_path>{out}</user_scripts_path>\n"
          f"  <user_defined_executable_functions_config>{out}/*.xml</user_defined_executable_functions_config>")


def _plan(args) -> None:
    from laion_ingest.index import IndexParams
    from laion_ingest.sizing import estimate, report

    params = IndexParams(args.metric, args.quantization, args.m, args.ef_construction)
    print(report(estimate(*args.shards, params, args.nodes, args.ram_gb), params))


def _status(args) -> None:
    from laion_ingest.status import report

    print(report(as_json=args.json))


if __name__ == "__main__" and __package__ == "laion_ingest":  # python -m, not a loader importing files
    sys.exit(main())
