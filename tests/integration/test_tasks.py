"""tasks.max: a connector's work split into tasks that run at the same time (as Airflow's mapped
tasks do, here in threads), against the real Kafka, PostgreSQL and S3 (moto).

Offsets stay keyed by source partition (table, topic-partition), so a split that changes between
runs (tasks.max 1, then 3, then 2) loses and repeats nothing; each source partition has its own
transactional id, so a task that takes a partition over fences the zombie that had it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from airconnect.core.config import ConnectorConfig
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import TransientError
from airconnect.core.offsets import MemoryStore, Offsets
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from airconnect.core.split import task_configs
from helpers import generator, read_topic

TABLES = 4


def run_split(config: ConnectorConfig, store: MemoryStore, kafka: dict[str, Any], **resources: Any) -> list[dict[str, Any]]:
    """One run of the connector as its tasks would run it: the split, then every share at once."""
    shares = task_configs(config, kafka)
    assert len(shares) == min(config["tasks.max"], len(shares))
    with ThreadPoolExecutor(len(shares)) as pool:
        return list(pool.map(lambda share: run(config.for_task(share), store, kafka, **resources), shares))


def keyed_partitions(kafka: dict[str, Any], topic: str) -> dict[int, list[dict[str, Any]]]:
    """partition -> the payloads it holds (committed records), in order."""
    c = Consumer({**kafka, "group.id": "test-tasks-reader", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True, "fetch.wait.max.ms": 20})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        found: dict[int, list[dict[str, Any]]] = {p: [] for p in parts}
        done: set[int] = set()
        for _ in range(300):
            if len(done) == len(parts):
                break
            for msg in c.consume(1000, timeout=0.1):
                if msg.error():
                    done.add(msg.partition())
                    continue
                found[msg.partition()].append(json.loads(msg.value())["payload"])
        return found
    finally:
        c.close()


@pytest.fixture
def tables(unique):
    gen = generator()
    conn = gen.connect_pg()
    names = [f"tasks_{unique}_{i}" for i in range(TABLES)]
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f"CREATE TABLE {name} (id BIGSERIAL PRIMARY KEY, item VARCHAR(16) NOT NULL)")
    conn.commit()
    yield conn, names
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f"DROP TABLE {name}")
    conn.commit()
    conn.close()


def _insert(conn, names: list[str], rows: int) -> None:
    with conn.cursor() as cur:
        for name in names:
            cur.executemany(f"INSERT INTO {name} (item) VALUES (%s)", [(f"ITEM{i:03d}",) for i in range(rows)])
    conn.commit()


def test_jdbc_source_split_changing_between_runs_loses_and_doubles_nothing(kafka, unique, tables):
    conn, names = tables
    prefix = f"tasks-{unique}."
    store = MemoryStore()

    def definition(tasks: int) -> ConnectorConfig:
        return validate({"name": f"jdbc-tasks-{unique}", "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
            "mode": "incrementing", "incrementing.column.name": "id", "table.whitelist": ",".join(names),
            "topic.prefix": prefix, "tasks.max": str(tasks), "batch.max.rows": "7",
            "topic.creation.default.partitions": "3"}})

    expected = 0
    for tasks, rows in ((1, 20), (3, 15), (2, 11)):
        _insert(conn, names, rows)
        expected += rows
        shares = task_configs(definition(tasks))
        assert [s["task"] for s in shares] == list(range(min(tasks, TABLES)))
        assert sorted(t for s in shares for t in s.get("tables", names)) == sorted(names)  # disjoint, complete
        results = run_split(definition(tasks), store, kafka, connect=generator().connect_pg)
        assert sum(r["records"] for r in results) == rows * TABLES
        for name in names:
            by_partition = keyed_partitions(kafka, prefix + name)
            assert len(by_partition) == 3  # topic.creation.default.partitions
            ids = sorted(p["id"] for payloads in by_partition.values() for p in payloads)
            assert ids == list(range(1, expected + 1)), name  # every row once, whatever the split
            assert sum(1 for payloads in by_partition.values() if payloads) > 1  # keyed: spread over partitions
            for payloads in by_partition.values():  # each key's records in order within its partition
                assert [p["id"] for p in payloads] == sorted(p["id"] for p in payloads)
    # One offset per table, never per task.
    offsets = Offsets(store, f"jdbc-tasks-{unique}").items()
    assert sorted(p["table"] for p, _ in offsets) == sorted(names)
    assert all(o["incrementing"] == expected for _, o in offsets)


def test_s3_sink_split_changing_between_runs_writes_what_one_task_writes(kafka, unique):
    import boto3
    from test_s3_sink import S3_ENDPOINT, envelope, sale

    s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id="airconnect",
                      aws_secret_access_key="airconnect-secret", region_name="us-east-1")
    topic = f"sales-tasks-{unique}"
    admin = AdminClient(kafka)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result()
    from confluent_kafka import Producer

    def produce(first: int, n: int) -> None:
        producer = Producer({**kafka, "enable.idempotence": True, "linger.ms": 5})
        for i in range(first, first + n):
            producer.produce(topic, envelope(sale(i, f"2018-{1 + i % 3:02d}-15T10:00:00Z")), partition=i % 4)
        assert producer.flush(30) == 0

    buckets = [f"airconnect-tasks-{unique}-{i}" for i in range(2)]
    for b in buckets:
        s3.create_bucket(Bucket=b)
    try:
        def definition(name: str, bucket: str, tasks: int) -> ConnectorConfig:
            return validate({"name": name, "config": {
                "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic,
                "s3.bucket.name": bucket, "timestamp.field": "sold_at", "flush.size": "5", "tasks.max": str(tasks)}})

        one, split = MemoryStore(), MemoryStore()
        done = 0
        for tasks, n in ((3, 41), (2, 23), (4, 9)):
            produce(done, n)
            done += n
            run(definition(f"s3-one-{unique}", buckets[0], 1), one, kafka, s3_client=s3)
            shares = task_configs(definition(f"s3-split-{unique}", buckets[1], tasks), kafka)
            assert len(shares) == tasks
            assert sorted(tuple(tp) for s in shares for tp in s.get("partitions", ())) == [(topic, p) for p in range(4)]
            results = run_split(definition(f"s3-split-{unique}", buckets[1], tasks), split, kafka, s3_client=s3)
            assert sum(r["records"] for r in results) == n

        def objects(bucket: str) -> dict[str, bytes]:
            found = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="topics/"):
                for obj in page.get("Contents", ()):
                    found[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            return found

        ones, splits = objects(buckets[0]), objects(buckets[1])
        assert splits == ones  # the same keys, byte for byte
        assert sum(len(body.splitlines()) for body in splits.values()) == done
        saved = {(p["kafka_topic"], p["kafka_partition"]): o["kafka_offset"]
                 for p, o in Offsets(split, f"s3-split-{unique}").items()}
        assert saved == {(topic, p): done // 4 + (1 if p < done % 4 else 0) for p in range(4)}
    finally:
        for b in buckets:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
                for obj in page.get("Contents", ()):
                    s3.delete_object(Bucket=b, Key=obj["Key"])
            s3.delete_bucket(Bucket=b)


def test_tasks_saving_at_once_keep_each_others_offsets():
    store = MemoryStore()
    a, b = Offsets(store, "c"), Offsets(store, "c")  # two tasks, loaded before either saved
    a.put({"table": "t1"}, {"incrementing": 5})
    a.save()
    b.put({"table": "t2"}, {"incrementing": 7})
    b.save()
    a.put({"table": "t1"}, {"incrementing": 9})
    a.save()
    assert {p["table"]: o["incrementing"] for p, o in Offsets(store, "c").items()} == {"t1": 9, "t2": 7}


def test_a_task_taking_a_partition_over_fences_the_zombie_that_had_it(kafka, unique):
    topic = f"fence-{unique}"
    store = MemoryStore()
    partition = {"table": "t1"}
    zombie = SourceDelivery(f"fence-{unique}", store, kafka, topics=[topic], writer_per_partition=True)
    zombie.resume(partition)
    zombie.send(topic, [b'{"n":1}'])  # its batch is open when its worker is declared lost
    # Another task (of another split) resumes the same table: same transactional id, a new epoch.
    with SourceDelivery(f"fence-{unique}", store, kafka, topics=[topic], writer_per_partition=True) as task:
        task.resume({"table": "t0"})
        task.resume(partition)
        task.send(topic, [b'{"n":2}'])
        task.commit(partition, {"incrementing": 2})
    with pytest.raises(TransientError):
        zombie.commit(partition, {"incrementing": 1})
    zombie.close()
    assert read_topic(kafka, topic) == [b'{"n":2}']
    assert Offsets(store, f"fence-{unique}").get(partition) == {"incrementing": 2}


def test_a_dag_runs_a_connector_as_a_split_and_mapped_tasks_with_its_limits():
    from datetime import datetime

    from airflow.sdk import DAG

    from airconnect.operators import JdbcSourceOperator
    from airconnect.tasks import connector_task, task_ids

    def jdbc(name: str, **extra: str) -> ConnectorConfig:
        return validate({"name": name, "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
            "mode": "bulk", "table.whitelist": "a,b,c", "topic.prefix": "p.", **extra}})

    with DAG("tasks_shape", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        one = connector_task(jdbc("one"), JdbcSourceOperator)
        split = connector_task(jdbc("split", **{"tasks.max": "3", "airflow.max.active.tasks": "2",
                                                "airflow.pool": "jdbc"}), JdbcSourceOperator)
        one >> split
    assert one.task_id == "one" and task_ids(jdbc("one")) == ("one", None)  # tasks.max 1: one task, as ever
    assert task_ids(jdbc("split", **{"tasks.max": "3"})) == ("split.run", "split.split")
    run = dag.get_task("split.run")
    assert run.max_active_tis_per_dagrun == 2 and run.pool == "jdbc"
    assert dag.get_task("split.split").upstream_task_ids == {"one"}
    assert run.upstream_task_ids == {"split.split"}
    assert "task_config" in run.expand_input.value  # mapped over the split's XCom
