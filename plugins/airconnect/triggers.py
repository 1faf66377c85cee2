"""Deferrable waits: the triggerer watches, no worker slot is held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airconnect.connectors.file.source import change_in, change_reason, file_entries


class FileChangeTrigger(BaseTrigger):
    """Fires when ``path`` has bytes beyond ``offset["position"]`` (or was truncated or replaced).

    One ``stat`` every ``poll_interval`` seconds. After ``max_wait`` seconds without a change it
    fires with ``reason=None`` so the run can end quietly and the next one wait again.

    With ``end_task`` the event ends the waiting task itself, from the triggerer (its XCom
    ``return_value`` is ``{"path", "reason"}``): no worker process is started just to resume the
    sensor, which takes a second or more off every change's way to the EC file.

    A source of several files: ``path`` is its ``file`` (paths and patterns, comma-separated),
    expanded at each poll, and ``offsets`` each file's offset by path.
    """

    def __init__(self, path: str, offset: dict[str, Any] | None = None, poll_interval: float = 0.5,
                 max_wait: float = 3600.0, end_task: bool = False,
                 offsets: dict[str, dict[str, Any]] | None = None):
        super().__init__()
        self.path = path
        self.offset = offset
        self.offsets = offsets
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.end_task = end_task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airconnect.triggers.FileChangeTrigger",
            {"path": self.path, "offset": self.offset, "poll_interval": self.poll_interval, "max_wait": self.max_wait,
             "end_task": self.end_task, **({"offsets": self.offsets} if self.offsets is not None else {})},
        )

    def _change(self) -> tuple[str, str | None]:
        if self.offsets is None:
            return self.path, change_reason(self.path, self.offset)
        found = change_in(file_entries(self.path), self.offsets)
        return found if found else (self.path, None)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.max_wait
        while True:
            path, reason = self._change()
            if reason or time.monotonic() >= deadline:
                result: dict[str, Any] = {"path": path, "reason": reason}
                yield TaskSuccessEvent(xcoms={"return_value": result}) if self.end_task else TriggerEvent(result)
                return
            await asyncio.sleep(self.poll_interval)


def topic_ends(kafka: dict[str, Any], topics: list[str], timeout: float = 10.0) -> dict[str, int]:
    """Each partition's end offset (committed records: read_committed), as ``{"topic:partition": end}``."""
    from confluent_kafka import Consumer, TopicPartition

    from airconnect.core.kafka_client import client_config

    consumer = Consumer({**client_config(kafka), "group.id": "airconnect-topic-watch", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        md = consumer.list_topics(timeout=timeout)
        ends: dict[str, int] = {}
        for topic in topics:
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                ends[f"{topic}:{p}"] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
        return ends
    finally:
        consumer.close()


def new_records(ends: dict[str, int], positions: dict[str, int]) -> int:
    """How many offsets lie beyond ``positions`` (a partition without a position counts from 0)."""
    return sum(max(0, end - positions.get(tp, 0)) for tp, end in ends.items())


class TopicRecordsTrigger(BaseTrigger):
    """Fires when ``topics`` have committed records beyond a sink's ``positions`` (``{"topic:partition": offset}``).

    Reads the partitions' end offsets every ``poll_interval`` seconds (one read_committed Kafka
    consumer, in a thread). After ``max_wait`` seconds without new records it fires with
    ``records=0``. With ``end_task`` the event ends the waiting task itself (as FileChangeTrigger).
    """

    def __init__(self, kafka: dict[str, Any], topics: list[str], positions: dict[str, int],
                 poll_interval: float = 1.0, max_wait: float = 3600.0, end_task: bool = False):
        super().__init__()
        self.kafka = kafka
        self.topics = topics
        self.positions = positions
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.end_task = end_task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airconnect.triggers.TopicRecordsTrigger",
            {"kafka": self.kafka, "topics": self.topics, "positions": self.positions,
             "poll_interval": self.poll_interval, "max_wait": self.max_wait, "end_task": self.end_task},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.max_wait
        while True:
            try:
                records = new_records(await asyncio.to_thread(topic_ends, self.kafka, self.topics), self.positions)
            except Exception as exc:  # noqa: BLE001 - Kafka down: keep waiting, the sink's run reports it
                self.log.warning("reading the end offsets of %s: %s", ", ".join(self.topics), exc)
                records = 0
            if records or time.monotonic() >= deadline:
                result: dict[str, Any] = {"topics": self.topics, "records": records}
                yield TaskSuccessEvent(xcoms={"return_value": result}) if self.end_task else TriggerEvent(result)
                return
            await asyncio.sleep(self.poll_interval)
