"""Command line: every stage on its own, outside Airflow (also installed as `laion-ingest`).

    python -m laion_ingest mirror --out DIR --shards 4 --rows 20000   # generate a sample mirror
    python -m laion_ingest serve DIR --port 8000                       # serve it on 127.0.0.1
    python -m laion_ingest fetch 0 --source-url http://127.0.0.1:8000/
    python -m laion_ingest convert 0
    python -m laion_ingest load 0
    python -m laion_ingest index --m 16 --ef-construction 64
    python -m laion_ingest search --text "a dog and a cat"             # CLIP; also --image, --image-url
    python -m laion_ingest search --shard 0 --row 42 --compare         # a stored vector, with recall
    python -m laion_ingest search --dataset laion5b-100m --id 9999     # a stored vector by id
    python -m laion_ingest status
    python -m laion_ingest plan --dataset laion2b-en --nodes 4          # what a range costs
    python -m laion_ingest evaluate --queries 50                        # recall and latency
    python -m laion_ingest clip-check                                   # the CLIP model fits the data?
    python -m laion_ingest clip-export --model ViT-L/14 --out DIR       # ViT-L/14 to ONNX (needs torch)
    python -m laion_ingest rebalance                                    # after nodes joined the cluster

Every command that touches a table takes --dataset (default: LAION_DATASET, else laion400m).
"""
from __future__ import annotations

import argparse
import logging
import sys

from laion_ingest import commands, datasets, settings
from laion_ingest.errors import SettingError
from laion_ingest.redaction import redact


