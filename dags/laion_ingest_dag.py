"""laion_ingest: LAION-400M embeddings into ClickHouse, one mapped task per shard, then the
HNSW vector indexes. The work lives in plugins/laion_ingest; this file only wires it to Airflow.
See README.md for the three usual jobs (load everything, backfill a range, reload a shard)."""
from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from airflow.sdk import Asset, Param, PokeReturnValue, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

from laion_ingest import dag_settings as cfg
from laion_ingest import pipeline, settings, work_space
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.evaluate import evaluate
from laion_ingest.index import (
    IndexParams,
    add_indexes,
    build_progress,
    materialize_indexes,
    submit_builds,
)
from laion_ingest.ledger import Attempt
from laion_ingest.load import create_tables
from laion_ingest.summary import summarize
from laion_ingest.trigger_check import shard_range_problem
from laion_ingest.work_space import NoTurnYet

SOURCE_URL = r"^https?://[^/@\s]+(/\S*)?$"  # http(s), no user:password@ (see settings.source_url_value)
LAION_TABLE = Asset(name="laion", uri="clickhouse://laion_ingest/default/laion")
INDEX = IndexParams()
log = logging.getLogger(__name__)


def _attempt(shard: int) -> Attempt:
    ctx = get_current_context()
    return Attempt(shard, try_number=ctx["ti"].try_number, run_id=ctx["run_id"])


@dag(
    dag_id="laion_ingest",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # runs queue rather than race for the same shards
    tags=["laion", "clickhouse"],
    default_args=cfg.default_args(),
    params={
        "first_shard": Param(0, type="integer", minimum=0, maximum=settings.SHARD_COUNT - 1,
                             title="First shard", description="First shard to load (0..409)."),
        "last_shard": Param(settings.SHARD_COUNT - 1, type="integer", minimum=0, maximum=settings.SHARD_COUNT - 1,
                            title="Last shard", description="Last shard to load, included (0..409)."),
        "source_url": Param(settings.source_url(), type="string", title="Source URL", pattern=SOURCE_URL,
                            maxLength=settings.MAX_URL_LENGTH,
                            description="Base URL with img_emb/, text_emb/ and metadata/ (a LAION mirror),"
                                        " http(s) and without credentials: an authenticated mirror's login"
                                        " and password go in the Airflow connection LAION_SOURCE_CONN_ID."),
        "force": Param(False, type="boolean", title="Reload loaded shards",
                       description="Load shards again even if the ledger shows them loaded (replaces them)."),
        "build_indexes": Param(True, type="boolean", title="Build vector indexes",
                               description="Add and materialize the HNSW indexes after loading."),
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
                                      " (laion_search_quality)."),
        "target_recall": Param(0.95, type="number", minimum=0, maximum=1, title="Target recall",
                               description="Search uses the smallest hnsw_candidate_list_size_for_search"
                                           " that reaches it."),
    },
)
def laion_ingest():
    @task
    def create_laion_tables() -> None:
        with ClickHouse() as ch:
            create_tables(ch)

    @task
    def plan_shards() -> list[int]:
        p = get_current_context()["params"]
        problem = shard_range_problem(p)  # the API server refuses these; `airflow dags test` does not
        if problem:
            raise AirflowFailException(problem)
        settings.source_url_value("source_url", p["source_url"])
        return pipeline.plan(p["first_shard"], p["last_shard"], p["force"])

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
            return pipeline.ingest(_attempt(shard), params["source_url"], params["force"], settings.shards_in_flight())
        except NoTurnYet as wait:
            log.info("%s", wait)
            raise AirflowRescheduleException(datetime.now(UTC) + cfg.in_flight_poll()) from None

    @task(trigger_rule="all_done")
    def add_vector_indexes() -> list[str]:
        p = get_current_context()["params"]
        if not p["build_indexes"]:
            return []
        with ClickHouse() as ch:
            return add_indexes(ch, _index_params(p))

    @task(execution_timeout=cfg.index_timeout())
    def build_vector_indexes(added: list[str]) -> list[int]:
        """Start the index builds. On a server they run in ClickHouse and the sensor below waits;
        chdb runs them inside the process that holds its data directory, so this task waits."""
        if not get_current_context()["params"]["build_indexes"]:
            return []
        with ClickHouse() as ch:
            if ch.is_server:
                return submit_builds(ch, every_shard=bool(added))
            return materialize_indexes(ch, every_shard=bool(added))

    @task.sensor(poke_interval=settings.index_poll_seconds(), timeout=cfg.index_timeout(), mode="reschedule")
    def wait_for_vector_indexes(shards: list[int]) -> PokeReturnValue:
        """Poll the builds' mutations between pokes without holding a worker slot."""
        with ClickHouse() as ch:
            return PokeReturnValue(is_done=not shards or build_progress(ch, shards), xcom_value=shards)

    @task
    def evaluate_search(indexed: list[int]) -> dict | None:
        """Recall and latency of the index as built (python -m laion_ingest evaluate); the log
        prints the plot's path. Search uses the setting it chooses."""
        ctx = get_current_context()
        if not ctx["params"]["evaluate"] or not ctx["params"]["build_indexes"]:
            return None
        plot = settings.work_dir() / f"search_quality_{re.sub(r'[^A-Za-z0-9_.-]', '_', ctx['run_id'])}.png"
        with ClickHouse() as ch:
            result = evaluate(ch, queries=20, target_recall=ctx["params"]["target_recall"], plot=plot)
        return {"chosen_ef": result["chosen_ef"], "chosen_rescore": result["chosen_rescore"], "plot": result["plot"]}

    @task(trigger_rule="all_done", outlets=[LAION_TABLE])
    def summary(planned: list[int] | None, indexed: list[int] | None) -> dict:
        """The run's last task and so its outcome: it fails the run when a shard failed or the index
        stage did not finish (its XCom is then missing), and only when it succeeds is the table's
        update published as the `laion` Asset: every shard of the range loaded, and indexed."""
        if planned is None:
            raise AirflowFailException("plan_shards produced no shard list; see its log")
        ctx = get_current_context()
        return summarize(ctx["run_id"], ctx["params"]["first_shard"], ctx["params"]["last_shard"], planned,
                         indexes_built=indexed is not None)

    planned = plan_shards()
    create_laion_tables() >> planned
    loaded = ingest_shard.expand(shard=planned)
    added = add_vector_indexes()
    loaded >> added
    indexed = wait_for_vector_indexes(build_vector_indexes(added))
    evaluate_search(indexed) >> summary(planned, indexed)


def _discard_shard_files(context) -> None:
    work_space.discard(context["task"].op_kwargs["shard"])


def _index_params(p) -> IndexParams:
    return IndexParams(p["index_metric"], p["index_quantization"], p["index_m"], p["index_ef_construction"])


laion_ingest()
