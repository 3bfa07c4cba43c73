"""Retry with exponential backoff for transient failures; PermanentError is never retried."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from laion_ingest import settings
from laion_ingest.errors import PermanentError
from laion_ingest.redaction import logger

T = TypeVar("T")
log = logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5          # tries inside one Airflow try, the first included
    initial_delay: float = 2.0  # seconds before the second try; doubles each time
    max_delay: float = 60.0

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        """LAION_RETRY_ATTEMPTS, LAION_RETRY_INITIAL_DELAY, LAION_RETRY_MAX_DELAY (settings.py)."""
        return cls(settings.retry_attempts(), *settings.retry_delays())

    def delay(self, failures: int) -> float:
        return min(self.initial_delay * 2 ** (failures - 1), self.max_delay)


def retrying(what: str, fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call fn until it succeeds, raises a PermanentError, or has failed policy.attempts times."""
    attempt = 1
    while True:
        try:
            return fn()
        except PermanentError:
            raise
        except Exception as exc:
            if attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt)
            log.warning("%s failed (attempt %d of %d): %s; retrying in %.1f s",
                        what, attempt, policy.attempts, exc, wait)
            time.sleep(wait)
            attempt += 1
