"""laion_ingest: the LAION family's embeddings into ClickHouse, one mapped task per shard of the chosen
dataset, then the HNSW vector indexes. The work lives in plugins/laion_ingest; this file only wires it
to Airflow. See README.md for the three usual jobs (load everything, backfill a range, reload a shard)."""
from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from airflow.sdk import Asset, AssetAlias, Param, PokeReturnValue, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

from laion_ingest import dag_settings as cfg
from laion_ingest import datasets, pipeline, settings, work_space
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError, SettingError
from laion_ingest.evaluate import evaluate
from laion_ingest.index import IndexParams, add_indexes, advance_builds, materialize_indexes, submit_builds
from laion_ingest.ledger import Attempt
from laion_ingest.summary import summarize
from laion_ingest.trigger_check import RunRange, run_range
from laion_ingest.tune import recommended_setting
from laion_ingest.work_space import NoTurnYet

# Empty (the dataset's own source), or http(s)/s3 without user:password@ (settings.source_url_value)
SOURCE_URL = r"^((https?|s3)://[^/@\s]+(/\S*)?)?$"
# The run publishes its dataset's table as an Asset, clickhouse://laion_ingest/<database>/<table>.
TABLES = AssetAlias("laion_ingest tables")
INDEX = IndexParams()
DEFAULT_DATASET = settings.dataset()
settings.source_url(DEFAULT_DATASET)  # a bad LAION_SOURCE_URL is this file's import error, naming it
log = logging.getLogger(__name__)


def _run() -> RunRange:
    return run_range(get_current_context()["params"])


def _attempt(shard: int) -> Attempt:
    ctx = get_current_context()
    return Attempt(shard, _run().dataset, try_number=ctx["ti"].try_number, run_id=ctx["run_id"])


