"""The deferrable wait fires when the file grows, is truncated or replaced, and gives up quietly."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from airconnect.triggers import FileChangeTrigger


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload


def test_fires_when_the_file_grows(tmp_path):
    f = tmp_path / "latest.txt"
    f.write_bytes(b"a\n")
    trigger = FileChangeTrigger(str(f), {"position": 2, "inode": os.stat(f).st_ino}, poll_interval=0.05, max_wait=10)
    threading.Timer(0.3, lambda: f.open("ab").write(b"b\n")).start()
    started = time.monotonic()
    payload = asyncio.run(_first_event(trigger))
    assert payload == {"path": str(f), "reason": "grew"}
    assert time.monotonic() - started < 5


def test_fires_on_truncation_and_replacement(tmp_path):
    f = tmp_path / "latest.txt"
    f.write_bytes(b"abc\n")
    ino = os.stat(f).st_ino
    assert asyncio.run(_first_event(FileChangeTrigger(str(f), {"position": 10, "inode": ino}, 0.05, 5)))["reason"] == "truncated"
    other = tmp_path / "new.txt"
    other.write_bytes(b"abc\n")
    os.replace(other, f)
    assert asyncio.run(_first_event(FileChangeTrigger(str(f), {"position": 4, "inode": ino}, 0.05, 5)))["reason"] == "replaced"


def test_gives_up_after_max_wait_without_a_change(tmp_path):
    f = tmp_path / "latest.txt"
    f.write_bytes(b"a\n")
    assert asyncio.run(_first_event(FileChangeTrigger(str(f), {"position": 2}, 0.05, 0.2)))["reason"] is None


def test_serializes_to_its_own_classpath(tmp_path):
    path, kwargs = FileChangeTrigger(str(tmp_path / "x"), {"position": 1}, 0.5, 60).serialize()
    assert path == "airconnect.triggers.FileChangeTrigger"
    assert FileChangeTrigger(**kwargs).serialize() == (path, kwargs)


def test_with_end_task_the_event_ends_the_sensor_in_the_triggerer(tmp_path):
    from airflow.triggers.base import TaskSuccessEvent

    f = tmp_path / "latest.txt"
    f.write_bytes(b"a\nb\n")

    async def first(trigger):
        async for event in trigger.run():
            return event

    event = asyncio.run(first(FileChangeTrigger(str(f), {"position": 2}, 0.05, 5, end_task=True)))
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms == {"return_value": {"path": str(f), "reason": "grew"}}
