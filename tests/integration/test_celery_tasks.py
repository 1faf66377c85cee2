"""tasks.max on Airflow's CeleryExecutor: one scheduler, two Celery workers (w1, w2) with a Redis
broker, the metadata database in the stack's PostgreSQL (Airflow refuses SQLite with a
distributed executor). Started once for the module.

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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import generator

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PG_PORT = os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
REDIS_PORT = int(os.environ.get("AIRCONNECT_REDIS_PORT", "6379"))
S3_URL = f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}"
TABLES = 4
DAG_ID = "celery_tasks"
SERVICES = ("api-server", "scheduler", "dag-processor")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill_tree(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to a process we started and every process under it (a Celery worker's pool and its
    task processes)."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def _wait(what: str, check: Callable[[], Any], timeout: float, tails: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n{tails()}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, kafka):
    import boto3
    import httpx
    import psycopg2

    u = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("celery-airflow")
    gen = generator()
    admin = psycopg2.connect(gen.default_pg_dsn())
    admin.autocommit = True
    db = f"airflow_celery_{u}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
    procs: dict[str, subprocess.Popen] = {}
    redis_dir = home / "redis"
    redis_dir.mkdir()
    redis_port = REDIS_PORT
    if not _port_open(REDIS_PORT):  # the stack's Redis (scripts/stack.sh start redis), else one of our own
        redis_port = _free_port()
        procs["redis"] = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", str(redis_dir), "--save", ""],
            stdout=(redis_dir / "redis.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
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
    (home / "passwords.json").write_text('{"admin": "admin"}')
    port = _free_port()
    pg = f"airconnect:airconnect@127.0.0.1:{PG_PORT}/{db}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIRFLOW_CONFIG", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__LOGGING__BASE_LOG_FOLDER")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"airconnect-{u}",  # this module's workers only
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        # A lost worker's task is found without heartbeat after 20 s (default 300) and retried.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airconnect.tasks.worker_hostname",
        "AIRCONNECT_CONNECTORS_DIR": str(home / "connectors"),
        "AIRCONNECT_CELERY_TASKS_CONNECTORS": f"jdbc-{u},s3-{u}",
        "AIRFLOW_CONN_AWS_TASKS": json.dumps({"conn_type": "aws", "login": "airconnect", "password": "airconnect-secret",
                                              "extra": {"endpoint_url": S3_URL, "region_name": "us-east-1"}}),
    })
    logs = home / "service-logs"
    logs.mkdir()

    def tails() -> str:
        return "\n".join(f"----- {name} -----\n" + "\n".join(
            (logs / f"{name}.out").read_text(errors="replace").splitlines()[-25:])
            for name in (*SERVICES, *WORKERS) if (logs / f"{name}.out").exists())

    def start(name: str, args: list[str], extra: dict[str, str] | None = None) -> None:
        with (logs / f"{name}.out").open("ab") as log:
            procs[name] = subprocess.Popen(args, cwd=ROOT, env={**env, **(extra or {})}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)

    try:
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=600)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        for svc in SERVICES:
            start(svc, [AIRFLOW, svc] + (["--host", "127.0.0.1", "--port", str(port)] if svc == "api-server" else []))
        for w in WORKERS:
            start(w, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{w}@%h", "--concurrency", "1",
                      "--queues", f"airconnect-{u}", "--skip-serve-logs", "--without-mingle", "--without-gossip"],
                  {"AIRCONNECT_WORKER_HOSTNAME": f"{w}@{socket.gethostname()}"})
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            dead = {s: p.returncode for s, p in procs.items() if p.poll() is not None}
            assert not dead, f"services exited: {dead}\n{tails()}"
            try:
                health = httpx.get(f"{base}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            return all((health.get(k) or {}).get("status") == "healthy"
                       for k in ("metadatabase", "scheduler", "dag_processor"))

        _wait("Airflow healthy", healthy, 240, tails)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "admin"},
                           timeout=30).json()["access_token"]
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        _wait("the DAG parsed", lambda: http.get(f"/api/v2/dags/{DAG_ID}").status_code == 200, 180, tails)
        meta = psycopg2.connect(f"postgresql://{pg}")
        meta.autocommit = True
        yield {"u": u, "http": http, "meta": meta, "procs": procs, "tails": tails, "tables": tables, "topics": topics,
               "s3": s3, "buckets": buckets, "source": source, "sink": sink, "kafka": kafka, "conn": conn, "gen": gen}
        meta.close()
    finally:
        for p in procs.values():
            _kill_tree(p, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                _kill_tree(p, signal.SIGKILL)
                p.wait(10)
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
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
        shutil.rmtree(redis_dir, ignore_errors=True)


def _insert(c: dict[str, Any], rows: int) -> None:
    with c["conn"].cursor() as cur:
        for t in c["tables"]:
            cur.execute(f"INSERT INTO {t} (item, amount, sold_at) SELECT 'ITEM' || (g % 97), (g % 1000) / 100.0, "
                        f"'2018-' || lpad((1 + g % 12)::text, 2, '0') || '-15T10:00:00Z' FROM generate_series(1, {rows}) g")
    c["conn"].commit()


def _trigger(c: dict[str, Any]) -> str:
    r = c["http"].post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
    assert r.status_code == 200, r.text
    return str(r.json()["dag_run_id"])


def _run_state(c: dict[str, Any], run_id: str) -> str | None:
    with c["meta"].cursor() as cur:
        cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
        row = cur.fetchone()
    return row[0] if row else None


def _task_instances(c: dict[str, Any], run_id: str) -> list[tuple[str, int, str, str, int]]:
    """(task_id, map_index, state, hostname, try_number) of the run's mapped tasks."""
    with c["meta"].cursor() as cur:
        cur.execute("SELECT task_id, map_index, state, hostname, try_number FROM task_instance "
                    "WHERE dag_id = %s AND run_id = %s AND map_index >= 0 ORDER BY task_id, map_index",
                    (DAG_ID, run_id))
        return list(cur.fetchall())


def _finished(c: dict[str, Any], run_id: str, timeout: float) -> None:
    state = _wait(f"run {run_id} finished", lambda: _run_state(c, run_id) in ("success", "failed")
                  and _run_state(c, run_id), timeout, c["tails"])
    assert _run_state(c, run_id) == "success", f"{state}: {_task_instances(c, run_id)}\n{c['tails']()}"


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

    _wait("a source task in the middle of its work on w1", w1_mid_task, 300, c["tails"])
    _kill_tree(c["procs"]["w1"], signal.SIGKILL)  # the worker, its pool and the task: no goodbye
    probe.close()
    _finished(c, run_id, 600)
    tis = _task_instances(c, run_id)
    retried = [t for t in tis if t[4] > 1]
    assert retried and all(t[3].startswith("w2@") for t in retried), tis  # re-run on the other worker
    assert all(ids == list(range(1, 43001)) for ids in _ids_per_table(c).values())  # every row once
    objects = _objects(c, c["buckets"]["celery"])
    assert objects == _one_task_reference(c)
    assert sum(len(body.splitlines()) for body in objects.values()) == 43000 * TABLES
