"""Airflow plugin: the API server's check that a laion_ingest trigger has first_shard <= last_shard,
and the "LAION search" page (laion_ingest/search_page.py) in the UI's navigation."""
from airflow.plugins_manager import AirflowPlugin

from laion_ingest.trigger_check import ShardRangeCheck


class LaionIngestPlugin(AirflowPlugin):
    name = "laion_ingest"
    fastapi_root_middlewares = [{"middleware": ShardRangeCheck, "args": [], "kwargs": {},
                                 "name": "laion_ingest shard range check"}]
    external_views = [{"name": "Search", "href": "/laion-search/", "destination": "nav",
                       "url_route": "laion-search", "nav_top_level": True}]

    @property
    def fastapi_apps(self):
        """Imported only where it is asked for (the API server): every Airflow process and every task
        imports this plugin, and the page's imports take half a second."""
        from laion_ingest.search_page import app

        return [{"app": app, "url_prefix": "/laion-search", "name": "LAION search"}]
