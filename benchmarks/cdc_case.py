"""The CDC cases (``cdc_pg``): airconnect's PostgreSQL CDC source against Debezium 3.6.1's
PostgresConnector (a Kafka Connect worker, .stack/debezium-libs) on the same table, in one run.

* ``cdc_pg_snapshot``: ``size`` rows read by each connector's first snapshot (op ``r``).
* ``cdc_pg_streaming``: then, with both connectors stopped, ``size`` inserts in transactions of
  100 rows and ``size // 2`` updates; each connector then reads its slot's backlog.

Each connector's rate is its records over the time between its first and last record's Kafka
timestamp (what the broker saw): neither the JVM's start nor Python's counts, only the reading.
airconnect runs in a process of its own (``python benchmarks/cdc_case.py SPEC``) for its peak
RSS. Debezium's worker is stopped between the two phases (``slot.drop.on.stop=false``: its slot
keeps the backlog; its offsets are in the worker's file) so both read the same backlog the same way.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _pg(db: dict[str, Any]) -> Any:
    import psycopg2

    conn = psycopg2.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"], dbname="ec")
    conn.autocommit = True
    return conn


def _sql(db: dict[str, Any], *statements: str) -> None:
    conn = _pg(db)
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def topic_stats(bootstrap: str, topic: str, want: int, timeout: float) -> tuple[int, float, float]:
    """(records, first and last Kafka timestamp in s) of ``topic`` once it holds ``want`` records
    (read_committed), or what it holds at ``timeout``."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    deadline = time.monotonic() + timeout
    count, first, last = 0, float("inf"), 0.0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-cdc-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": True,
                  "fetch.wait.max.ms": 50})
    try:
        while count < want and time.monotonic() < deadline:
            md = c.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or md.error is not None:
                time.sleep(1)
                continue
            c.assign([TopicPartition(topic, 0, 0)])
            count, first, last = 0, float("inf"), 0.0
            while True:
                msgs = c.consume(10000, timeout=1.0)
                if not msgs:
                    break
                eof = False
                for m in msgs:
                    if m.error():
                        eof = eof or m.error().code() == KafkaError._PARTITION_EOF
                        continue
                    if m.value() is None:
                        continue  # a tombstone
                    count += 1
                    ts = m.timestamp()[1] / 1000
                    first, last = min(first, ts), max(last, ts)
                if eof and count >= want:
                    break
            if count < want:
                time.sleep(2)
    finally:
        c.close()
    return count, first, last


