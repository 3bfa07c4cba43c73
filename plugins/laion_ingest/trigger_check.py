"""Refuse a laion_ingest run whose shard range is backwards, when it is triggered.

Airflow validates each Param against its own JSON schema at trigger time (so a shard outside
0..409 gets HTTP 400 naming the param), but it has no check across params. This ASGI middleware,
installed in the API server by plugins/laion_ingest_plugin.py, adds the one we need: a trigger of
laion_ingest (the UI's trigger form posts to the same REST endpoint) with first_shard > last_shard
gets HTTP 400 and a message naming both params, instead of a run that fails halfway.
"""
from __future__ import annotations

import json

from laion_ingest.settings import SHARD_COUNT

DAG_ID = "laion_ingest"


def shard_range_problem(conf: dict) -> str | None:
    """Why first_shard/last_shard (defaults 0 and 409) do not form a range of shard numbers, or None."""
    first, last = conf.get("first_shard", 0), conf.get("last_shard", SHARD_COUNT - 1)
    for name, value in (("first_shard", first), ("last_shard", last)):
        # JSON Schema counts 2.0 as an integer, so the Param's own check lets it through.
        if isinstance(value, float):
            return f"Invalid input for param {name}: {value!r} is not a whole number (write {int(value)})"
    if isinstance(first, int) and isinstance(last, int) and first > last:
        return (f"Invalid input for params first_shard and last_shard: first_shard ({first}) is after"
                f" last_shard ({last})")
    return None  # anything else is the per-param schema's to judge


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
