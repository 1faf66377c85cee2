"""Flow 1 against the real broker: the tutorial's behaviour, and the edge cases around it."""

from __future__ import annotations

import json
import logging
import os

import pytest

from airconnect.core.errors import DataError, OffsetError
from airconnect.core.offsets import MemoryStore
from airconnect.core.runtime import run
from helpers import file_sink, file_source, read_topic

SCENARIO = (
    "ITEM001,SHOP001,929,2018-10-01 01:01:01\n"
    "ITEM002,SHOP001,480,2018-10-01 01:01:01\n"
    "ITEM001,SHOP001,25,2018-10-02 02:02:02\n"
    "ITEM003,SHOP001,6902,2018-10-02 02:02:02\n"
)
APPENDED = "ITEM001,SHOP001,6090,2018-10-03 03:00:00\nITEM004,SHOP001,256,2018-10-03 03:00:00\n"


def envelope(line: str) -> bytes:
    return ('{"schema":{"type":"string","optional":false},"payload":%s}' % json.dumps(line, ensure_ascii=False)).encode()


@pytest.fixture
def flow(tmp_path, kafka, unique):
    """A source and a sink on a fresh topic; ``flow.pass_()`` runs one pass of both."""

    class Flow:
        inventory = tmp_path / "zaiko" / "latest.txt"
        ec = tmp_path / "ec" / "zaiko-latest.txt"
        topic = f"zaiko-data-{unique}"
        store = MemoryStore()
        source = file_source(f"load-{unique}", inventory, topic)
        sink = file_sink(f"sink-{unique}", ec, topic)

        def pass_(self):
            return run(self.source, self.store, kafka), run(self.sink, self.store, kafka)

        def records(self):
            return read_topic(kafka, self.topic)

    Flow.inventory.parent.mkdir()
    return Flow()


def test_the_tutorial_scenario(flow):
    flow.inventory.write_text(SCENARIO)
    src, snk = flow.pass_()
    assert (src["records"], snk["records"]) == (4, 4)
    assert flow.records() == [envelope(line) for line in SCENARIO.splitlines()]
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()

    with flow.inventory.open("a") as f:
        f.write(APPENDED)
    src, snk = flow.pass_()
    assert (src["records"], snk["records"]) == (2, 2)
    assert flow.records() == [envelope(line) for line in (SCENARIO + APPENDED).splitlines()]
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()


def test_a_pass_after_success_changes_nothing(flow):
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    before = (flow.records(), flow.ec.read_bytes(), dict(flow.store))
    src, snk = flow.pass_()
    assert (src["records"], snk["records"]) == (0, 0)
    assert (flow.records(), flow.ec.read_bytes(), dict(flow.store)) == before


def test_a_partial_last_line_waits_for_its_newline(flow):
    flow.inventory.write_text(SCENARIO + "ITEM005,SHOP0")
    src, _ = flow.pass_()
    assert src["records"] == 4 and src["waiting_partial_line"] is True
    assert flow.ec.read_text() == SCENARIO
    with flow.inventory.open("a") as f:
        f.write("01,7,2018-10-04 04:00:00\n")
    src, _ = flow.pass_()
    assert src["records"] == 1
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()


def test_truncate_and_rewrite_with_fewer_bytes_is_read_from_the_start(flow, caplog):
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    # The tutorial rewrites the file with `cat <<EOF >`: truncated, then new content.
    flow.inventory.write_text("ITEM009,SHOP002,1,2018-11-01 00:00:00\n")
    with caplog.at_level(logging.WARNING, logger="airconnect"):
        src, snk = flow.pass_()
    assert src["reset"] and "shrank" in src["reset"]
    assert any("reading" in r.getMessage() and "again from its start" in r.getMessage() for r in caplog.records)
    assert flow.records()[-1] == envelope("ITEM009,SHOP002,1,2018-11-01 00:00:00")
    assert len(flow.records()) == 5
    assert flow.ec.read_text() == SCENARIO + "ITEM009,SHOP002,1,2018-11-01 00:00:00\n"


def test_a_rewrite_with_more_bytes_and_other_content_is_detected(flow):
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    new = "".join(f"ITEM1{i:02d},SHOP009,{i},2018-12-01 00:00:00\n" for i in range(6))
    flow.inventory.write_text(new)  # same inode, larger, different bytes before the old position
    src, _ = flow.pass_()
    assert src["reset"] and "rewritten" in src["reset"]
    assert src["records"] == 6
    assert flow.ec.read_text() == SCENARIO + new


