"""Progress lines at a steady cadence for long-running work: records done and the rate."""

from __future__ import annotations

import logging
import time
from typing import Final


class Progress:
    """Logs ``<what>: N records, R/s`` at most every ``every`` seconds, and once at the end."""

    def __init__(self, log: logging.Logger, what: str, *, every: float = 5.0, unit: str = "records"):
        self.log: Final = log
        self.what: Final = what
        self.every: Final = every
        self.unit: Final = unit
        self.count = 0
        self.started = time.monotonic()
        self._last_report = self.started

    def add(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last_report >= self.every:
            self._last_report = now
            self.log.info("%s: %d %s so far, %.0f %s/s", self.what, self.count, self.unit, self.rate(now), self.unit)

    def rate(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def done(self) -> None:
        self.log.info(
            "%s: done, %d %s in %.2f s (%.0f %s/s)",
            self.what, self.count, self.unit, self.seconds, self.rate(), self.unit,
        )