def main(argv: list[str] | None = None) -> int:
    """Run a stage; an error is one redacted line on stderr and exit status 1 (--traceback for the
    traceback), never a secret."""
    args = _parser().parse_args(argv)
    try:
        args.dataset = getattr(args, "dataset", None) or settings.dataset()
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

    def command(name: str, run, help: str, dataset: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        if dataset:
            s.add_argument("--dataset", choices=list(datasets.DATASETS), default=None,
                           help="default: $LAION_DATASET, else laion400m")
        s.set_defaults(run=run)
        return s

    s = command("mirror", commands.mirror, "generate a small mirror in a dataset's published file formats")
    s.add_argument("--out", required=True)
    s.add_argument("--shards", type=bounded(1, 65536), default=4, help="shards 0..N-1 (default 4)")
    s.add_argument("--rows", type=bounded(1, 10**8), default=20_000, help="nominal rows per shard (default 20000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hard", action="store_true",
                   help="vectors hard for an index: thousands of clusters, a power-law spectrum (for tune)")

    s = command("serve", commands.serve, "serve a directory over HTTP on 127.0.0.1, with Range support", False)
    s.add_argument("directory")
    s.add_argument("--port", type=int, default=8000)

    s = command("fetch", commands.fetch, "download a shard's files into the work directory")
    s.add_argument("shard", type=bounded(0, 65535))
    _source_arg(s)
    s.add_argument("--force", action="store_true", help="fetch again what the work directory already holds")

    s = command("convert", commands.convert, "convert a fetched shard to one Parquet file")
    s.add_argument("shard", type=bounded(0, 65535))

    s = command("load", commands.load, "load a converted shard (or read a slice in place) into ClickHouse")
    s.add_argument("shard", type=bounded(0, 65535))
    _source_arg(s)

    s = command("index", commands.index, "add and build the HNSW vector indexes where missing")
    _index_args(s)

    s = command("search", commands.search, "nearest rows to a text, an image or a stored row, through the index")
    query = s.add_mutually_exclusive_group()
    query.add_argument("--text", help="a text query, encoded by the dataset's CLIP model")
    query.add_argument("--image", metavar="PATH", help="an image file, encoded by the dataset's CLIP model")
    query.add_argument("--image-url", metavar="URL", help="an image on the web, encoded by the dataset's CLIP model")
    query.add_argument("--id", type=bounded(0, 2**64 - 1), default=None, help="query with the stored vector of this id")
    query.add_argument("--shard", type=bounded(0, 65535), default=0,
                       help="query with the stored vector of this shard's --row (default 0/0)")
    s.add_argument("--row", type=bounded(0, 10**9 - 1), default=0)
    s.add_argument("--query-column", default=None,
                   help="which stored vector of --id or --shard/--row (default: text_embedding where the dataset"
                        " has it, else its image vectors)")
    s.add_argument("--column", default=None, help="the column searched (default: the dataset's image vectors)")
    s.add_argument("-k", type=bounded(1, 10_000), default=10,
                   help="hits, 1..10000 (above 1000 the query raises max_limit_for_vector_search_queries)")
    s.add_argument("--ef", type=bounded(1, 100_000), default=None,
                   help="hnsw_candidate_list_size_for_search (default: the one `evaluate` chose, else 256)")
    s.add_argument("--nsfw", action="append", default=[], metavar="{UNLIKELY,UNSURE,NSFW}",
                   help="keep rows with this NSFW tag (repeat for several)")
    s.add_argument("--min-similarity", default=None, help="keep rows with similarity >= this, -1..1")
    s.add_argument("--min-width", default=None, help="keep images at least this wide (pixels)")
    s.add_argument("--compare", action="store_true", help="also search by brute force and print recall@k")
    s.add_argument("--json", action="store_true", help="hits as JSON lines")

    s = command("evaluate", commands.evaluate, "recall@k and latency of the vector index at several search settings")
    s.add_argument("--queries", type=bounded(1, 10_000), default=50, help="sampled rows per kind of query (default 50)")
    s.add_argument("-k", type=bounded(1, 1000), default=10)
    s.add_argument("--ef", default="16,32,64,128,256",
                   help="hnsw_candidate_list_size_for_search values, comma-separated (default 16,32,64,128,256)")
    s.add_argument("--target-recall", type=checked(settings.number, "--target-recall", 0, 1), default=0.95,
                   help="the smallest ef reaching it is chosen (0.95)")
    s.add_argument("--shards", type=bounded(1, 65536), default=2,
                   help="loaded shards (parts) to measure on, the first ones (default 2)")
    s.add_argument("--plot", default=None, help="PNG path (default <work dir>/search_quality_<dataset>.png)")

    s = command("tune", commands.tune, "the cheapest HNSW setting reaching a recall target, measured on a loaded shard")
    s.add_argument("--shard", type=bounded(0, 65535), default=None, help="the loaded shard (default: the first)")
    s.add_argument("--target-recall", type=checked(settings.number, "--target-recall", 0, 1), default=0.95)
    s.add_argument("--queries", type=bounded(1, 10_000), default=50, help="sampled queries (default 50)")
    s.add_argument("--ram-gb", type=checked(settings.number, "--ram-gb", 0.001, 1e6), default=None,
                   help="RAM per node for the graphs (the index cache), the dataset's whole range")
    s.add_argument("--nodes", type=bounded(1, 1000), default=1, help="ClickHouse nodes the shards spread over")
    s.add_argument("--core-hours", type=checked(settings.number, "--core-hours", 0.001, 1e9), default=None,
                   help="the most the whole range's index build may take")
    s.add_argument("--m", default="8,16,32,64", help="HNSW M values of the grid")
    s.add_argument("--ef-construction", default="64,128,256", help="ef_construction values of the grid")
    s.add_argument("--quantizations", default="bf16,i8,b1", help="of bf16, i8, b1 (bf16 is always walked)")
    s.add_argument("--max-hours", type=checked(settings.number, "--max-hours", 0, 1000), default=1.0,
                   help="time budget: candidates that would end past it are skipped and reported (default 1;"
                        " the seed's setting is always measured)")
    s.add_argument("--plot", default=None, help="Pareto PNG path (default <work dir>/tune_<dataset>.png)")
    s.add_argument("--json", action="store_true", help="also one JSON object on the last line")

    s = command("clip-check", commands.clip_check, "does the dataset's CLIP model match its stored vectors?")
    s.add_argument("--captions", type=bounded(1, 100_000), default=200, help="stored captions to encode (200)")

    s = command("clip-udf", commands.clip_udf,
                "write encode_text()/encode_image() (and *_l14) for a ClickHouse server's user_scripts_path", False)
    s.add_argument("directory", help="the server's user_scripts_path, e.g. /var/lib/clickhouse/user_scripts")

    s = command("clip-export", commands.clip_export, "export a CLIP model's two towers to ONNX (needs torch)", False)
    s.add_argument("--model", choices=list(datasets.MODELS), default="ViT-L/14")
    s.add_argument("--out", required=True, help="the model directory to write (text/, vision/)")
    s.add_argument("--source", default=None,
                   help="a Hugging Face model directory or id (default: OpenAI's, e.g. openai/clip-vit-large-patch14)")

    command("rebalance", commands.rebalance, "move each shard to the node the placement rule gives it (new nodes)")

    s = command("plan", commands.plan, "rows, disk, index RAM per node, cache and build core-hours of a range")
    s.add_argument("--shards", type=shard_range, default=None, help="A-B or N (default: the whole dataset)")
    s.add_argument("--nodes", type=bounded(1, 1000), default=1, help="ClickHouse nodes the shards spread over")
    s.add_argument("--ram-gb", type=checked(settings.number, "--ram-gb", 0.001, 1e6), default=256,
                   help="RAM of a node, GB (default 256)")
    _index_args(s)

    s = command("status", commands.status, "shards loaded, rows and failures, from the ledger")
    s.add_argument("--json", action="store_true")
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
    """An argparse type: "A-B" or "N", A <= B (the dataset's range is checked by the command)."""
    first, _, last = text.partition("-")
    shard = bounded(0, 65535)
    low, high = shard(first), shard(last or first)
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r}: {low} is after {high}")
    return low, high


def _source_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--source-url", type=checked(settings.source_url_value, "--source-url"), default=None,
                   help="the folder holding the dataset's files (default: $LAION_SOURCE_URL for LAION_DATASET's,"
                        " else the dataset's public location)")


def _index_args(s: argparse.ArgumentParser) -> None:
    from laion_ingest.index import IndexParams

    d = IndexParams()
    s.add_argument("--metric", default=d.metric, choices=["cosineDistance", "L2Distance"])
    s.add_argument("--quantization", default=d.quantization, choices=["f64", "f32", "f16", "bf16", "i8", "b1"])
    s.add_argument("--m", type=bounded(2, 512), default=d.m)
    s.add_argument("--ef-construction", type=bounded(1, 4096), default=d.ef_construction)


if __name__ == "__main__" and __package__ == "laion_ingest":  # python -m, not a loader importing files
    sys.exit(main())
