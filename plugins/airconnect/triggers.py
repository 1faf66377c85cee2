"""Deferrable waits: the triggerer watches, no worker slot is held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airconnect.core.file_source import change_reason


class FileChangeTrigger(BaseTrigger):
    """Fires when ``path`` has bytes beyond ``offset["position"]`` (or was truncated or replaced).

    One ``stat`` every ``poll_interval`` seconds. After ``max_wait`` seconds without a change it
    fires with ``reason=None`` so the run can end quietly and the next one wait again.
    """

    def __init__(self, path: str, offset: dict[str, Any] | None = None, poll_interval: float = 0.5, max_wait: float = 3600.0):
        super().__init__()
        self.path = path
        self.offset = offset
        self.poll_interval = poll_interval
        self.max_wait = max_wait

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airconnect.triggers.FileChangeTrigger",
            {"path": self.path, "offset": self.offset, "poll_interval": self.poll_interval, "max_wait": self.max_wait},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.max_wait
        while True:
            reason = change_reason(self.path, self.offset)
            if reason or time.monotonic() >= deadline:
                yield TriggerEvent({"path": self.path, "reason": reason})
                return
            await asyncio.sleep(self.poll_interval)