def run(bench: Any) -> None:
    sys.path.insert(0, str(HERE))
    import connect as kc

    libs = Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack")) / "debezium-libs"
    if not any(libs.glob("debezium-connector-postgres-*.jar")):
        raise SystemExit(f"Debezium's jars are not in {libs}; run scripts/stack.sh fetch")
    db = bench.pg
    n = bench.size
    tag = uuid.uuid4().hex[:6]
    table = f"bench_cdc_{tag}"
    ours, theirs = f"{bench.tag}-cdc-ac-{tag}", f"{bench.tag}-cdc-dbz-{tag}"
    slot_ours, slot_theirs = f"bench_ac_{tag}", f"bench_dbz_{tag}"
    topic_ours, topic_theirs = f"{ours}.public.{table}", f"{theirs}.public.{table}"
    bench.topics += [topic_ours, topic_theirs]
    _sql(db, f"CREATE TABLE {table} (id bigint PRIMARY KEY, item varchar(32) NOT NULL, shop varchar(16) NOT NULL, "
             "qty int NOT NULL, price numeric(12,2) NOT NULL, sold_at timestamptz(6) NOT NULL)",
         f"INSERT INTO {table} SELECT g, 'ITEM' || (g % 5000), 'SHOP' || (g % 40), g % 17, (g % 10000) / 100.0, "
         f"timestamptz '2018-10-01' + g * interval '1 second' FROM generate_series(1, {n}) g")
    spec = {"definition": {"name": ours, "config": {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector", "db.conn.id": "unused",
        "topic.prefix": ours, "table.include.list": f"public\\.{table}", "slot.name": slot_ours,
        "plugin.name": "wal2json"}}, "db": db, "bootstrap": bench.bootstrap, "store": str(bench.work / f"{ours}.json")}
    plugins = bench.work / f"plugins-{tag}"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "debezium").symlink_to(libs)
    debezium = {"name": theirs, "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname": db["host"], "database.port": str(db["port"]), "database.user": db["user"],
                "database.password": db["password"], "database.dbname": "ec", "topic.prefix": theirs,
                "table.include.list": f"public\\.{table}", "plugin.name": "pgoutput", "slot.name": slot_theirs,
                "publication.name": slot_theirs, "publication.autocreate.mode": "filtered",
                "slot.drop.on.stop": "false", "snapshot.mode": "initial", "max.batch.size": "20480",
                "max.queue.size": "81920"}
    workdir = bench.work / f"connect-{tag}"
    try:
        # -- the snapshot
        out = _airconnect(bench, spec, "cdc_pg_snapshot")
        count, first, last = topic_stats(bench.bootstrap, topic_ours, n, 60)
        bench.record("cdc_pg_snapshot", "airconnect", 0, {"records": count, "seconds": max(last - first, 1e-3),
                                                         "peak_rss_mb": out.get("peak_rss_mb"),
                                                         "wall_seconds": out["wall_seconds"]})
        with kc.ConnectWorker(workdir, bench.bootstrap, [debezium], plugin_path=plugins) as worker:
            count, first, last = topic_stats(bench.bootstrap, topic_theirs, n, 600)
            if count < n:
                raise SystemExit(f"Debezium's snapshot gave {count} of {n} records:\n{worker.tail()}")
            bench.record("cdc_pg_snapshot", "debezium", 0, {"records": count, "seconds": max(last - first, 1e-3),
                                                           "peak_rss_mb": worker.peak_rss_mb()})
        # -- the stream: a backlog for both slots while neither runs
        statements = [f"INSERT INTO {table} SELECT g, 'NEW' || g, 'SHOP1', 1, 1.00, now() FROM "
                      f"generate_series({n + i + 1}, {n + min(i + 100, n)}) g" for i in range(0, n, 100)]
        statements += [f"UPDATE {table} SET qty = qty + 1 WHERE id BETWEEN {i + 1} AND {min(i + 1000, n // 2)}"
                       for i in range(0, n // 2, 1000)]
        _sql(db, *statements)
        changes = n + n // 2
        out = _airconnect(bench, spec, "cdc_pg_streaming")
        count, first, last = topic_stats(bench.bootstrap, topic_ours, n + changes, 60)
        first_stream = _first_after(bench.bootstrap, topic_ours, n)
        bench.record("cdc_pg_streaming", "airconnect", 0, {"records": count - n,
                                                          "seconds": max(last - first_stream, 1e-3),
                                                          "peak_rss_mb": out.get("peak_rss_mb"),
                                                          "wall_seconds": out["wall_seconds"]})
        with kc.ConnectWorker(workdir, bench.bootstrap, [debezium], plugin_path=plugins) as worker:
            count, first, last = topic_stats(bench.bootstrap, topic_theirs, n + changes, 900)
            if count < n + changes:
                raise SystemExit(f"Debezium streamed {count - n} of {changes} changes:\n{worker.tail()}")
            first_stream = _first_after(bench.bootstrap, topic_theirs, n)
            bench.record("cdc_pg_streaming", "debezium", 0, {"records": count - n,
                                                            "seconds": max(last - first_stream, 1e-3),
                                                            "peak_rss_mb": worker.peak_rss_mb()})
    finally:
        _sql(db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN "
                 f"('{slot_ours}', '{slot_theirs}') AND NOT active",
             f"DROP PUBLICATION IF EXISTS {slot_theirs}", f"DROP TABLE IF EXISTS {table}")
        bench.drop_topics()
    bench.summarize_throughput("cdc_pg_snapshot", ("debezium",))
    bench.summarize_throughput("cdc_pg_streaming", ("debezium",))


def _first_after(bootstrap: str, topic: str, skip: int) -> float:
    """The Kafka timestamp of the first data record after the first ``skip`` (the snapshot's)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-cdc-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        while True:
            for m in c.consume(10000, timeout=5.0):
                if m.error() or m.value() is None:
                    continue
                if seen == skip:
                    return m.timestamp()[1] / 1000
                seen += 1
    finally:
        c.close()


def _airconnect(bench: Any, spec: dict[str, Any], label: str) -> dict[str, Any]:
    """One airconnect pass in a process of its own: its wall time and peak RSS."""
    import subprocess

    from bench import say

    say(f"{label} airconnect: running")
    env = dict(os.environ)
    env["PYTHONPATH"] = bench.args.airconnect_plugins
    proc = subprocess.run([sys.executable, str(HERE / "cdc_case.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                          text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{label} airconnect failed (exit {proc.returncode}); see the lines above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    """``python benchmarks/cdc_case.py SPEC``: one pass of the connector; prints its figures."""
    import psycopg2

    from airconnect.core.offsets import MemoryStore
    from airconnect.core.runtime import run as run_connector

    spec = json.loads(sys.argv[1])
    db = spec["db"]
    store_path = Path(spec["store"])
    store = MemoryStore(json.loads(store_path.read_text()) if store_path.exists() else {})
    started = time.monotonic()
    result = run_connector(spec["definition"], store, {"bootstrap.servers": spec["bootstrap"]},
                           connect=lambda: psycopg2.connect(host=db["host"], port=db["port"], user=db["user"],
                                                            password=db["password"], dbname="ec"))
    store_path.write_text(json.dumps(dict(store)))
    print(json.dumps({"records": result["records"], "wall_seconds": time.monotonic() - started,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