@dag(
    dag_id="laion_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # runs queue rather than race for the same shards
    tags=["laion", "clickhouse"],
    default_args=cfg.default_args(),
    params={
        "dataset": Param(DEFAULT_DATASET, enum=list(datasets.DATASETS), title="Dataset",
                         description="Which of the LAION family to load (docs/datasets.md); LAION_DATASET sets"
                                     " the default."),
        "first_shard": Param(0, type="integer", minimum=0, maximum=65535, title="First shard",
                             description="First shard to load, in the dataset's numbering (laion400m 0..409,"
                                         " laion2b-en 0..2313, laion5b-100m 0..99: see docs/datasets.md)."),
        "last_shard": Param(None, type=["null", "integer"], minimum=0, maximum=65535, title="Last shard",
                            description="Last shard to load, included; empty: the dataset's last."),
        "source_url": Param("", type="string", title="Source URL", pattern=SOURCE_URL,
                            maxLength=settings.MAX_URL_LENGTH,
                            description="The folder holding the dataset's files as published; empty: the"
                                        " dataset's own (LAION_SOURCE_URL for LAION_DATASET's, else its public"
                                        " location). http(s) without credentials (an authenticated mirror's"
                                        " login and password go in the Airflow connection LAION_SOURCE_CONN_ID),"
                                        " or s3://bucket/prefix with the S3 connection."),
        "force": Param(False, type="boolean", title="Reload loaded shards",
                       description="Load shards again even if the ledger shows them loaded (replaces them)."),
        "build_indexes": Param(True, type="boolean", title="Build vector indexes",
                               description="Add and materialize the HNSW indexes after loading."),
        "index_setting": Param("typed", enum=["typed", "tuned"], title="Index setting",
                               description="typed: the index_* params below; tuned: the setting `python -m"
                                           " laion_ingest tune` last recommended for this dataset (its table"
                                           " <table>_tune), measured on a loaded shard."),
        "index_metric": Param(INDEX.metric, enum=["cosineDistance", "L2Distance"], title="Index distance"),
        "index_quantization": Param(INDEX.quantization, enum=["f64", "f32", "f16", "bf16", "i8", "b1"],
                                    title="Index quantization"),
        "index_m": Param(INDEX.m, type="integer", minimum=2, maximum=512, title="HNSW M",
                         description="Neighbours per node; the seed uses 64."),
        "index_ef_construction": Param(INDEX.ef_construction, type="integer", minimum=1, maximum=4096,
                                       title="HNSW ef_construction", description="The seed uses 256."),
        "evaluate": Param(True, type="boolean", title="Measure search quality",
                          description="After the index build: recall@10 and latency of the index on 20 sampled"
                                      " queries per kind on two shards, for several search settings"
                                      " (<table>_search_quality)."),
        "target_recall": Param(0.95, type="number", minimum=0, maximum=1, title="Target recall",
                               description="Search uses the smallest hnsw_candidate_list_size_for_search"
                                           " that reaches it."),
    },
)
def laion_ingest():
    @task
    def plan_shards() -> list[int]:
        """The range's shards not loaded yet. The API server refuses a range outside the dataset;
        `airflow dags test` does not, so it is checked again here. A range of more shards than
        Airflow's [core] max_map_length can map is refused before anything starts."""
        try:
            run = _run()
        except SettingError as exc:
            raise AirflowFailException(str(exc)) from None
        planned = pipeline.plan(run.dataset, run.first, run.last, get_current_context()["params"]["force"])
        _check_map_length(len(planned))
        return planned

    @task(map_index_template="shard {{ shard }}", max_active_tis_per_dag=settings.shards_in_flight(),
          on_failure_callback=_discard_shard_files)
    def ingest_shard(shard: int) -> int:
        """Fetch, convert and load one shard in one task: the scheduler runs a mapped stage breadth
        first, so with a task per stage every shard was downloaded before the first was loaded
        (bench/SCALE.md). A shard waiting for its retry keeps its files, so a shard waits (up for
        reschedule, no worker slot held) while LAION_MAX_SHARDS_IN_FLIGHT shards hold files; one that
        fails for good has its files deleted. The ledger and the log name the stage that failed."""
        params = get_current_context()["params"]
        try:
            return pipeline.ingest(_attempt(shard), _run().source_url, params["force"], settings.shards_in_flight())
        except NoTurnYet as wait:
            log.info("%s", wait)
            raise AirflowRescheduleException(datetime.now(UTC) + cfg.in_flight_poll()) from None

    @task(trigger_rule="all_done")
    def add_vector_indexes() -> dict:
        """Declare the indexes, with the typed setting or the one tune recommended; returns the indexes
        some node lacked and the setting, for the summary."""
        p = get_current_context()["params"]
        if not p["build_indexes"]:
            return {"added": [], "setting": None}
        with ClickHouse(_run().dataset) as ch:
            params, measured = _index_params(p), "typed"
            if p["index_setting"] == "tuned":
                try:
                    params, measured = recommended_setting(ch, p["index_metric"])
                except PermanentError as exc:
                    raise AirflowFailException(str(exc)) from None
            setting = f"{params.type_full(ch.dataset.dim)} ({measured})"
            log.info("indexes: %s", setting)
            return {"added": add_indexes(ch, params), "setting": setting}

    @task(execution_timeout=cfg.index_timeout())
    def build_vector_indexes(added: dict) -> list[int]:
        """Start the index builds. On a server they run in ClickHouse and the sensor below waits;
        chdb runs them inside the process that holds its data directory, so this task waits."""
        if not get_current_context()["params"]["build_indexes"]:
            return []
        with ClickHouse(_run().dataset) as ch:
            if ch.is_server:
                return submit_builds(ch, every_shard=bool(added["added"]))
            return materialize_indexes(ch, every_shard=bool(added["added"]))

    @task.sensor(poke_interval=settings.index_poll_seconds(), timeout=cfg.index_timeout(), mode="reschedule")
    def wait_for_vector_indexes(shards: list[int]) -> PokeReturnValue:
        """Poll the builds' mutations between pokes without holding a worker slot, submitting the
        next wave as earlier ones finish."""
        with ClickHouse(_run().dataset) as ch:
            return PokeReturnValue(is_done=not shards or advance_builds(ch, shards), xcom_value=shards)

    @task
    def evaluate_search(indexed: list[int]) -> dict | None:
        """Recall and latency of the index as built (python -m laion_ingest evaluate); the log
        prints the plot's path. Search uses the setting it chooses."""
        ctx = get_current_context()
        if not ctx["params"]["evaluate"] or not ctx["params"]["build_indexes"]:
            return None
        plot = settings.work_dir() / f"search_quality_{re.sub(r'[^A-Za-z0-9_.-]', '_', ctx['run_id'])}.png"
        with ClickHouse(_run().dataset) as ch:
            result = evaluate(ch, queries=20, target_recall=ctx["params"]["target_recall"], plot=plot)
        return {"chosen_ef": result["chosen_ef"], "chosen_rescore": result["chosen_rescore"], "plot": result["plot"]}

    @task(trigger_rule="all_done", outlets=[TABLES])
    def summary(planned: list[int] | None, indexed: list[int] | None, added: dict | None) -> dict:
        """The run's last task and so its outcome: it fails the run when a shard failed or the index
        stage did not finish (its XCom is then missing), and only when it succeeds is the table's
        update published as its Asset: every shard of the range loaded, and indexed."""
        if planned is None:
            raise AirflowFailException("plan_shards produced no shard list; see its log")
        ctx, run = get_current_context(), _run()
        result = summarize(ctx["run_id"], run.dataset, run.first, run.last, planned, indexes_built=indexed is not None,
                           index_setting=(added or {}).get("setting"))
        with ClickHouse(run.dataset) as ch:
            uri = f"clickhouse://laion_ingest/{ch.database}/{run.dataset.table}"
        ctx["outlet_events"][TABLES].add(Asset(name=run.dataset.table, uri=uri))
        return result

    planned = plan_shards()
    loaded = ingest_shard.expand(shard=planned)
    added = add_vector_indexes()
    loaded >> added
    indexed = wait_for_vector_indexes(build_vector_indexes(added))
    evaluate_search(indexed) >> summary(planned, indexed, added)


def _check_map_length(shards: int) -> None:
    """Airflow maps at most [core] max_map_length tasks (1024 by default; laion2b-en has 2,314 shards):
    refuse a longer plan now, saying what to do, rather than fail when the map is pushed."""
    from airflow.configuration import conf

    most = conf.getint("core", "max_map_length", fallback=1024)
    if shards > most:
        raise AirflowFailException(
            f"{shards} shards to load is more than Airflow's [core] max_map_length of {most}: raise it where"
            f" Airflow's components read their configuration (AIRFLOW__CORE__MAX_MAP_LENGTH={shards} or more;"
            " docker-compose.yaml sets 4096), or trigger ranges of at most that many shards")


def _discard_shard_files(context) -> None:
    work_space.discard(run_range(context["params"]).dataset, context["task"].op_kwargs["shard"])


def _index_params(p) -> IndexParams:
    return IndexParams(p["index_metric"], p["index_quantization"], p["index_m"], p["index_ef_construction"])


laion_ingest()