def test_a_replaced_file_is_read_from_the_start(flow):
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    rotated = flow.inventory.with_name("latest.txt.new")
    rotated.write_text(SCENARIO + APPENDED)  # a new file, moved into place (log rotation)
    os.replace(rotated, flow.inventory)
    src, _ = flow.pass_()
    assert src["reset"] and "replaced" in src["reset"]
    assert src["records"] == 6


def test_non_ascii_lines_and_byte_accurate_positions(flow):
    lines = "ITEM010,SHOP001,12,お茶 500ml\nITEM011,SHOP001,3,김치 찌개\nITEM012,SHOP001,7,Café ☕\n"
    flow.inventory.write_text(lines, encoding="utf-8")
    src, _ = flow.pass_()
    assert src["to_position"] == len(lines.encode("utf-8"))
    with flow.inventory.open("a", encoding="utf-8") as f:
        f.write("ITEM013,SHOP001,1,おにぎり\n")
    src, _ = flow.pass_()
    assert src["records"] == 1
    assert [json.loads(v)["payload"] for v in flow.records()] == (lines + "ITEM013,SHOP001,1,おにぎり\n").splitlines()
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()


def test_crlf_line_endings_give_records_without_the_cr(flow):
    flow.inventory.write_bytes(SCENARIO.replace("\n", "\r\n").encode())
    src, _ = flow.pass_()
    assert src["records"] == 4 and src["to_position"] == len(SCENARIO) + 4
    assert flow.records() == [envelope(line) for line in SCENARIO.splitlines()]
    assert flow.ec.read_text() == SCENARIO


def test_an_empty_file_and_a_missing_file(flow):
    src, snk = flow.pass_()  # the file does not exist yet
    assert src["records"] == 0 and src.get("missing_file") is True and snk["records"] == 0
    flow.inventory.write_text("")
    src, snk = flow.pass_()
    assert (src["records"], snk["records"]) == (0, 0)
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    assert flow.ec.read_text() == SCENARIO


def test_plain_string_values_as_an_option(flow):
    flow.source["config"]["value.converter"] = "org.apache.kafka.connect.storage.StringConverter"
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    assert flow.records() == [line.encode() for line in SCENARIO.splitlines()]
    assert flow.ec.read_text() == SCENARIO


@pytest.mark.parametrize("raw", ["{oops", '{"offsets": [{"partition": {"filename": "F"}, "offset": {"position": "12"}}]}'])
def test_a_corrupt_offset_variable_is_a_clear_error_and_nothing_is_sent(flow, raw):
    flow.inventory.write_text(SCENARIO)
    name = flow.source["name"]
    flow.store[f"airconnect.offsets.{name}"] = raw.replace("F", str(flow.inventory))
    with pytest.raises(OffsetError, match=rf"Variable 'airconnect.offsets.{name}'"):
        flow.pass_()
    assert flow.records() == []


def test_undecodable_bytes_stop_at_the_bad_line_and_keep_what_came_before(flow):
    flow.inventory.write_bytes(SCENARIO.encode() + b"ITEM666,\xff\xfe,1,x\n" + APPENDED.encode())
    with pytest.raises(DataError, match=rf"line at byte {len(SCENARIO)} .* not valid UTF-8"):
        flow.pass_()
    assert len(flow.records()) == 4
    offsets = json.loads(flow.store[f"airconnect.offsets.{flow.source['name']}"])
    assert offsets["offsets"][0]["offset"]["position"] == len(SCENARIO)


class _DiesOnSet(MemoryStore):
    """An offset store whose writes fail: the run dies after Kafka committed, before the Variable."""

    def set(self, key, value):
        raise RuntimeError("killed before the offset Variable was set")


def test_source_dying_after_the_commit_sends_nothing_twice(flow, kafka):
    flow.inventory.write_text(SCENARIO)
    dying = _DiesOnSet(flow.store)
    with pytest.raises(RuntimeError, match="killed before"):
        run(flow.source, dying, kafka)
    assert len(flow.records()) == 4  # the batch reached Kafka, the Variable was never set
    assert f"airconnect.offsets.{flow.source['name']}" not in flow.store
    with flow.inventory.open("a") as f:
        f.write(APPENDED)
    src, _ = flow.pass_()
    assert src["recovered"] is True and src["records"] == 2
    assert flow.records() == [envelope(line) for line in (SCENARIO + APPENDED).splitlines()]
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()


