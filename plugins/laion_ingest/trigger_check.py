"""What a laion_ingest run's conf means, and the API server's refusal of one that means nothing.

`run_range(conf)` resolves a conf: the dataset (LAION_DATASET's by default), the shard range in the
dataset's own numbering (the whole dataset by default) and the source (the dataset's own by
default); it refuses, naming the param, a range outside the dataset, a backwards one, or a shard
written as 2.0. Airflow validates each Param against its JSON schema at trigger time, but a Param's
schema cannot depend on another (the range on the dataset): this ASGI middleware, installed in the
API server by plugins/laion_ingest_plugin.py, adds that check, so a trigger of laion_ingest (the
UI's form posts to the same REST endpoint) with such a range gets HTTP 400 and the reason, instead
of a run that fails halfway. The DAG's plan task runs the same check for `airflow dags test`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from laion_ingest import datasets, settings
from laion_ingest.datasets import Dataset
from laion_ingest.errors import SettingError

DAG_ID = "laion_ingest"


@dataclass(frozen=True)
class RunRange:
    dataset: Dataset
    first: int
    last: int
    source_url: str


def run_range(conf: dict) -> RunRange:
    """The conf's dataset, range and source, checked; a SettingError naming the param otherwise."""
    dataset = datasets.get(conf.get("dataset") or settings.dataset())
    first, last = conf.get("first_shard", 0), conf.get("last_shard")
    last = dataset.shards - 1 if last is None else last
    for name, value in (("first_shard", first), ("last_shard", last)):
        # JSON Schema counts 2.0 as an integer, so the Param's own check lets it through.
        if isinstance(value, float):
            raise SettingError(f"Invalid input for param {name}: {value!r} is not a whole number (write {int(value)})")
        if not isinstance(value, int) or isinstance(value, bool):
            raise SettingError(f"Invalid input for param {name}: {value!r} is not a shard number")
    if not (0 <= first < dataset.shards and 0 <= last < dataset.shards):
        raise SettingError(f"Invalid input for params first_shard and last_shard: {dataset.name}'s shards are"
                           f" 0..{dataset.shards - 1}, not {first}..{last}")
    if first > last:
        raise SettingError(f"Invalid input for params first_shard and last_shard: first_shard ({first}) is after"
                           f" last_shard ({last})")
    source = conf.get("source_url") or settings.source_url(dataset.name)
    return RunRange(dataset, first, last, settings.source_url_value("source_url", source))


def shard_range_problem(conf: dict) -> str | None:
    """Why the conf's range does not fit its dataset, or None."""
    try:
        run_range(conf)
    except SettingError as exc:
        return str(exc)
    return None


class ShardRangeCheck:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].rstrip("/").endswith(f"/dags/{DAG_ID}/dagRuns")):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            conf = json.loads(body or b"{}").get("conf") or {}
        except (ValueError, AttributeError):
            conf = {}  # malformed: let the API answer it
        problem = shard_range_problem(conf) if isinstance(conf, dict) else None
        if problem:
            from starlette.responses import JSONResponse

            return await JSONResponse({"detail": problem}, status_code=400)(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive):
    """A receive() that hands the buffered body to the API once, then passes through."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
