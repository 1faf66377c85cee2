"""The ``scaling_tasks`` case (issue #13): what ``tasks.max`` buys.

A JDBC source over 4 tables (``size`` rows in all) and an S3 sink over a 4-partition topic
(``size`` records), each run at 1, 2 and 4 tasks: the connector's split
(:func:`airconnect.core.split.task_configs`), each share run in its own process, all at once,
as the mapped Airflow tasks run on their workers (a Celery worker runs each task in a process
of its own). Throughput is all records over the wall time from the first task's start to the
last one's end, as a ratio against 1 task in the same run; memory is each task process's peak
RSS. Airflow's scheduling (queueing a mapped task, a worker picking it up: about a second a
task) is not in these figures; tests/integration/test_celery_tasks.py runs the same split under
the CeleryExecutor.

Targets: at least 1.6x at 2 tasks (2 cores: 2x is the physical limit), and at 4 tasks every
record once (the counts are checked).
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

TASKS = (1, 2, 4)
TABLES = 4
PARTITIONS = 4
MIN_AT_2 = 1.6


def _task(kind: str, definition: dict[str, Any], share: dict[str, Any], kafka: dict[str, Any],
          db: dict[str, Any], s3: dict[str, str]) -> dict[str, Any]:
    """One task in its own process: its share of the connector, then its records and peak RSS."""
    from airconnect.core.offsets import MemoryStore
    from airconnect.core.registry import validate
    from airconnect.core.runtime import run

    config = validate(definition).for_task(share)
    resources: dict[str, Any] = {}
    if kind == "jdbc":
        import psycopg2

        resources["connect"] = lambda: psycopg2.connect(host=db["host"], port=db["port"], user=db["user"],
                                                        password=db["password"], dbname="ec")
    else:
        import boto3

        resources["s3_client"] = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                                              aws_secret_access_key=s3["secret"], region_name="us-east-1")
    started = time.time()
    out = run(config, MemoryStore(), kafka, **resources)  # offsets: each task's partitions are its own
    return {"records": out["records"], "started": started, "ended": time.time(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _tables(bench: Any, rows: int) -> list[str]:
    import psycopg2

    names = [bench.name("tasks").replace("-", "_") for _ in range(TABLES)]
    conn = psycopg2.connect(host=bench.pg["host"], port=bench.pg["port"], user=bench.pg["user"],
                            password=bench.pg["password"], dbname="ec")
    with conn, conn.cursor() as cur:
        for t in names:
            cur.execute(f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, item_id TEXT NOT NULL, quantity INT NOT NULL, "
                        "unit_price NUMERIC(12,2) NOT NULL, ordered_at TIMESTAMPTZ NOT NULL)")
            cur.execute(f"INSERT INTO {t} SELECT g, 'ITEM' || (g % 500), 1 + g % 7, (g % 10000) / 100.0, "
                        f"TIMESTAMPTZ '2018-01-01' + g * INTERVAL '1 second' FROM generate_series(1, {rows}) g")
    conn.close()
    return names


def _drop(bench: Any, tables: list[str]) -> None:
    import psycopg2

    conn = psycopg2.connect(host=bench.pg["host"], port=bench.pg["port"], user=bench.pg["user"],
                            password=bench.pg["password"], dbname="ec")
    with conn, conn.cursor() as cur:
        for t in tables:
            cur.execute(f"DROP TABLE IF EXISTS {t}")
    conn.close()


def _delete_topics(bench: Any, topics: list[str]) -> None:
    for f in bench.admin().delete_topics(topics, operation_timeout=30).values():
        try:
            f.result()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _fill_topic(bench: Any) -> str:
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    topic = bench.name("tasks-sales")
    bench.admin().create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)])[topic].result()
    bench.topics.append(topic)
    schema = ('{"type":"struct","optional":false,"fields":[{"type":"int64","optional":false,"field":"id"},'
              '{"type":"string","optional":false,"field":"item_id"},{"type":"string","optional":false,"field":"sold_at"}]}')
    p = Producer({"bootstrap.servers": bench.bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "compression.type": "lz4"})
    for i in range(bench.size):
        value = f'{{"schema":{schema},"payload":{{"id":{i},"item_id":"ITEM{i % 500:03d}","sold_at":"2018-{1 + i % 12:02d}-15T10:00:00Z"}}}}'
        while True:
            try:
                p.produce(topic, value.encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return topic


def _run_split(bench: Any, kind: str, definition: dict[str, Any], tasks: int, kafka: dict[str, Any]) -> dict[str, Any]:
    from airconnect.core.registry import validate
    from airconnect.core.split import task_configs

    config = validate({**definition, "config": {**definition["config"], "tasks.max": str(tasks)}})
    shares = task_configs(config, kafka)
    ctx = multiprocessing.get_context("spawn")  # each task a fresh process, as on a worker
    with ProcessPoolExecutor(len(shares), mp_context=ctx) as pool:
        futures = [pool.submit(_task, kind, config.definition(), share, kafka, bench.pg, bench.s3) for share in shares]
        results = [f.result() for f in futures]
    start, end = min(r["started"] for r in results), max(r["ended"] for r in results)
    return {"records": sum(r["records"] for r in results), "seconds": end - start, "tasks": len(shares),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "task_rss_mb": [round(r["peak_rss_mb"]) for r in results]}


def run(bench: Any) -> None:
    """Run the case on ``bench`` (benchmarks/bench.py's Bench); fills ``bench.summary``."""
    import boto3

    kafka = {"bootstrap.servers": bench.bootstrap}
    tables = _tables(bench, bench.size // TABLES)
    topic = _fill_topic(bench)
    s3 = boto3.client("s3", endpoint_url=bench.s3["endpoint"], aws_access_key_id=bench.s3["key"],
                      aws_secret_access_key=bench.s3["secret"], region_name="us-east-1")
    bucket = "airconnect-forecast"
    try:
        for rep in range(bench.reps):
            for tasks in TASKS:
                prefix = bench.name("tasks") + "."
                source = {"name": bench.name("jdbc-tasks"), "config": {
                    "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "unused",
                    "mode": "incrementing", "incrementing.column.name": "id", "table.whitelist": ",".join(tables),
                    "topic.prefix": prefix}}
                out = _run_split(bench, "jdbc", source, tasks, kafka)
                _delete_topics(bench, [prefix + t for t in tables])
                if out["records"] != TABLES * (bench.size // TABLES):
                    raise SystemExit(f"scaling_tasks jdbc {tasks} tasks: {out['records']} records, "
                                     f"expected {TABLES * (bench.size // TABLES)}")
                bench.record("scaling_tasks", f"jdbc_{tasks}", rep, out)
                sink_dir = bench.name("tasks-s3")
                sink = {"name": bench.name("s3-tasks"), "config": {
                    "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic,
                    "s3.bucket.name": bucket, "topics.dir": sink_dir, "timestamp.field": "sold_at",
                    "flush.size": "50000"}}
                out = _run_split(bench, "s3", sink, tasks, kafka)
                if out["records"] != bench.size:
                    raise SystemExit(f"scaling_tasks s3 {tasks} tasks: {out['records']} records, expected {bench.size}")
                bench.record("scaling_tasks", f"s3_{tasks}", rep, out)
                bench.clear_prefix(s3, bucket, sink_dir + "/")
    finally:
        _drop(bench, tables)
        bench.drop_topics()
    med = bench.medians("scaling_tasks")
    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    for kind in ("jdbc", "s3"):
        one = med[f"{kind}_1"]["records_per_s"] or 0
        for tasks in TASKS[1:]:
            r = (med[f"{kind}_{tasks}"]["records_per_s"] or 0) / one if one else 0
            ratios[f"{kind} {tasks} tasks / 1 task"] = r
        targets[f"{kind}: >= {MIN_AT_2}x at 2 tasks"] = ratios[f"{kind} 2 tasks / 1 task"] >= MIN_AT_2
        targets[f"{kind}: every record once at 4 tasks"] = True  # checked above: a miscount stops the run
    bench.summary["scaling_tasks"] = {"medians": med, "ratios": ratios, "targets": targets}
    print(json.dumps({"scaling_tasks": ratios}), flush=True)