def test_sink_dying_after_the_write_writes_no_line_twice(flow, kafka):
    flow.inventory.write_text(SCENARIO)
    flow.pass_()
    with flow.inventory.open("a") as f:
        f.write(APPENDED)
    run(flow.source, flow.store, kafka)
    with pytest.raises(RuntimeError, match="killed before"):
        run(flow.sink, _DiesOnSet(flow.store), kafka)
    assert flow.ec.read_text() == SCENARIO + APPENDED  # written and fsynced, not checkpointed
    snk = run(flow.sink, flow.store, kafka)
    assert snk["truncated_bytes"] == len(APPENDED) and snk["records"] == 2
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()


def test_many_lines_in_several_batches(flow):
    flow.source["config"]["batch.size"] = "1000"
    flow.sink["config"]["checkpoint.records"] = "700"
    body = "".join(f"ITEM{i:05d},SHOP{i % 50:03d},{i},2018-10-01 00:00:00\n" for i in range(5000))
    flow.inventory.write_text(body)
    src, snk = flow.pass_()
    assert (src["records"], src["batches"], snk["records"]) == (5000, 5, 5000)
    assert flow.ec.read_text() == body


def test_a_10_mb_line_arrives_whole(flow):
    big = "ITEM999,SHOP001," + "x" * (10 * 1024 * 1024) + ",2018-10-01 01:01:01"
    flow.inventory.write_text(SCENARIO.splitlines(keepends=True)[0] + big + "\n" + SCENARIO.splitlines(keepends=True)[1])
    source, sink = flow.pass_()
    assert source["records"] == 3 and sink["records"] == 3
    assert flow.ec.read_bytes() == flow.inventory.read_bytes()


def test_a_line_larger_than_the_topic_accepts_is_a_clear_error_and_moves_nothing(flow, kafka):
    # The broker refuses the record (the topic's max.message.bytes): the batch is not committed,
    # the run says why, and the position stays where it was.
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka["bootstrap.servers"]})
    admin.create_topics([NewTopic(flow.topic, 1, 1, config={"max.message.bytes": "2000"})])[flow.topic].result(15)
    flow.inventory.write_text(SCENARIO)
    assert flow.pass_()[0]["records"] == 4
    with flow.inventory.open("a") as f:
        f.write("ITEM999,SHOP001," + "x" * 5000 + ",2018-10-03 03:00:00\n")
    with pytest.raises(DataError, match="larger than the broker accepts"):
        run(flow.source, flow.store, kafka)
    assert len(flow.records()) == 4
    offsets = json.loads(flow.store[f"airconnect.offsets.{flow.source['name']}"])
    assert offsets["offsets"][0]["offset"]["position"] == len(SCENARIO)


def test_a_file_replaced_while_a_run_reads_it(flow, kafka, tmp_path):
    """The run reads the file it opened to its end; the next run reads the new file from its start."""
    import subprocess
    import sys
    import time

    from helpers import ROOT

    old = [f"OLD{i:06d},SHOP001,{i},2018-10-01 01:01:01" for i in range(200_000)]
    flow.inventory.write_text("".join(line + "\n" for line in old))
    spec = tmp_path / "spec.json"
    store = tmp_path / "offsets.json"
    spec.write_text(json.dumps({"kafka": kafka, "store": str(store),
                                "definition": file_source(flow.source["name"], str(flow.inventory), flow.topic,
                                                          **{"batch.size": "500"})}))
    child = [sys.executable, str(ROOT / "tests" / "crash_child.py"), str(spec)]
    proc = subprocess.Popen(child, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not store.exists():  # the first batch is committed: the run is reading the file
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before the file could be replaced; give it more lines"
    new = ["NEW000001,SHOP001,1,2018-10-02 02:02:02", "NEW000002,SHOP001,2,2018-10-02 02:02:02"]
    replacement = flow.inventory.with_suffix(".new")
    replacement.write_text("".join(line + "\n" for line in new))
    os.replace(replacement, flow.inventory)  # as log rotation or `mv` does
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert [json.loads(v)["payload"] for v in flow.records()] == old
    assert subprocess.run(child, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    assert [json.loads(v)["payload"] for v in flow.records()] == old + new
