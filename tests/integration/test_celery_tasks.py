"""tasks.max on Airflow's CeleryExecutor: one scheduler, two Celery workers (w1, w2) with a Redis
broker, the metadata database in the stack's PostgreSQL (Airflow refuses SQLite with a
distributed executor). Started once for the module (tests/celery_stack.py).

A JDBC source over 4 tables and an S3 sink over their topics (4 partitions each), both with
tasks.max=4, run by a DAG built like the shipped ones (``connectors_of`` + ``connector_task``):

- the mapped tasks of one run land on both workers (``TaskInstance.hostname``), and the S3
  objects equal those of a one-task run, byte for byte;
- a worker SIGKILLed (with its task processes) in the middle of a source task: the scheduler
  finds the task without heartbeat, retries it on the other worker, and every row is delivered
  once (topics) and exported once (S3).
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from typing import Any

import pytest
from celery_stack import CeleryAirflow, kill_tree, wait
from confluent_kafka import Consumer, TopicPartition

from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import generator

PG_PORT = os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
S3_URL = f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}"
TABLES = 4
DAG_ID = "celery_tasks"
WORKERS = ("w1", "w2")

DAG_FILE = '''
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.s3.spec import S3_SINK
from airconnect.flows import connectors_of
from airconnect.operators import JdbcSourceOperator, S3SinkOperator
from airconnect.tasks import connector_task

source, sink = connectors_of("celery_tasks", [], JDBC_SOURCE, S3_SINK)
with DAG("celery_tasks", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=1,
         default_args={"retries": 3, "retry_delay": timedelta(seconds=1)}, tags=["airconnect"]):
    connector_task(source, JdbcSourceOperator) >> connector_task(sink, S3SinkOperator)
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, kafka):
    import boto3

    u = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("celery-airflow")
    gen = generator()
    # The tables, their connector definitions and the DAG.
    conn = gen.connect_pg()
    tables = [f"ct_{u}_{i}" for i in range(TABLES)]
    with conn.cursor() as cur:
        for t in tables:
            cur.execute(f"CREATE TABLE {t} (id BIGSERIAL PRIMARY KEY, item VARCHAR(16) NOT NULL, "
                        "amount NUMERIC(12,2) NOT NULL, sold_at VARCHAR(32) NOT NULL)")
    conn.commit()
    s3 = boto3.client("s3", endpoint_url=S3_URL, aws_access_key_id="airconnect",
                      aws_secret_access_key="airconnect-secret", region_name="us-east-1")
    buckets = {"celery": f"celery-{u}", "one": f"celery-one-{u}"}
    for b in buckets.values():
        s3.create_bucket(Bucket=b)
    prefix = f"celery-{u}."
    topics = [prefix + t for t in tables]
    source = {"name": f"jdbc-{u}", "config": {
        "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
        "mode": "incrementing", "incrementing.column.name": "id", "table.whitelist": ",".join(tables),
        "topic.prefix": prefix, "tasks.max": "4", "batch.max.rows": "500", "topic.creation.default.partitions": "4"}}
    sink = {"name": f"s3-{u}", "config": {
        "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": ",".join(topics),
        "s3.bucket.name": buckets["celery"], "aws.conn.id": "aws_tasks", "timestamp.field": "sold_at",
        "flush.size": "997", "tasks.max": "4"}}
    (home / "connectors").mkdir()
    (home / "connectors" / "tasks.json").write_text(json.dumps([source, sink]))
    dags = home / "dags"
    dags.mkdir()
    (dags / "celery_tasks.py").write_text(DAG_FILE)
    env = {
        # A lost worker's task is found without heartbeat after 20 s (default 300) and retried.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRCONNECT_CONNECTORS_DIR": str(home / "connectors"),
        "AIRCONNECT_CELERY_TASKS_CONNECTORS": f"jdbc-{u},s3-{u}",
        "AIRFLOW_CONN_AWS_TASKS": json.dumps({"conn_type": "aws", "login": "airconnect", "password": "airconnect-secret",
                                              "extra": {"endpoint_url": S3_URL, "region_name": "us-east-1"}}),
    }
    try:
        with CeleryAirflow(home, dags, env, workers=WORKERS, dag_ids=[DAG_ID], pg_port=PG_PORT) as af:
            yield {"u": u, "af": af, "http": af.http, "procs": af.procs, "tails": af.tails, "tables": tables,
                   "topics": topics, "s3": s3, "buckets": buckets, "source": source, "sink": sink, "kafka": kafka,
                   "conn": conn, "gen": gen}
    finally:
        with conn.cursor() as cur:
            for t in tables:
                cur.execute(f"DROP TABLE IF EXISTS {t}")
        conn.commit()
        conn.close()
        for b in buckets.values():
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
                for obj in page.get("Contents", ()):
                    s3.delete_object(Bucket=b, Key=obj["Key"])
            s3.delete_bucket(Bucket=b)


def _insert(c: dict[str, Any], rows: int) -> None:
    with c["conn"].cursor() as cur:
        for t in c["tables"]:
            cur.execute(f"INSERT INTO {t} (item, amount, sold_at) SELECT 'ITEM' || (g % 97), (g % 1000) / 100.0, "
                        f"'2018-' || lpad((1 + g % 12)::text, 2, '0') || '-15T10:00:00Z' FROM generate_series(1, {rows}) g")
    c["conn"].commit()


def _trigger(c: dict[str, Any]) -> str:
    return c["af"].trigger(DAG_ID)


def _task_instances(c: dict[str, Any], run_id: str) -> list[tuple[str, int, str, str, int]]:
    """(task_id, map_index, state, hostname, try_number) of the run's mapped tasks."""
    return [(t["task_id"], t["map_index"], t["state"], t["hostname"], t["try_number"])
            for t in c["af"].task_instances(DAG_ID, run_id)]


