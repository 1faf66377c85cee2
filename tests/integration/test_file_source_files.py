"""A file source of several files (a list, glob patterns) against the real broker: every line once
on the one topic whatever ``tasks.max`` does between runs (each file is its own source partition,
dealt into tasks like the JDBC source's tables), files that appear later picked up, bad lists and
patterns refused at validation."""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airconnect.connectors.file.source import change_in, file_entries
from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import ConfigError
from airconnect.core.offsets import MemoryStore, Offsets
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from airconnect.core.split import task_configs
from helpers import file_source, read_topic

pytestmark = pytest.mark.integration


def run_split(config: ConnectorConfig, store: MemoryStore, kafka: dict[str, Any]) -> list[dict[str, Any]]:
    """One run as Airflow runs it: the split when the run starts, then every task at once."""
    shares = task_configs(config)
    with ThreadPoolExecutor(len(shares)) as pool:
        return list(pool.map(lambda share: run(config.for_task(share), store, kafka), shares))


def payloads(kafka: dict[str, Any], topic: str) -> list[str]:
    return [json.loads(v)["payload"] for v in read_topic(kafka, topic) if v is not None]


def append(path: Path, shop: str, start: int, n: int) -> list[str]:
    lines = [f"ITEM{i:04d},{shop},{i * 7 % 100},2018-10-0{1 + i % 9} 10:00:00" for i in range(start, start + n)]
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def offsets_by_file(store: MemoryStore, name: str) -> dict[str, dict[str, Any]]:
    return {p["filename"]: o for p, o in Offsets(store, name).items()}


def test_tasks_max_1_then_3_then_2_with_files_appended_and_added_delivers_every_line_once(tmp_path, kafka, unique):
    shops = tmp_path / "shops"
    shops.mkdir()
    late = tmp_path / "late.txt"  # a plain path in the list, missing at first: it waits
    ignored = shops / "notes.txt"  # matches no pattern
    ignored.write_text("not a shop line\n")
    topic, name, store = f"stock-{unique}", f"load-shops-{unique}", MemoryStore()
    files = {shops / f"shop-{i}.csv" for i in range(4)}

    def definition(tasks: int) -> ConnectorConfig:
        return validate(file_source(name, f"{shops}/shop-*.csv, {late}", topic, **{"tasks.max": str(tasks),
                                                                                      "batch.size": "5"}))

    expected: dict[str, list[str]] = {}
    for run_no, tasks in enumerate((1, 3, 2)):
        if run_no == 1:  # a new file matching the pattern, and the missing one appears
            files |= {shops / "shop-9.csv", late}
        for n, path in enumerate(sorted(files)):
            expected.setdefault(str(path), []).extend(append(path, path.stem, run_no * 100, 3 + n + run_no))
        shares = task_configs(definition(tasks))
        assert len(shares) == tasks
        if tasks > 1:  # the files matched now (the missing plain path too) dealt into disjoint groups
            assert sorted(f for share in shares for f in share["files"]) == sorted(map(str, files | {late}))
        results = run_split(definition(tasks), store, kafka)
        assert [r["task"] for r in results] == list(range(tasks))

        delivered = payloads(kafka, topic)
        assert not [line for line, n in Counter(delivered).items() if n > 1]  # nothing twice
        everything = [line for lines in expected.values() for line in lines]
        assert sorted(delivered) == sorted(everything)  # nothing lost, nothing else (notes.txt)
        for path, lines in expected.items():  # each file's lines in the file's order
            assert [line for line in delivered if line in set(lines)] == lines, path
    # One offset per file, never per task: each at its file's end.
    offsets = offsets_by_file(store, name)
    assert sorted(offsets) == sorted(map(str, files))
    assert all(offsets[str(p)]["position"] == p.stat().st_size for p in files)


