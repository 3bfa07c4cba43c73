"""Airflow plugin: the API server's check that a laion_ingest trigger has first_shard <= last_shard."""
from airflow.plugins_manager import AirflowPlugin

from laion_ingest.trigger_check import ShardRangeCheck


class LaionIngestPlugin(AirflowPlugin):
    name = "laion_ingest"
    fastapi_root_middlewares = [{"middleware": ShardRangeCheck, "args": [], "kwargs": {},
                                 "name": "laion_ingest shard range check"}]
