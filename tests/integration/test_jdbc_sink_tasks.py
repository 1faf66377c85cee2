"""The JDBC sink split into tasks (tasks.max), as Kafka Connect's sink tasks share a consumer
group's topic-partitions: each task writes its partitions' rows and their offsets in one
transaction, under a lock per topic-partition; real Kafka, PostgreSQL and MariaDB.

The tasks of a run run at the same time (in threads, as Airflow's mapped tasks would), and the
split changes between runs (tasks.max 1, then 3, then 2): the table ends as one task would leave
it, every partition's offset is its end, once.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from confluent_kafka import Producer
from test_jdbc_sink import SINK, Db, make_topic

from airconnect.connectors.jdbc.dialect import dialect_of
from airconnect.connectors.jdbc_sink.offsets import DatabaseOffsets
from airconnect.connectors.jdbc_sink.sql import SinkSql
from airconnect.core.config import ConnectorConfig
from airconnect.core.data import INT32_SCHEMA, INT64_SCHEMA, OPTIONAL_STRING_SCHEMA, Struct, from_connect, struct_schema
from airconnect.core.errors import OffsetError, TransientError
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from airconnect.core.split import task_configs

PARTITIONS = 4
ROW = struct_schema([("id", INT64_SCHEMA), ("round", INT32_SCHEMA)], name="row")
ROW_NOTE = struct_schema([("id", INT64_SCHEMA), ("round", INT32_SCHEMA), ("note", OPTIONAL_STRING_SCHEMA)], name="row")


def produce(kafka: dict[str, Any], topic: str, ids: list[int], rnd: int, note: bool = False) -> dict[int, int]:
    """Records of ``ids`` (id i into partition i % 4, so a key stays in order); how many per partition."""
    p = Producer(kafka)
    per: dict[int, int] = {}
    for i in ids:
        schema = ROW_NOTE if note else ROW
        values: dict[str, Any] = {"id": i, "round": rnd, **({"note": f"n{i}"} if note else {})}
        p.produce(topic, from_connect(schema, Struct(schema, values)), partition=i % PARTITIONS)
        per[i % PARTITIONS] = per.get(i % PARTITIONS, 0) + 1
    assert p.flush(30) == 0
    return per


def definition(name: str, topic: str, tasks: int, **extra: str) -> ConnectorConfig:
    return validate({"name": name, "config": {"connector.class": SINK, "topics": topic, "db.conn.id": "unused",
                                              "auto.create": "true", "tasks.max": str(tasks), "batch.size": "7",
                                              **extra}})


def run_split(db: Db, config: ConnectorConfig) -> list[dict[str, Any]]:
    """One run as its tasks would run it: the split, then every share at once."""
    shares = task_configs(config, db.kafka)
    assert len(shares) == min(config["tasks.max"], PARTITIONS)
    if len(shares) > 1:  # disjoint, and all of the topic's partitions
        assert sorted(tuple(tp) for s in shares for tp in s["partitions"]) == [(config["topics"][0], p)
                                                                               for p in range(PARTITIONS)]
    with ThreadPoolExecutor(len(shares)) as pool:
        return list(pool.map(lambda share: run(config.for_task(share), db.store, db.kafka, connect=db.connect),
                             shares))


def db_offsets(db: Db, name: str) -> list[tuple[str, int, int]]:
    cur = db.conn.cursor()
    cur.execute("SELECT topic, kafka_partition, next_offset FROM airconnect_sink_offsets WHERE connector = %s "
                "ORDER BY topic, kafka_partition", (name,))
    rows = [(t, int(p), int(o)) for t, p, o in cur.fetchall()]
    cur.close()
    db.conn.commit()
    return rows


def exists(db: Db, table: str) -> bool:
    cur = db.conn.cursor()
    cur.execute("SELECT 1 FROM information_schema.tables WHERE table_name = %s", (table,))
    found = cur.fetchone() is not None
    cur.close()
    db.conn.commit()
    return found


@pytest.fixture(params=["postgres", "mysql"])
def db(request, kafka):
    d = Db(request.param, kafka)
    yield d
    d.close()


def test_upserts_split_1_then_3_then_2_tasks_leave_what_one_task_leaves(db, unique):
    topic = make_topic(db.kafka, db.table(f"sink-tasks-{unique}"), partitions=PARTITIONS)
    name = f"sink-test-{unique}"
    expected: dict[int, int] = {}
    ends = dict.fromkeys(range(PARTITIONS), 0)
    for rnd, (tasks, ids) in enumerate([(1, range(0, 40)), (3, range(20, 60)), (2, [*range(0, 10), *range(50, 70)])]):
        for p, n in produce(db.kafka, topic, list(ids), rnd).items():
            ends[p] += n
        expected.update(dict.fromkeys(ids, rnd))
        results = run_split(db, definition(name, topic, tasks, **{"insert.mode": "upsert", "pk.mode": "record_value",
                                                                  "pk.fields": "id"}))
        assert sum(r["records"] for r in results) == len(ids)
        assert db.rows(topic) == sorted(expected.items())
        assert db_offsets(db, name) == [(topic, p, ends[p]) for p in range(PARTITIONS)]


def test_inserts_split_into_tasks_that_create_and_evolve_the_table_at_once_write_each_record_once(db, unique):
    topic = make_topic(db.kafka, db.table(f"sink-tasks-{unique}"), partitions=PARTITIONS)
    name = f"sink-test-{unique}"
    cfg = {"insert.mode": "insert", "auto.evolve": "true"}
    produce(db.kafka, topic, list(range(40)), 0)
    results = run_split(db, definition(name, topic, 3, **cfg))  # 3 tasks find the table missing
    assert sum(len(r["tables_created"]) for r in results) == 1  # one of them created it, the others waited
    produce(db.kafka, topic, list(range(40, 60)), 1)
    run_split(db, definition(name, topic, 1, **cfg))
    produce(db.kafka, topic, list(range(60, 80)), 2, note=True)  # a new optional field, in every partition
    results = run_split(db, definition(name, topic, 4, **cfg))
    assert sum(len(r["columns_added"]) for r in results) == 1
    rows = db.rows(topic)
    assert [r[0] for r in rows] == list(range(80))  # each record once
    assert [r[2] for r in rows] == [None] * 60 + [f"n{i}" for i in range(60, 80)]
    assert db_offsets(db, name) == [(topic, p, 20) for p in range(PARTITIONS)]


def test_a_partition_another_run_is_writing_is_refused_and_the_others_are_written(db, unique):
    kafka = db.kafka
    topic = make_topic(kafka, db.table(f"sink-tasks-{unique}"), partitions=PARTITIONS)
    name = f"sink-test-{unique}"
    produce(kafka, topic, list(range(12)), 0)
    config = definition(name, topic, 2)
    first, second = task_configs(config, kafka)
    assert first["partitions"] == [[topic, 0], [topic, 2]] and second["partitions"] == [[topic, 1], [topic, 3]]
    by_regex = validate({"name": name, "config": {"connector.class": SINK, "topics.regex": re.escape(topic),
                                                  "db.conn.id": "unused", "tasks.max": "2"}})
    assert task_configs(by_regex, kafka) == [first, second]  # topics.regex: the topics it matches now
    other = db.connect()  # a run (say a zombie task of an earlier split) writing partition 2, as a run locks it
    try:
        cur, sql = other.cursor(), SinkSql(dialect_of(other))
        assert sql.try_share(cur, name) and sql.try_lock_partition(cur, name, topic, 2)
        for share in (first, None):  # the task that has partition 2, and a connector of one task
            with pytest.raises(TransientError) as caught:
                run(config.for_task(share), db.store, kafka, connect=db.connect)
            assert str(caught.value) == (f"connector '{name}': another run is writing partition {topic}[2]; "
                                         "try again when it has finished")
        assert not exists(db, topic)  # neither wrote a row
        assert run(config.for_task(second), db.store, kafka, connect=db.connect)["records"] == 6  # not blocked
        with pytest.raises(OffsetError):  # nor is a reset of the offsets while runs write
            DatabaseOffsets(config, db.connect).reset(lambda: None)
    finally:
        other.close()
    assert run(config.for_task(first), db.store, kafka, connect=db.connect)["records"] == 6
    assert [r[0] for r in db.rows(topic)] == list(range(12))
    assert db_offsets(db, name) == [(topic, p, 3) for p in range(PARTITIONS)]
