"""Progress of long work: a log line every few seconds (what Airflow's task log shows) with
percent, throughput and ETA, and a live bar instead when a person watches a terminal."""
from __future__ import annotations

import logging
import sys
import time


class Progress:
    def __init__(self, label: str, total: float, unit: str = "MB", scale: float = 1e6,
                 logger: logging.Logger | None = None, every: float = 5.0):
        self.label, self.total, self.unit, self.scale = label, total, unit, scale
        self.log = logger or logging.getLogger("laion_ingest")
        self.every = every
        self.done = 0.0
        self.start = self._last = time.monotonic()
        self._bar = sys.stderr.isatty()

    def advance(self, amount: float) -> None:
        self.done += amount
        now = time.monotonic()
        if self._bar:
            self._draw(now)
        elif now - self._last >= self.every:
            self._last = now
            self.log.info("%s", self.line(now))

    def finish(self) -> str:
        line = self.line(time.monotonic())
        if self._bar:
            sys.stderr.write("\r\033[K")
        self.log.info("%s", line)
        return line

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        n = (lambda x: f"{x:,.0f}") if self.scale == 1 else (lambda x: f"{x / self.scale:,.1f}")
        text = f"{self.label}: {n(self.done)}"
        if self.total:
            eta = (self.total - self.done) / rate if rate else float("inf")
            text += f" of {n(self.total)} {self.unit} ({100 * self.done / self.total:.0f}%)"
            text += f", {n(rate)} {self.unit}/s, ETA {eta:,.0f} s"
        else:
            text += f" {self.unit}, {n(rate)} {self.unit}/s"
        return text

    def _draw(self, now: float) -> None:
        if now - self._last < 0.2:
            return
        self._last = now
        filled = int(30 * self.done / self.total) if self.total else 0
        sys.stderr.write(f"\r[{'#' * filled:<30}] {self.line(now)}\033[K")
        sys.stderr.flush()
