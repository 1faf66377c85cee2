"""The CDC cases (``cdc_pg``, ``cdc_mariadb``): airconnect's CDC sources against Debezium's
connectors (a Kafka Connect worker) on the same table, in one run. PostgreSQL: Debezium 3.6.1's
PostgresConnector (.stack/debezium-libs); MariaDB: Debezium 3.5.0's MariaDbConnector
(.stack/debezium-mariadb-libs; 3.6.x of it is not on the Maven registry used here, and 3.6.1's
MySqlConnector refuses MariaDB 10.11: scripts/debezium/mariadb/pom.xml).

* ``cdc_<db>_snapshot``: ``size`` rows read by each connector's first snapshot (op ``r``).
* ``cdc_<db>_streaming``: then, with both connectors stopped, ``size`` inserts in transactions of
  100 rows and ``size // 2`` updates; each connector then reads the backlog (PostgreSQL: its
  slot's; MariaDB: the binlog from its offset's position).

Each connector's rate is its records over the time between its first and last record's Kafka
timestamp (what the broker saw): neither the JVM's start nor Python's counts, only the reading.
airconnect runs in a process of its own (``python benchmarks/cdc_case.py SPEC``) for its peak
RSS. Debezium's worker is stopped between the two phases (PostgreSQL: ``slot.drop.on.stop=false``,
its slot keeps the backlog; MariaDB: the binlog keeps it; the offsets, and MariaDB's schema
history, are in the worker's files) so both read the same backlog the same way.
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
MARIADB_DB = "pos"


def _pg(db: dict[str, Any]) -> Any:
    import psycopg2

    conn = psycopg2.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"], dbname="ec")
    conn.autocommit = True
    return conn


def _maria(db: dict[str, Any], autocommit: bool = True) -> Any:
    import MySQLdb

    return MySQLdb.connect(host=db["host"], port=db["port"], user=db["user"], passwd=db["password"],
                           database=MARIADB_DB, charset="utf8mb4", autocommit=autocommit)


def _sql(db: dict[str, Any], *statements: str) -> None:
    conn = _maria(db) if db.get("kind") == "mysql" else _pg(db)
    try:
        cur = conn.cursor()
        for s in statements:
            cur.execute(s)
        cur.close()
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


def run(bench: Any, kind: str = "postgres") -> None:
    """The case ``cdc_pg`` (``kind`` postgres) or ``cdc_mariadb`` (``kind`` mariadb)."""
    sys.path.insert(0, str(HERE))
    import connect as kc

    maria = kind == "mariadb"
    case = "cdc_mariadb" if maria else "cdc_pg"
    stack = Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack"))
    libs = stack / ("debezium-mariadb-libs" if maria else "debezium-libs")
    if not any(libs.glob(f"debezium-connector-{'mariadb' if maria else 'postgres'}-*.jar")):
        raise SystemExit(f"Debezium's jars are not in {libs}; run scripts/stack.sh fetch")
    db = bench.maria if maria else bench.pg
    n = bench.size
    tag = uuid.uuid4().hex[:6]
    table = f"bench_cdc_{tag}"
    ours, theirs = f"{bench.tag}-cdc-ac-{tag}", f"{bench.tag}-cdc-dbz-{tag}"
    slot_ours, slot_theirs = f"bench_ac_{tag}", f"bench_dbz_{tag}"
    schema = MARIADB_DB if maria else "public"
    topic_ours, topic_theirs = f"{ours}.{schema}.{table}", f"{theirs}.{schema}.{table}"
    bench.topics += [topic_ours, topic_theirs]
    workdir = bench.work / f"connect-{tag}"
    plugins = bench.work / f"plugins-{tag}"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "debezium").symlink_to(libs)
    if maria:
        say(f"{case}: writing {n:,} rows to {MARIADB_DB}.{table}")
        _sql(db, f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, item VARCHAR(32) NOT NULL, shop VARCHAR(16) NOT NULL, "
                 "qty INT NOT NULL, price DECIMAL(12,2) NOT NULL, sold_at DATETIME(6) NOT NULL)",
             f"INSERT INTO {table} SELECT seq, CONCAT('ITEM', seq % 5000), CONCAT('SHOP', seq % 40), seq % 17, "
             f"(seq % 10000) / 100.0, TIMESTAMP '2018-10-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_{n}")
        spec = {"kind": kind, "definition": {"name": ours, "config": {
            "connector.class": "io.debezium.connector.mariadb.MariaDbConnector", "db.conn.id": "unused",
            "topic.prefix": ours, "database.include.list": MARIADB_DB,
            "table.include.list": f"{MARIADB_DB}\\.{table}"}},
            "db": db, "bootstrap": bench.bootstrap, "store": str(bench.work / f"{ours}.json")}
        debezium = {"name": theirs, "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
                    "database.hostname": db["host"], "database.port": str(db["port"]), "database.user": db["user"],
                    "database.password": db["password"], "database.server.id": str(5400 + int(tag[:3], 16)),
                    "topic.prefix": theirs, "database.include.list": MARIADB_DB,
                    "table.include.list": f"{MARIADB_DB}\\.{table}", "snapshot.mode": "initial",
                    "snapshot.locking.mode": "none", "include.schema.changes": "false",
                    "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
                    "schema.history.internal.file.filename": str(workdir / "schema-history.dat"),
                    "schema.history.internal.store.only.captured.tables.ddl": "true",
                    # Its binlog reader decodes every table's rows, and one it cannot decode (an
                    # invalid date such as 2018-02-30 that another test wrote) stops it: skip those.
                    "event.processing.failure.handling.mode": "warn",
                    "max.batch.size": "20480", "max.queue.size": "81920"}
    else:
        _sql(db, f"CREATE TABLE {table} (id bigint PRIMARY KEY, item varchar(32) NOT NULL, shop varchar(16) NOT NULL, "
                 "qty int NOT NULL, price numeric(12,2) NOT NULL, sold_at timestamptz(6) NOT NULL)",
             f"INSERT INTO {table} SELECT g, 'ITEM' || (g % 5000), 'SHOP' || (g % 40), g % 17, (g % 10000) / 100.0, "
             f"timestamptz '2018-10-01' + g * interval '1 second' FROM generate_series(1, {n}) g")
        spec = {"kind": kind, "definition": {"name": ours, "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector", "db.conn.id": "unused",
            "topic.prefix": ours, "table.include.list": f"public\\.{table}", "slot.name": slot_ours,
            "plugin.name": "wal2json"}}, "db": db, "bootstrap": bench.bootstrap,
            "store": str(bench.work / f"{ours}.json")}
        debezium = {"name": theirs, "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                    "database.hostname": db["host"], "database.port": str(db["port"]), "database.user": db["user"],
                    "database.password": db["password"], "database.dbname": "ec", "topic.prefix": theirs,
                    "table.include.list": f"public\\.{table}", "plugin.name": "pgoutput", "slot.name": slot_theirs,
                    "publication.name": slot_theirs, "publication.autocreate.mode": "filtered",
                    "slot.drop.on.stop": "false", "snapshot.mode": "initial", "max.batch.size": "20480",
                    "max.queue.size": "81920"}
    try:
        # -- the snapshot
        out = _airconnect(bench, spec, f"{case}_snapshot")
        count, first, last = topic_stats(bench.bootstrap, topic_ours, n, 60)
        bench.record(f"{case}_snapshot", "airconnect", 0, {"records": count, "seconds": max(last - first, 1e-3),
                                                          "peak_rss_mb": out.get("peak_rss_mb"),
                                                          "wall_seconds": out["wall_seconds"]})
        with kc.ConnectWorker(workdir, bench.bootstrap, [debezium], plugin_path=plugins) as worker:
            count, first, last = topic_stats(bench.bootstrap, topic_theirs, n, 600)
            if count < n:
                raise SystemExit(f"Debezium's snapshot gave {count} of {n} records:\n{worker.tail()}")
            bench.record(f"{case}_snapshot", "debezium", 0, {"records": count, "seconds": max(last - first, 1e-3),
                                                            "peak_rss_mb": worker.peak_rss_mb()})
        # -- the stream: a backlog for both while neither runs
        say(f"{case}: {n:,} inserts in transactions of 100 rows and {n // 2:,} updates while neither connector runs")
        if maria:
            statements = [f"INSERT INTO {table} SELECT seq, CONCAT('NEW', seq), 'SHOP1', 1, 1.00, NOW(6) FROM "
                          f"seq_{n + i + 1}_to_{n + min(i + 100, n)}" for i in range(0, n, 100)]
        else:
            statements = [f"INSERT INTO {table} SELECT g, 'NEW' || g, 'SHOP1', 1, 1.00, now() FROM "
                          f"generate_series({n + i + 1}, {n + min(i + 100, n)}) g" for i in range(0, n, 100)]
        statements += [f"UPDATE {table} SET qty = qty + 1 WHERE id BETWEEN {i + 1} AND {min(i + 1000, n // 2)}"
                       for i in range(0, n // 2, 1000)]
        _sql(db, *statements)
        changes = n + n // 2
        out = _airconnect(bench, spec, f"{case}_streaming")
        count, first, last = topic_stats(bench.bootstrap, topic_ours, n + changes, 60)
        first_stream = _first_after(bench.bootstrap, topic_ours, n)
        bench.record(f"{case}_streaming", "airconnect", 0, {"records": count - n,
                                                           "seconds": max(last - first_stream, 1e-3),
                                                           "peak_rss_mb": out.get("peak_rss_mb"),
                                                           "wall_seconds": out["wall_seconds"]})
        with kc.ConnectWorker(workdir, bench.bootstrap, [debezium], plugin_path=plugins) as worker:
            count, first, last = topic_stats(bench.bootstrap, topic_theirs, n + changes, 900)
            if count < n + changes:
                raise SystemExit(f"Debezium streamed {count - n} of {changes} changes:\n{worker.tail()}")
            first_stream = _first_after(bench.bootstrap, topic_theirs, n)
            bench.record(f"{case}_streaming", "debezium", 0, {"records": count - n,
                                                             "seconds": max(last - first_stream, 1e-3),
                                                             "peak_rss_mb": worker.peak_rss_mb()})
    finally:
        if maria:
            _sql(db, f"DROP TABLE IF EXISTS {table}")
        else:
            _sql(db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN "
                     f"('{slot_ours}', '{slot_theirs}') AND NOT active",
                 f"DROP PUBLICATION IF EXISTS {slot_theirs}", f"DROP TABLE IF EXISTS {table}")
        bench.drop_topics()
    bench.summarize_throughput(f"{case}_snapshot", ("debezium",))
    bench.summarize_throughput(f"{case}_streaming", ("debezium",))


def say(msg: str) -> None:
    from bench import say as bench_say

    bench_say(msg)


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
    if spec.get("kind") == "mariadb":
        params = {"host": db["host"], "port": db["port"], "user": db["user"], "password": db["password"],
                  "database": MARIADB_DB}
        result = run_connector(spec["definition"], store, {"bootstrap.servers": spec["bootstrap"]},
                               connect=lambda: _maria(db, autocommit=False), db_params=params)
    else:
        result = run_connector(spec["definition"], store, {"bootstrap.servers": spec["bootstrap"]},
                               connect=lambda: psycopg2.connect(host=db["host"], port=db["port"], user=db["user"],
                                                                password=db["password"], dbname="ec"))
    store_path.write_text(json.dumps(dict(store)))
    print(json.dumps({"records": result["records"], "wall_seconds": time.monotonic() - started,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
