"""errors.tolerance and dead-letter topics, for sources and sinks, against the real broker and S3.

``none``: a malformed record stops the run there, the offset just before it. ``all``: it goes
to ``<topic>.dlq`` with Connect's error-context headers, and the run goes on. A run killed
after dead-lettering and run again sends no dead letter twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from airconnect.core.errors import ConfigError, DataError
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import file_sink, file_source, read_topic

ROOT = Path(__file__).resolve().parents[2]
GOOD = ["ITEM001,SHOP001,929,2018-10-01 01:01:01", "ITEM002,SHOP001,480,2018-10-01 01:01:01"]


def dead_letters(kafka, topic: str) -> list[tuple[bytes, dict[str, str]]]:
    """(value, headers) of every committed record of ``topic``."""
    c = Consumer({**kafka, "group.id": "dlq-reader", "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True, "fetch.wait.max.ms": 20})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        out, eof = [], set()
        for _ in range(300):
            msg = c.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                eof.add(msg.partition())
                if len(eof) == len(md.partitions):
                    break
                continue
            out.append((msg.value(), {k: v.decode() for k, v in msg.headers() or ()}))
        return out
    finally:
        c.close()


def test_a_source_dead_letters_malformed_lines_and_goes_on(tmp_path, kafka, unique):
    path = tmp_path / "latest.txt"
    bad_fields = b"ITEM003,SHOP001,6902\n"
    bad_bytes = b"ITEM004,SHOP\xff01,1,2018-10-01 01:01:01\n"
    content = (GOOD[0] + "\n").encode() + bad_fields + bad_bytes + (GOOD[1] + "\n").encode()
    path.write_bytes(content)
    topic = f"zaiko-{unique}"
    definition = file_source(f"dlq-src-{unique}", str(path), topic, **{
        "csv.fields": "4", "errors.tolerance": "all", "errors.log.enable": "true"})
    store = MemoryStore()
    result = run(definition, store, kafka)
    assert result["records"] == 2 and result["dead_letters"] == 2
    assert [json.loads(v)["payload"] for v in read_topic(kafka, topic)] == GOOD
    letters = dead_letters(kafka, f"{topic}.dlq")
    assert [v for v, _ in letters] == [bad_fields.rstrip(b"\n"), bad_bytes.rstrip(b"\n")]
    h1, h2 = letters[0][1], letters[1][1]
    assert h1["__connect.errors.connector.name"] == f"dlq-src-{unique}"
    assert h1["__connect.errors.position"] == str(len(GOOD[0]) + 1) and h1["__connect.errors.file"] == str(path)
    assert "3 comma-separated field(s); csv.fields is 4" in h1["__connect.errors.exception.message"]
    assert h2["__connect.errors.position"] == str(len(GOOD[0]) + 1 + len(bad_fields))
    assert "not valid UTF-8" in h2["__connect.errors.exception.message"]
    # Past them: a second run sends nothing, to either topic.
    assert run(definition, store, kafka)["records"] == 0
    assert len(read_topic(kafka, topic)) == 2 and len(dead_letters(kafka, f"{topic}.dlq")) == 2


def test_with_tolerance_none_a_source_stops_just_before_the_malformed_line(tmp_path, kafka, unique):
    path = tmp_path / "latest.txt"
    path.write_bytes((GOOD[0] + "\n").encode() + b"ITEM003,SHOP001\n" + (GOOD[1] + "\n").encode())
    topic = f"zaiko-{unique}"
    store = MemoryStore()
    with pytest.raises(DataError, match=rf"the line at byte {len(GOOD[0]) + 1} of .* has 2 comma-separated field\(s\); "
                                        rf"csv.fields is 4\. The 1 lines before it were delivered; the stored position "
                                        rf"stays at byte {len(GOOD[0]) + 1}"):
        run(file_source(f"none-{unique}", str(path), topic, **{"csv.fields": "4"}), store, kafka)
    assert [json.loads(v)["payload"] for v in read_topic(kafka, topic)] == [GOOD[0]]
    offsets = json.loads(store[f"airconnect.offsets.none-{unique}"])
    assert offsets["offsets"][0]["offset"]["position"] == len(GOOD[0]) + 1


def _produce(kafka, topic: str, values: list[bytes]) -> None:
    p = Producer(kafka)
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0


def _envelope(text: str) -> bytes:
    return json.dumps({"schema": {"type": "string", "optional": False}, "payload": text}).encode()


def _child(tmp_path: Path, spec: dict, failpoint: str | None) -> int:
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, **({"AIRCONNECT_FAILPOINT": failpoint} if failpoint else {})}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "crash_child.py"), str(tmp_path / "spec.json")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, -9), proc.stdout + proc.stderr
    return proc.returncode


def test_a_file_sink_dead_letters_what_it_cannot_convert_once_even_after_a_crash(tmp_path, kafka, unique):
    topic = f"ec-{unique}"
    _produce(kafka, topic, [_envelope(GOOD[0]), b"\xff\xfe not text", _envelope(GOOD[1])])
    out = tmp_path / "ec.txt"
    spec = {"kafka": kafka, "store": str(tmp_path / "offsets.json"),
            "definition": file_sink(f"dlq-sink-{unique}", str(out), topic, **{"errors.tolerance": "all"})}
    # Killed after the dead letter was acknowledged and the lines written, before the offsets moved.
    assert _child(tmp_path, spec, "file_sink.fsynced:1") == -9
    assert _child(tmp_path, spec, None) == 0
    assert out.read_text().splitlines() == GOOD
    letters = dead_letters(kafka, f"{topic}.dlq")
    assert [v for v, _ in letters] == [b"\xff\xfe not text"]
    h = letters[0][1]
    assert (h["__connect.errors.topic"], h["__connect.errors.partition"], h["__connect.errors.offset"]) == (topic, "0", "1")
    assert h["__connect.errors.stage"] == "VALUE_CONVERTER" and "not valid UTF-8" in h["__connect.errors.exception.message"]


def test_an_s3_sink_dead_letters_records_without_a_month_once_even_after_a_crash(tmp_path, kafka, unique):
    import boto3

    s3_args = {"endpoint_url": f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}",
               "aws_access_key_id": "airconnect", "aws_secret_access_key": "airconnect-secret", "region_name": "us-east-1"}
    s3 = boto3.client("s3", **s3_args)
    bucket, topic = f"dlq-{unique}", f"sales-{unique}"
    s3.create_bucket(Bucket=bucket)
    records = [{"sale_id": 1, "sold_at": "2018-10-02T10:00:00Z"}, "not json", {"sale_id": 3},
               {"sale_id": 4, "sold_at": "2018-11-02T10:00:00Z"}]
    _produce(kafka, topic, [r.encode() if isinstance(r, str) else json.dumps(r).encode() for r in records])
    spec = {"kafka": kafka, "store": str(tmp_path / "offsets.json"), "resources": {"s3": s3_args}, "definition": {
        "name": f"dlq-s3-{unique}", "config": {
            "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic, "s3.bucket.name": bucket,
            "aws.conn.id": "unused", "timestamp.field": "sold_at", "errors.tolerance": "all"}}}
    assert _child(tmp_path, spec, "s3.object_uploaded:1") == -9  # dead letters sent, offsets not saved
    assert _child(tmp_path, spec, None) == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"topics/{topic}/year=2018/month=10/{topic}+0+0000000000.json",
                    f"topics/{topic}/year=2018/month=11/{topic}+0+0000000003.json"]
    letters = dead_letters(kafka, f"{topic}.dlq")
    assert [(v, h["__connect.errors.offset"]) for v, h in letters] == [(b"not json", "1"), (b'{"sale_id": 3}', "2")]
    assert "none of the timestamp.field fields" in letters[1][1]["__connect.errors.exception.message"]


def test_the_jdbc_source_refuses_a_tolerance_it_cannot_honour():
    with pytest.raises(ConfigError, match="key 'errors.tolerance': must be 'none'"):
        validate({"name": "j", "config": {"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
                                          "db.conn.id": "postgres_ec", "mode": "bulk", "table.whitelist": "t",
                                          "topic.prefix": "p.", "errors.tolerance": "all"}})


@pytest.mark.parametrize("kill_at_commit", [1, 2, 3])
def test_a_dead_letter_pending_when_a_bulk_chunk_commits_is_delivered_once_through_a_crash(tmp_path, kafka, unique,
                                                                                           kill_at_commit):
    """A malformed line near the end of the first 1 MiB chunk: its dead letter is still pending
    when the next chunk (plain lines, converted in bulk) fills the batch and commits it."""
    path = tmp_path / "latest.txt"
    good = [f"ITEM{i % 1000:03d},SHOP{i % 10:03d},{i},2018-10-01 01:01:01" for i in range(60_000)]
    first_chunk_lines = (1 << 20) // (len(good[0]) + 1)
    bad_at = first_chunk_lines - 100
    lines = [line.encode() for line in good]
    lines.insert(bad_at, b"ITEM\xff,SHOP001,1,2018-10-01 01:01:01")
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    topic = f"bulk-{unique}"
    spec = {"kafka": kafka, "store": str(tmp_path / "offsets.json"), "definition": file_source(
        f"bulk-{unique}", str(path), topic, **{"batch.size": "10000", "errors.tolerance": "all"})}
    assert _child(tmp_path, spec, f"kafka.after_commit:{kill_at_commit}") == -9
    assert _child(tmp_path, spec, None) == 0
    assert [json.loads(v)["payload"] for v in read_topic(kafka, topic)] == good
    letters = dead_letters(kafka, f"{topic}.dlq")
    assert [v for v, _ in letters] == [lines[bad_at]]
    assert letters[0][1]["__connect.errors.position"] == str(sum(len(x) + 1 for x in lines[:bad_at]))


def test_the_dead_letter_topics_replication_factor_and_logged_messages_are_honoured(tmp_path, kafka, unique, caplog):
    """errors.deadletterqueue.topic.replication.factor is the DLQ's when it is created (a factor the
    one-broker stack cannot give fails, naming the key); errors.log.include.messages logs the record."""
    import logging

    from airconnect.core.errors import ConfigError
    from airconnect.core.offsets import MemoryStore
    from airconnect.core.runtime import run
    from helpers import file_source

    path = tmp_path / "tenpo.csv"
    path.write_bytes("店舗-1,ok\n".encode() + b"\xff\xfe broken\n")
    base = {"errors.tolerance": "all", "errors.log.enable": "true", "errors.log.include.messages": "true"}
    too_many = file_source(f"load-rf-{unique}", path, f"tenpo-rf-{unique}",
                           **base, **{"errors.deadletterqueue.topic.replication.factor": "3"})
    with pytest.raises(ConfigError) as err:
        run(too_many, MemoryStore(), kafka)
    assert f"connector 'load-rf-{unique}', key 'errors.deadletterqueue.topic.replication.factor'" in str(err.value)
    one = file_source(f"load-rf1-{unique}", path, f"tenpo-rf1-{unique}",
                      **base, **{"errors.deadletterqueue.topic.replication.factor": "1"})
    with caplog.at_level(logging.WARNING, logger="airconnect"):
        assert run(one, MemoryStore(), kafka)["dead_letters"] == 1
    assert any("b'\\xff\\xfe broken'" in r.getMessage() for r in caplog.records)
