"""The one redaction step: every message that reaches the ledger, a log, XCom, `status`, the command
line or the search page passes `redact()`, which removes passwords, keys and `user:pw@`.

Two nets. Secrets the package reads (a connection's password, the S3 secret key) are registered
when they are read, and every occurrence of them, plain or URL-encoded, becomes `***`; under
Airflow they are also handed to Airflow's own masker. Patterns catch what was never registered:
the user-info of any URL, and `password=`, `secret=`, `token=` and `param_..._key=` pairs, such as
the query string of a driver's HTTP error (`param_secret_access_key=...`). Log records pass it
through a filter that `logger()` puts on each of the package's loggers.
"""
from __future__ import annotations

import logging
import re
import sys
from urllib.parse import quote, quote_plus

MASK = "***"
_registered: set[str] = set()
PATTERNS = [
    # scheme://user:password@host -> scheme://***@host
    (re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@", re.IGNORECASE), r"\1" + MASK + "@"),
    # key=value pairs naming a secret, in query strings, settings and messages
    (re.compile(r"\b((?:[a-z_]*_)?(?:password|passwd|secret|token|secret_access_key|access_key_id|api_key|signature|credential)\s*=\s*)"
                r"(?!\*\*\*)[^\s&'\",;)]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"\b(authorization:\s*(?:basic|bearer)\s+)\S+", re.IGNORECASE), r"\1" + MASK),
]


def register(secret: str | None) -> None:
    """Mask this value wherever it appears from now on (too short a value would mask ordinary words)."""
    if not secret or len(secret) < 4:
        return
    _registered.update({secret, quote(secret, safe=""), quote_plus(secret)})
    if "airflow.sdk" in sys.modules:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)


def redact(text: object) -> str:
    text = str(text)
    for secret in sorted(_registered, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = _Redacting()


def logger(name: str) -> logging.Logger:
    """logging.getLogger(name) whose records are redacted before any handler sees them."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log
