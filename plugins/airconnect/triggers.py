"""Deferrable waits: the triggerer watches, no worker slot is held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airconnect.connectors.file.source import change_reason


class FileChangeTrigger(BaseTrigger):
    """Fires when ``path`` has bytes beyond ``offset["position"]`` (or was truncated or replaced).

    One ``stat`` every ``poll_interval`` seconds. After ``max_wait`` seconds without a change it
    fires with ``reason=None`` so the run can end quietly and the next one wait again.

    With ``end_task`` the event ends the waiting task itself, from the triggerer (its XCom
    ``return_value`` is ``{"path", "reason"}``): no worker process is started just to resume the
    sensor, which takes a second or more off every change's way to the EC file.
    """

    def __init__(self, path: str, offset: dict[str, Any] | None = None, poll_interval: float = 0.5,
                 max_wait: float = 3600.0, end_task: bool = False):
        super().__init__()
        self.path = path
        self.offset = offset
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.end_task = end_task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airconnect.triggers.FileChangeTrigger",
            {"path": self.path, "offset": self.offset, "poll_interval": self.poll_interval, "max_wait": self.max_wait,
             "end_task": self.end_task},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.max_wait
        while True:
            reason = change_reason(self.path, self.offset)
            if reason or time.monotonic() >= deadline:
                result: dict[str, Any] = {"path": self.path, "reason": reason}
                yield TaskSuccessEvent(xcoms={"return_value": result}) if self.end_task else TriggerEvent(result)
                return
            await asyncio.sleep(self.poll_interval)
