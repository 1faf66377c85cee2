"""Side by side with Debezium (its PostgresConnector 3.6.1 and MariaDbConnector 3.5.0 in a real
Kafka Connect worker): the same database, the same changes, the same events field by field -- keys,
``before``, ``after``, ``op``, the deterministic ``source`` fields and the schemas.

PostgreSQL:

What cannot match, and is left out of the comparison:
* ``source.version`` (airconnect writes its own), ``source.name`` and the schema names (each
  connector has its own ``topic.prefix``: they are compared with the prefix swapped);
* the snapshot's ``source.ts_ms``/``ts_us``/``ts_ns``, ``txId``, ``lsn`` and ``sequence``: the
  moment and slot of each connector's own snapshot;
* the envelope's ``ts_ms``/``ts_us``/``ts_ns``: when each connector processed the change;
* ``source.lsn`` and ``sequence`` while streaming: Debezium decodes with pgoutput, airconnect
  with wal2json, and the two plugins report different LSNs for a change (Debezium: the
  transaction's; wal2json: each change record's own); both increase along the log.

MariaDB (Debezium 3.5.0.Final's MariaDbConnector: 3.6.x of it is not on the Maven registry used
here, and 3.6.1's MySqlConnector refuses MariaDB 10.11; see scripts/debezium/mariadb/pom.xml):
the same exclusions for ``version``, ``name`` and the envelope's ``ts_*``; in the snapshot,
``source.ts_*``, ``file`` and ``pos`` (each snapshot's own moment and binlog position). While
streaming every other ``source`` field matches, ``gtid``, ``file``, ``pos`` and ``row`` included.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from airconnect.core.offsets import MemoryStore
from airconnect.core.runtime import run

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.connect import ConnectWorker  # noqa: E402

DB_PORT = os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
DSN = f"postgresql://airconnect:airconnect@127.0.0.1:{DB_PORT}/ec"
DEBEZIUM_LIBS = Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack")) / "debezium-libs"

#: Streaming source fields both connectors set from the same facts (the commit).
SOURCE_SAME = ("connector", "db", "schema", "table", "snapshot", "txId", "ts_ms", "ts_us", "ts_ns", "xmin",
               "origin", "origin_lsn")
SNAPSHOT_SOURCE_SAME = ("connector", "db", "schema", "table", "snapshot", "xmin")


def read_records(kafka: dict[str, Any], topic: str, want: int = 0, timeout: float = 60.0) -> list[tuple[Any, Any]]:
    """(key, value) of each record of ``topic``, JSON-decoded; waits until at least ``want``."""
    deadline = time.monotonic() + timeout
    while True:
        c = Consumer({**kafka, "group.id": f"cmp-{uuid.uuid4().hex}", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "enable.partition.eof": True,
                      "isolation.level": "read_committed", "fetch.wait.max.ms": 20})
        out: list[tuple[Any, Any]] = []
        try:
            md = c.list_topics(topic, timeout=10).topics.get(topic)
            if md is not None and md.error is None:
                parts = sorted(md.partitions)
                c.assign([TopicPartition(topic, p, 0) for p in parts])
                done: set[int] = set()
                idle = 0
                while len(done) < len(parts) and idle < 100:
                    msg = c.poll(0.1)
                    if msg is None:
                        idle += 1
                        continue
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            done.add(msg.partition())
                            continue
                        raise RuntimeError(msg.error().str())
                    out.append((None if msg.key() is None else json.loads(msg.key()),
                                None if msg.value() is None else json.loads(msg.value())))
        finally:
            c.close()
        if len(out) >= want or time.monotonic() > deadline:
            return out
        time.sleep(1)


def swap(doc: Any, theirs: str, ours: str) -> Any:
    """``doc`` with Debezium's topic prefix written as airconnect's (schema names hold it)."""
    return json.loads(json.dumps(doc).replace(theirs, ours))


def compare(where: str, k1: Any, v1: Any, k2: Any, v2: Any, ours: str, source_same: tuple[str, ...] = SOURCE_SAME,
            snapshot_same: tuple[str, ...] = SNAPSHOT_SOURCE_SAME) -> list[str]:
    """What differs between airconnect's record and Debezium's, one line each (``source`` fields:
    ``source_same`` while streaming, ``snapshot_same`` in a snapshot)."""
    out = [] if k1 == k2 else [f"{where}: key {k1} != {k2}"]
    if v1 is None or v2 is None:
        return out if v1 is v2 else out + [f"{where}: value {v1} != {v2}"]
    s1, s2 = v1["schema"], v2["schema"]
    for f1, f2 in zip(s1["fields"], s2["fields"]):
        if f1 != f2:
            if f1.get("fields") and f2.get("fields") and len(f1["fields"]) == len(f2["fields"]):
                out += [f"{where}: schema of {f1['field']}.{a.get('field')}: {a} != {b}"
                        for a, b in zip(f1["fields"], f2["fields"]) if a != b]
                f1, f2 = {k: v for k, v in f1.items() if k != "fields"}, {k: v for k, v in f2.items() if k != "fields"}
            if f1 != f2:
                out.append(f"{where}: schema field {f1} != {f2}")
    if {k: v for k, v in s1.items() if k != "fields"} != {k: v for k, v in s2.items() if k != "fields"}:
        out.append(f"{where}: envelope schema {s1.get('name')} != {s2.get('name')}")
    p1, p2 = v1["payload"], v2["payload"]
    for part in ("op", "before", "after", "transaction"):
        if p1[part] != p2[part]:
            out.append(f"{where}: {part} {p1[part]} != {p2[part]}")
    same = snapshot_same if p1["op"] == "r" else source_same
    out += [f"{where}: source.{f} {p1['source'][f]!r} != {p2['source'][f]!r}" for f in same
            if p1["source"][f] != p2["source"][f]]
    if p1["source"]["name"] != ours:
        out.append(f"{where}: source.name {p1['source']['name']!r}")
    return out


def test_airconnect_and_debezium_give_the_same_events(tmp_path, kafka, unique):
    if not any(DEBEZIUM_LIBS.glob("debezium-connector-postgres-*.jar")):
        pytest.fail(f"Debezium's jars are not in {DEBEZIUM_LIBS}: run scripts/stack.sh fetch")
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    cur = conn.cursor()
    sales, stock = f"cmp_sales_{unique}", f"cmp_stock_{unique}"
    ours, theirs = f"ac-{unique}", f"dbz-{unique}"
    slot_ours, slot_theirs = f"ac_{unique}", f"dbz_{unique}"
    cur.execute(f"CREATE TYPE mood_{unique} AS ENUM ('sad', 'happy')")
    cur.execute(f"CREATE TABLE {sales} (id int PRIMARY KEY, item varchar(32) NOT NULL, price numeric(12,2), "
                "qty bigint, sold_at timestamptz(6), day date, local_ts timestamp(6), ms_ts timestamp(3), flag boolean, "
                "note text, r real, d double precision, s smallint NOT NULL DEFAULT 0, doc jsonb, u uuid, raw bytea, "
                "n numeric, bits bit(12) DEFAULT B'000000000101', wide varbit(64), free varbit, "
                "dur interval, cash money, tags text[], nums int[], addr inet, tz timetz, mac macaddr, "
                "js json, xs xml, big numeric(30,0), addrs inet[], ids uuid[], days date[], span int4range, "
                f"mood mood_{unique}, pt point, vec tsvector)")
    cur.execute(f"CREATE TABLE {stock} (id int PRIMARY KEY, item varchar(32) NOT NULL, qty int)")
    cur.execute(f"ALTER TABLE {stock} REPLICA IDENTITY FULL")
    cur.execute(f"INSERT INTO {sales} VALUES (1, 'apple', 1.50, 10, '2018-10-01 01:01:01.5+00', '2018-10-01', "
                "'2018-10-01 01:01:01.123456', '2018-10-01 01:01:01.123', true, 'ü 売上', 0.1, 2.25, 3, "
                "'{\"a\": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', 12.345, B'101000000011', "
                "B'1000000000000000000000000000000000000000000000000000000000000001', B'1000000001', "
                "'1 year 2 mons 3 days 04:05:06.789', 12.34, '{\"a b\",c}', '{1,2,3}', '192.168.0.1/24', "
                "'12:34:56.789+09', '08:00:2b:01:02:03', '{\"k\": 1}', '<a>1</a>', 123456789012345678901234567890, "
                "'{10.0.0.1}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{2018-10-01,NULL}', '[1,5)', 'happy', "
                "'(1.5,2)', 'a fat cat'), "
                "(2, 'pear', -0.01, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, "
                "DEFAULT, B'0', B'', NULL, NULL, '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                "NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
    cur.execute(f"INSERT INTO {stock} VALUES (1, 'apple', 5), (2, 'pear', 7)")
    tables = f"public\\.{sales},public\\.{stock}"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "debezium").symlink_to(DEBEZIUM_LIBS)
    debezium = {"name": f"dbz-{unique}", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname": "127.0.0.1", "database.port": DB_PORT, "database.user": "airconnect",
                "database.password": "airconnect", "database.dbname": "ec", "topic.prefix": theirs,
                "table.include.list": tables, "plugin.name": "pgoutput", "slot.name": slot_theirs,
                "publication.name": slot_theirs, "publication.autocreate.mode": "filtered",
                "slot.drop.on.stop": "true", "snapshot.mode": "initial"}
    definition = {"name": f"ac-{unique}", "config": {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector", "db.conn.id": "postgres_ec",
        "topic.prefix": ours, "table.include.list": tables, "plugin.name": "wal2json", "slot.name": slot_ours,
        "snapshot.mode": "initial"}}
    store = MemoryStore()
    worker = ConnectWorker(tmp_path / "worker", kafka["bootstrap.servers"], [debezium], plugin_path=plugins)
    try:
        run(definition, store, kafka, connect=lambda: psycopg2.connect(DSN))
        for table in (sales, stock):  # its snapshot is done
            assert len(read_records(kafka, f"{theirs}.public.{table}", 2, timeout=120)) == 2, worker.tail()
        # The changes: an update, a delete, a transaction over both tables, a key change.
        cur.execute(f"UPDATE {sales} SET price = 9.99, note = NULL, bits = b'110000000001', wide = b'10' WHERE id = 1")
        cur.execute(f"DELETE FROM {sales} WHERE id = 2")
        cur.execute(f"BEGIN; INSERT INTO {sales} (id, item, price) VALUES (3, 'fig', 100000.01); "
                    f"UPDATE {stock} SET qty = qty - 1 WHERE id = 1; DELETE FROM {stock} WHERE id = 2; COMMIT")
        cur.execute(f"UPDATE {sales} SET id = 4, bits = NULL WHERE id = 3")
        run(definition, store, kafka, connect=lambda: psycopg2.connect(DSN))
        for table, count in ((sales, 2 + 1 + 2 + 1 + 3), (stock, 2 + 1 + 2)):
            mine = read_records(kafka, f"{ours}.public.{table}", count)
            theirs_records = read_records(kafka, f"{theirs}.public.{table}", count, timeout=60)
            assert len(mine) == len(theirs_records) == count, (len(mine), len(theirs_records), worker.tail())
            differences: list[str] = []
            for i, ((k1, v1), (k2, v2)) in enumerate(zip(mine, swap(theirs_records, theirs, ours))):
                differences += compare(f"{table} record {i}", k1, v1, k2, v2, ours)
            assert not differences, "\n".join(differences)
    finally:
        worker.stop()
        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN (%s, %s) "
                    "AND NOT active", (slot_ours, slot_theirs))
        cur.execute(f"DROP PUBLICATION IF EXISTS {slot_theirs}")
        cur.execute(f"DROP TABLE IF EXISTS {sales}, {stock}")
        cur.execute(f"DROP TYPE IF EXISTS mood_{unique}")
        conn.close()


# -- MariaDB: Debezium 3.5.0's MariaDbConnector (its own plugin folder; see scripts/debezium/mariadb/pom.xml)

MARIA_PORT = os.environ.get("AIRCONNECT_MARIADB_PORT", "3306")
MARIA_URL = f"mysql://airconnect:airconnect@127.0.0.1:{MARIA_PORT}/pos"
MARIA_PARAMS = {"host": "127.0.0.1", "port": int(MARIA_PORT), "user": "airconnect", "password": "airconnect",
                "database": "pos"}
DEBEZIUM_MARIADB_LIBS = (Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack")) / "debezium-mariadb-libs")
#: Source fields both connectors take from the same binlog event while streaming (all but
#: ``version``, and ``name``, checked apart).
MARIA_SOURCE_SAME = ("connector", "db", "table", "snapshot", "server_id", "gtid", "file", "pos", "row", "ts_ms",
                     "ts_us", "ts_ns", "sequence", "thread", "query")
#: In the snapshot, ``ts_ms``/``ts_us``/``ts_ns``, ``file`` and ``pos`` are each snapshot's own
#: moment and binlog position (the other tests write to the same server in between).
MARIA_SNAPSHOT_SOURCE_SAME = ("connector", "db", "table", "snapshot", "server_id", "gtid", "row", "sequence",
                              "thread", "query")


def maria_connect() -> Any:
    from helpers import generator

    return generator().connect_mysql(MARIA_URL)


def test_airconnect_and_debezium_give_the_same_events_on_mariadb(tmp_path, kafka, unique):
    if not any(DEBEZIUM_MARIADB_LIBS.glob("debezium-connector-mariadb-*.jar")):
        pytest.fail(f"Debezium's MariaDB jars are not in {DEBEZIUM_MARIADB_LIBS}: run scripts/stack.sh fetch")
    conn = maria_connect()
    conn.autocommit(True)
    cur = conn.cursor()
    sales, stock = f"cmp_sales_{unique}", f"cmp_stock_{unique}"
    ours, theirs = f"ac-{unique}", f"dbz-{unique}"
    cur.execute(f"CREATE TABLE {sales} (id INT PRIMARY KEY, item VARCHAR(32) NOT NULL, price DECIMAL(12,2), "
                "qty BIGINT, sold_at TIMESTAMP(6) NULL, day DATE, local_ts DATETIME(6), ms_ts DATETIME(3), "
                "flag TINYINT(1), bit1 BIT(1), note TEXT, r FLOAT, d DOUBLE, s SMALLINT NOT NULL DEFAULT 0, "
                "u INT UNSIGNED, big BIGINT UNSIGNED, doc JSON, raw VARBINARY(8), t TIME(6), kind ENUM('a', 'b'), "
                "tags SET('x', 'y'), c CHAR(3), state VARCHAR(8) NOT NULL DEFAULT 'new', bits BIT(12) DEFAULT b'101', "
                "wide BIT(64), zd DATE NOT NULL DEFAULT '0000-00-00', zdt DATETIME(3), "
                "zdt0 DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00', "
                "zts TIMESTAMP NOT NULL DEFAULT '0000-00-00 00:00:00', yr YEAR, tu TINYINT UNSIGNED, mu MEDIUMINT UNSIGNED, "
                "su SMALLINT UNSIGNED, neg TIME, du DECIMAL(10,2) UNSIGNED, lt LONGTEXT, dt0 DATETIME, "
                "ts0 TIMESTAMP NULL) DEFAULT CHARSET=utf8mb4")
    cur.execute(f"CREATE TABLE {stock} (id INT PRIMARY KEY, item VARCHAR(32) NOT NULL, qty INT)")
    cur.execute(f"INSERT INTO {sales} VALUES (1, 'apple', 1.50, 10, '2018-10-01 01:01:01.5', '2018-10-01', "
                "'2018-10-01 01:01:01.123456', '2018-10-01 01:01:01.123', 1, b'1', 'ü 売上', 0.5, 2.25, 3, "
                "4000000000, 18000000000000000000, '{\"a\": [1, 2]}', x'00ff', '12:34:56.789', 'b', 'y,x', 'xy', "
                "'old', b'101000000011', b'1000000000000000000000000000000000000000000000000000000000000001', "
                "'2018-10-01', '0000-00-00 00:00:00', '2018-10-01 01:01:01', '2018-10-01 01:01:01', 2018, 255, 16777215, "
                "65535, '-12:34:56', 12.5, 'long', '2018-10-01 01:01:01', '2018-10-01 01:01:01'), "
                "(2, 'pear', -0.01, NULL, '2018-10-01 00:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                "NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, DEFAULT, DEFAULT, b'0', DEFAULT, NULL, DEFAULT, DEFAULT, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                "NULL)")
    cur.execute(f"INSERT INTO {stock} VALUES (1, 'apple', 5), (2, 'pear', 7)")
    tables = f"pos\\.{sales},pos\\.{stock}"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "debezium-mariadb").symlink_to(DEBEZIUM_MARIADB_LIBS)
    debezium = {"name": f"dbz-{unique}", "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
                "database.hostname": "127.0.0.1", "database.port": MARIA_PORT, "database.user": "airconnect",
                "database.password": "airconnect", "database.server.id": str(5400 + int(unique[:4], 16) % 1000),
                "topic.prefix": theirs, "database.include.list": "pos", "table.include.list": tables,
                "snapshot.mode": "initial", "snapshot.locking.mode": "none", "include.schema.changes": "false",
                "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
                "schema.history.internal.file.filename": str(tmp_path / "schema-history.dat"),
                "schema.history.internal.store.only.captured.tables.ddl": "true",
                # Its binlog reader decodes every table's rows and stops at one it cannot decode (an
                # invalid date another test wrote at the same time): skip those, ours are counted.
                "event.processing.failure.handling.mode": "warn"}
    definition = {"name": f"ac-{unique}", "config": {
        "connector.class": "io.debezium.connector.mariadb.MariaDbConnector", "db.conn.id": "mysql_pos",
        "topic.prefix": ours, "database.include.list": "pos", "table.include.list": tables,
        "snapshot.mode": "initial"}}
    store = MemoryStore()
    worker = ConnectWorker(tmp_path / "worker", kafka["bootstrap.servers"], [debezium], plugin_path=plugins)
    try:
        run(definition, store, kafka, connect=maria_connect, db_params=MARIA_PARAMS)
        for table in (sales, stock):  # its snapshot is done
            assert len(read_records(kafka, f"{theirs}.pos.{table}", 2, timeout=120)) == 2, worker.tail()
        # The changes: an update, a delete, a transaction over both tables, a key change.
        cur.execute(f"UPDATE {sales} SET price = 9.99, note = NULL, bits = b'110000000001', wide = b'10' WHERE id = 1")
        cur.execute(f"DELETE FROM {sales} WHERE id = 2")
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO {sales} (id, item, price, sold_at, tags, big) VALUES (3, 'fig', 100000.01, "
                    "'2018-10-02 00:00:00', 'x', 5)")
        cur.execute(f"UPDATE {stock} SET qty = qty - 1 WHERE id = 1")
        cur.execute(f"DELETE FROM {stock} WHERE id = 2")
        cur.execute("COMMIT")
        cur.execute(f"UPDATE {sales} SET id = 4, bits = NULL WHERE id = 3")
        run(definition, store, kafka, connect=maria_connect, db_params=MARIA_PARAMS)
        for table, count in ((sales, 2 + 1 + 2 + 1 + 3), (stock, 2 + 1 + 2)):
            mine = read_records(kafka, f"{ours}.pos.{table}", count)
            theirs_records = read_records(kafka, f"{theirs}.pos.{table}", count, timeout=60)
            assert len(mine) == len(theirs_records) == count, (len(mine), len(theirs_records), worker.tail())
            differences: list[str] = []
            for i, ((k1, v1), (k2, v2)) in enumerate(zip(mine, swap(theirs_records, theirs, ours))):
                differences += compare(f"{table} record {i}", k1, v1, k2, v2, ours, MARIA_SOURCE_SAME,
                                       MARIA_SNAPSHOT_SOURCE_SAME)
            assert not differences, "\n".join(differences)
    finally:
        worker.stop()
        cur.execute(f"DROP TABLE IF EXISTS {sales}, {stock}")
        conn.close()