def _finished(c: dict[str, Any], run_id: str, timeout: float) -> None:
    c["af"].finished(DAG_ID, run_id, timeout)


def _ids_per_table(c: dict[str, Any]) -> dict[str, list[int]]:
    """table -> the ids its topic holds (committed records), sorted."""
    consumer = Consumer({**c["kafka"], "group.id": f"celery-check-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True, "fetch.wait.max.ms": 20})
    found: dict[str, list[int]] = {}
    try:
        for table, topic in zip(c["tables"], c["topics"]):
            parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, 0) for p in parts])
            ids: list[int] = []
            done: set[int] = set()
            idle = 0
            while len(done) < len(parts) and idle < 100:
                msgs = consumer.consume(5000, timeout=0.2)
                idle = 0 if msgs else idle + 1
                for m in msgs:
                    if m.error():
                        done.add(m.partition())
                    else:
                        ids.append(json.loads(m.value())["payload"]["id"])
            found[table] = sorted(ids)
    finally:
        consumer.close()
    return found


def _objects(c: dict[str, Any], bucket: str) -> dict[str, bytes]:
    s3, out = c["s3"], {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="topics/"):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _one_task_reference(c: dict[str, Any]) -> dict[str, bytes]:
    """What the same sink writes as one task (in this process), into a bucket of its own."""
    one = {"name": f"s3-one-{c['u']}", "config": {**c["sink"]["config"], "tasks.max": "1",
                                                  "s3.bucket.name": c["buckets"]["one"], "aws.conn.id": "aws_default"}}
    import boto3

    s3 = boto3.client("s3", endpoint_url=S3_URL, aws_access_key_id="airconnect",
                      aws_secret_access_key="airconnect-secret", region_name="us-east-1")
    store = c.setdefault("one_store", MemoryStore())
    run(validate(one), store, c["kafka"], s3_client=s3)
    return _objects(c, c["buckets"]["one"])


def test_the_tasks_of_one_run_land_on_both_workers_and_write_what_one_task_writes(cluster):
    c = cluster
    _insert(c, 3000)
    run_id = _trigger(c)
    _finished(c, run_id, 600)
    tis = _task_instances(c, run_id)
    source_tis = [t for t in tis if t[0] == f"jdbc-{c['u']}.run"]
    sink_tis = [t for t in tis if t[0] == f"s3-{c['u']}.run"]
    assert [t[1] for t in source_tis] == [0, 1, 2, 3] and [t[1] for t in sink_tis] == [0, 1, 2, 3]
    hosts = {t[3].split("@")[0] for t in tis}
    assert hosts == set(WORKERS), tis  # both workers ran tasks of this run
    assert all(ids == list(range(1, 3001)) for ids in _ids_per_table(c).values())
    assert _objects(c, c["buckets"]["celery"]) == _one_task_reference(c)  # byte for byte
    # The control plane shows the tasks: Kafka Connect's ConnectorStateInfo, a worker per task.
    status = c["http"].get(f"/airconnect/connectors/jdbc-{c['u']}/status").json()
    assert status["connector"]["state"] == "RUNNING", status
    assert [t["id"] for t in status["tasks"]] == [0, 1, 2, 3], status
    assert {t["worker_id"] for t in status["tasks"]} == {t[3] for t in source_tis}, status
    assert all(t["state"] == "RUNNING" for t in status["tasks"]), status
    tasks = c["http"].get(f"/airconnect/connectors/jdbc-{c['u']}/tasks").json()
    assert [t["id"]["task"] for t in tasks] == [0, 1, 2, 3]
    three = c["http"].get(f"/airconnect/connectors/jdbc-{c['u']}/tasks/3/status").json()
    assert three == status["tasks"][3]


def test_a_worker_killed_mid_task_loses_and_doubles_nothing(cluster):
    c = cluster
    from confluent_kafka import Consumer as Probe

    _insert(c, 40000)
    probe = Probe({**c["kafka"], "group.id": f"probe-{c['u']}"})
    ends = {t: sum(probe.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for p in range(4))
            for t in c["topics"]}
    run_id = _trigger(c)
    tables = dict(zip(c["tables"], c["topics"]))

    def w1_mid_task() -> bool:
        """A source task runs on w1 and has committed part of its tables' new rows."""
        for task_id, _, state, host, _ in _task_instances(c, run_id):
            if task_id == f"jdbc-{c['u']}.run" and state == "running" and (host or "").startswith("w1@"):
                moved = [sum(probe.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for p in range(4))
                         - ends[t] for t in tables.values()]
                return any(0 < m < 40000 for m in moved)
        return False

    wait("a source task in the middle of its work on w1", w1_mid_task, 300, c["tails"])
    kill_tree(c["procs"]["w1"], signal.SIGKILL)  # the worker, its pool and the task: no goodbye
    probe.close()
    _finished(c, run_id, 600)
    tis = _task_instances(c, run_id)
    retried = [t for t in tis if t[4] > 1]
    assert retried and all(t[3].startswith("w2@") for t in retried), tis  # re-run on the other worker
    for table, ids in _ids_per_table(c).items():  # every row once
        missing, doubled = sorted(set(range(1, 43001)) - set(ids)), len(ids) - len(set(ids))
        assert not missing and not doubled and len(ids) == 43000, (
            f"{table}: {len(ids)} records, {len(missing)} rows missing (first {missing[:5]}), {doubled} doubled")
    objects = _objects(c, c["buckets"]["celery"])
    assert objects == _one_task_reference(c)
    assert sum(len(body.splitlines()) for body in objects.values()) == 43000 * TABLES
