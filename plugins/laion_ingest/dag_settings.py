"""Airflow-side settings of the laion_ingest DAG: retries, and how many shards run at once. The
values come from settings.py (read and checked at DAG parse: a bad one is the DAG's import error,
naming the variable); this module turns them into Airflow's objects.

Retries: every task retries LAION_TASK_RETRIES times (default 3) with exponential backoff from
LAION_TASK_RETRY_DELAY seconds (30) up to LAION_TASK_MAX_RETRY_DELAY (600). A PermanentError
(HTTP 404, a corrupt or mismatched file) fails the task at once through Airflow's retry policy,
without spending retries. Inside one try, downloads retry too (see retry.RetryPolicy).

Concurrency: LAION_MAX_SHARDS_IN_FLIGHT (default 4) shards at once, each fetched, converted and
loaded by one task, so the work directory holds at most that many shards' files. On the embedded
chdb their loads take turns (its data directory admits one process at a time) while the others
download; a server loads them at once. A shard that finds that many shards of its run holding files
(some waiting for a retry) is rescheduled every LAION_IN_FLIGHT_POLL_SECONDS (15).

Timeouts: a task try that runs longer than LAION_TASK_TIMEOUT_HOURS (4) fails and is retried, so a
hung download or load cannot hold a worker for ever (downloads also drop a transfer slower than
LAION_MIN_DOWNLOAD_RATE and resume it). Index builds may take days: on a server a sensor in
reschedule mode checks the mutations every LAION_INDEX_POLL_SECONDS (60) for at most
LAION_INDEX_TIMEOUT_HOURS (72), the same bound as the build task on chdb.
"""
from __future__ import annotations

from datetime import timedelta

from laion_ingest import settings


def default_args() -> dict:
    from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

    delay, most = settings.task_retry_delays()
    return {
        "retries": settings.task_retries(),
        "retry_delay": timedelta(seconds=delay),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=most),
        "execution_timeout": timedelta(hours=settings.task_timeout_hours()),
        "retry_policy": ExceptionRetryPolicy(rules=[RetryRule(
            exception="laion_ingest.errors.PermanentError", action=RetryAction.FAIL,
            reason="permanent error: retrying cannot help")]),
    }


def in_flight_poll() -> timedelta:
    return timedelta(seconds=settings.in_flight_poll_seconds())


def index_timeout() -> timedelta:
    return timedelta(hours=settings.index_timeout_hours())