def test_a_pattern_matching_nothing_delivers_nothing_then_picks_up_files_as_they_come(tmp_path, kafka, unique, caplog):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    topic, name, store = f"inbox-{unique}", f"load-inbox-{unique}", MemoryStore()
    # First a plain one-file connector (Kafka Connect's shape): its offset stays valid for the pattern.
    first = inbox / "2018-10-01.log"
    lines = append(first, "SHOP001", 0, 3)
    assert run(file_source(name, first, topic), store, kafka)["records"] == 3

    pattern = validate(file_source(name, f"{inbox}/*.log", topic, **{"tasks.max": "2"}))
    entries = file_entries(pattern["file"])
    assert run_split(pattern, store, kafka)[0]["records"] == 0  # the same file, the same offset: not read again
    assert change_in(entries, offsets_by_file(store, name)) is None
    second = inbox / "2018-10-02.log"
    lines += append(second, "SHOP002", 0, 2)
    assert change_in(entries, offsets_by_file(store, name)) == (str(second), "grew")  # what the sensor waits for
    assert sum(r["records"] for r in run_split(pattern, store, kafka)) == 2
    assert payloads(kafka, topic) == lines

    empty = validate(file_source(f"load-none-{unique}", f"{tmp_path}/none/**/*.log", f"none-{unique}"))
    with caplog.at_level(logging.WARNING, logger="airconnect.connectors.file.source"):
        result = run(empty, store, kafka)
    assert result["records"] == 0 and result["no_file"] is True and result["files"] == []
    assert f"no file matches '{tmp_path}/none/**/*.log'; nothing to read" in caplog.text
    (tmp_path / "none" / "a" / "b").mkdir(parents=True)
    late = append(tmp_path / "none" / "a" / "b" / "x.log", "SHOP003", 0, 4)
    assert run(empty, store, kafka)["records"] == 4
    assert payloads(kafka, f"none-{unique}") == late


@pytest.mark.parametrize(("file", "problem"), [
    ("shops/x[.csv", "opens a '[' set that is never closed"),
    ("shops/a**.csv", "'**' inside the name 'a**.csv'"),
    ("shops/[a/b].csv", "a '/' inside a '[...]' set"),
    (" , ,", "expected a file path, or a comma-separated list of file paths and glob patterns"),
    ("a.csv, b.csv, a.csv", "is listed twice"),
])
def test_bad_lists_and_patterns_are_refused_at_validation(file, problem):
    with pytest.raises(ConfigError) as err:
        validate(file_source("load-bad", file, "stock", **{"tasks.max": "2"}))
    assert str(err.value).startswith("connector 'load-bad', key 'file': expected ") and problem in str(err.value)


def test_a_folder_in_a_list_is_refused_and_a_plain_path_stays_one_task(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError, match=r"key 'file': expected files, but '.*/dir' is a directory \(to read the "
                                          r"files in it, write '.*/dir/\*'\)"):
        validate(file_source("load-bad", f"{tmp_path}/a.csv,{tmp_path}/dir", "stock"))
    # One plain path is one task, as in Kafka Connect; a list or a pattern is split.
    with pytest.raises(ConfigError, match="key 'tasks.max': must be 1: a local file is read or written by one task"):
        validate(file_source("load-one", "a.csv", "stock", **{"tasks.max": "2"}))
    assert validate(file_source("load-two", "a.csv,b.csv", "stock", **{"tasks.max": "2"}))["tasks.max"] == 2


def test_the_wait_of_a_source_of_several_files_fires_for_a_file_that_appears(tmp_path):
    import asyncio
    import threading

    from airconnect.triggers import FileChangeTrigger

    seen = tmp_path / "a.log"
    seen.write_bytes(b"x\n")
    offsets = {str(seen): {"position": 2, "inode": seen.stat().st_ino, "mtime_ns": seen.stat().st_mtime_ns}}
    trigger = FileChangeTrigger(f"{tmp_path}/*.log", offsets=offsets, poll_interval=0.05, max_wait=10)
    classpath, kwargs = trigger.serialize()
    assert FileChangeTrigger(**kwargs).serialize() == (classpath, kwargs)  # the triggerer gets it back whole

    async def first_event() -> Any:
        async for event in FileChangeTrigger(**kwargs).run():
            return event.payload

    (tmp_path / "b.txt").write_bytes(b"not matched\n")
    threading.Timer(0.3, lambda: (tmp_path / "b.log").write_bytes(b"y\n")).start()
    assert asyncio.run(first_event()) == {"path": str(tmp_path / "b.log"), "reason": "grew"}
