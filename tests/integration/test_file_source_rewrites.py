"""The file source notices a file rewritten in place, whatever its length, and refuses a
directory as its ``file``: holes an outside test found (issue 11), with data of their own."""

from __future__ import annotations

import json
import os
import time

import pytest

from airconnect.connectors.file.source import change_reason
from airconnect.core.errors import ConfigError
from airconnect.core.kafka_client import Admin
from airconnect.core.offsets import MemoryStore, Offsets
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import file_source, read_topic

pytestmark = pytest.mark.integration

# Stock of a Korean and a Japanese shop: multi-byte, with quotes and commas.
FIRST = (
    "상품-0001,서울-강남점,12,2021-03-01 09:00:00\n"
    "商品-0002,大阪\"梅田\"店,7,2021-03-01 09:05:00\n"
    "상품-0003,부산점,0,2021-03-01 09:10:00\n"
)
# Same byte length, only the first line changed (12 -> 13 in stock): `cat <<EOF >file` as the tutorial does.
SECOND = FIRST.replace("서울-강남점,12,", "서울-강남점,13,", 1)


def payloads(kafka, topic):
    return [json.loads(v)["payload"] for v in read_topic(kafka, topic)]


def test_a_rewrite_of_the_same_length_is_read_again(tmp_path, kafka, unique):
    path = tmp_path / "stock.csv"
    path.write_text(FIRST, encoding="utf-8")
    definition = file_source(f"load-rewrite-{unique}", path, f"stock-{unique}")
    store = MemoryStore()
    assert run(definition, store, kafka)["records"] == 3
    offset = Offsets(store, definition["name"]).get({"filename": str(path)})

    assert len(SECOND.encode()) == len(FIRST.encode())
    time.sleep(0.01)  # a different modification time, as any real rewrite has
    with open(path, "w", encoding="utf-8") as f:  # truncate and write: the same inode
        f.write(SECOND)
    assert os.stat(path).st_ino == offset["inode"]
    # The continuous DAG's wait (sensor and trigger) sees it without reading the file...
    assert change_reason(str(path), offset) == "modified"
    # ...and the run delivers the whole file again, the changed line included.
    result = run(definition, store, kafka)
    assert result["records"] == 3
    assert "rewritten" in result["reset"]
    assert payloads(kafka, f"stock-{unique}") == FIRST.splitlines() + SECOND.splitlines()
    # Unchanged since: nothing more, and the wait stays quiet.
    assert run(definition, store, kafka)["records"] == 0
    assert change_reason(str(path), Offsets(store, definition["name"]).get({"filename": str(path)})) is None


def test_a_change_in_the_middle_of_a_long_file_is_seen(tmp_path, kafka, unique):
    """Far from both ends: neither the length nor the bytes just before the position change."""
    lines = [f"品番{i:05d},店舗{i % 7:02d},{i % 97},2021-04-01 10:00:00" for i in range(5000)]
    path = tmp_path / "stock.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    definition = file_source(f"load-middle-{unique}", path, f"stock-mid-{unique}", **{"batch.size": "700"})
    store = MemoryStore()
    assert run(definition, store, kafka)["records"] == 5000
    lines[2500] = lines[2500].replace(",店舗", ",店铺")  # same byte length
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run(definition, store, kafka)
    assert result["records"] == 5000 and "rewritten" in result["reset"]
    assert payloads(kafka, f"stock-mid-{unique}")[5000:] == lines


def test_the_check_can_be_bounded_and_says_what_it_no_longer_sees(tmp_path, kafka, unique):
    """rewrite.check.bytes bounds what each run re-reads: beyond it (and before the last 64
    bytes) a same-length change is not seen, as the README says."""
    lines = [f"SKU-{i:04d},STORE-9,{i},2022-01-01 00:00:00" for i in range(200)]
    path = tmp_path / "stock.csv"
    path.write_text("\n".join(lines) + "\n")
    definition = file_source(f"load-bounded-{unique}", path, f"stock-b-{unique}", **{"rewrite.check.bytes": "1000"})
    store = MemoryStore()
    assert run(definition, store, kafka)["records"] == 200
    offset = Offsets(store, definition["name"]).get({"filename": str(path)})
    assert offset["prefix_bytes"] == 1000
    lines[5] = lines[5].replace("STORE-9", "STORE-8")  # inside the checked first 1000 bytes: seen
    path.write_text("\n".join(lines) + "\n")
    assert run(definition, store, kafka)["records"] == 200
    lines[100] = lines[100].replace("STORE-9", "STORE-7")  # beyond them: not seen
    path.write_text("\n".join(lines) + "\n")
    assert run(definition, store, kafka)["records"] == 0


def test_a_directory_is_refused_at_validation(tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(file_source("load-dir", tmp_path, "stock-dir"))
    assert str(err.value).startswith("connector 'load-dir', key 'file': ")
    assert "is a directory" in str(err.value)


def test_a_file_that_became_a_directory_fails_once_without_creating_the_topic(tmp_path, kafka, unique):
    path = tmp_path / "stock.csv"
    config = validate(file_source(f"load-dir-{unique}", path, f"stock-dir-{unique}"))  # valid: missing yet
    path.mkdir()
    with pytest.raises(ConfigError) as err:  # permanent: the task is not retried
        run(config, MemoryStore(), kafka)
    assert str(err.value).startswith(f"connector 'load-dir-{unique}', key 'file': ")
    assert str(path) in str(err.value) and "directory" in str(err.value)
    assert f"stock-dir-{unique}" not in Admin(kafka).topics()
