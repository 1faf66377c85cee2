"""JDBC source against real PostgreSQL and MariaDB: the cases where Kafka Connect loses rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from decimal import Decimal

import pytest

from airconnect.core.config import validate
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.jdbc_source import JdbcSource
from airconnect.core.jsonexact import loads
from airconnect.core.offsets import MemoryStore
from helpers import generator, read_topic

UTC = dt.timezone.utc


class Db:
    """A throw-away table in the real database, and a way to read it with the connector."""

    def __init__(self, kind: str, unique: str, kafka: dict, driver: str | None = None):
        self.kind, self.kafka = kind, kafka
        self.table = f"sales_{unique}"
        self.topic_prefix = f"jdbc-{unique}."
        self.topic = self.topic_prefix + self.table
        self.store = MemoryStore()
        gen = generator()
        self.connect = gen.connect_pg if kind == "postgres" else gen.connect_mysql
        if driver == "psycopg3":  # what the Postgres provider's hook hands out when psycopg 3 is installed
            self.connect = _connect_psycopg3
        self.conn = self.connect()
        ts_type = "TIMESTAMPTZ(6)" if kind == "postgres" else "DATETIME(6)"
        idcol = "id BIGSERIAL PRIMARY KEY" if kind == "postgres" else "id BIGINT AUTO_INCREMENT PRIMARY KEY"
        self.execute(f"CREATE TABLE {self.table} ({idcol}, item VARCHAR(32) NOT NULL, price NUMERIC(20,4) NOT NULL, "
                     f"updated_at {ts_type} NULL)")

    def execute(self, sql: str, params=None, conn=None, commit=True):
        c = conn or self.conn
        cur = c.cursor()
        cur.execute(sql, params)
        cur.close()
        if commit:
            c.commit()

    def insert(self, rows, conn=None, commit=True):
        for item, price, ts in rows:
            self.execute(f"INSERT INTO {self.table} (item, price, updated_at) VALUES (%s, %s, %s)",
                         (item, price, self._param(ts)), conn=conn, commit=False)
        if commit:
            (conn or self.conn).commit()

    def _param(self, ts):
        if ts is None or self.kind == "postgres":
            return ts
        return ts.astimezone(UTC).replace(tzinfo=None)  # DATETIME holds UTC wall time (db.timezone=UTC)

    def definition(self, name=None, **extra):
        cfg = {"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
               "db.conn.id": "postgres_ec" if self.kind == "postgres" else "mysql_pos",
               "mode": "timestamp+incrementing", "table.whitelist": self.table, "incrementing.column.name": "id",
               "timestamp.column.name": "updated_at", "topic.prefix": self.topic_prefix}
        cfg.update({k.replace("_", "."): str(v) for k, v in extra.items()})
        return {"name": name or f"jdbc-{self.table}", "config": cfg}

    def run(self, store=None, name=None, **extra):
        cfg = validate(self.definition(name, **extra))
        return JdbcSource(cfg, self.store if store is None else store, self.kafka, self.connect).run().as_dict()

    def payloads(self):
        return [loads(v)["payload"] for v in read_topic(self.kafka, self.topic)]

    def close(self):
        self.execute(f"DROP TABLE {self.table}")
        self.conn.close()


def _connect_psycopg3():
    import psycopg

    conn = psycopg.connect(generator().default_pg_dsn())
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


@pytest.fixture(params=["postgres", "mysql", "postgres-psycopg3"])
def db(request, kafka, unique):
    kind, _, driver = request.param.partition("-")
    d = Db(kind, unique, kafka, driver or None)
    yield d
    d.close()


T0 = dt.datetime(2018, 10, 1, 1, 1, 1, 123456, tzinfo=UTC)


def test_counts_contents_and_exactly_once_for_new_rows(db):
    db.insert([("ITEM001", Decimal("12.50"), T0), ("ITEM002", Decimal("0.1000"), T0 + dt.timedelta(seconds=1))])
    assert db.run()["records"] == 2
    db.insert([("ITEM003", Decimal("3.0000"), T0 + dt.timedelta(days=1))])
    assert db.run()["records"] == 1
    assert db.run()["records"] == 0
    got = db.payloads()
    assert [(p["id"], p["item"]) for p in got] == [(1, "ITEM001"), (2, "ITEM002"), (3, "ITEM003")]
    assert got[0]["updated_at"] == "2018-10-01T01:01:01.123456Z"


def test_decimals_stay_exact(db):
    values = [Decimal("12345678901234.5678"), Decimal("0.1000"), Decimal("-0.0001")]
    db.insert([(f"I{i}", v, T0 + dt.timedelta(seconds=i)) for i, v in enumerate(values)])
    db.run()
    raw = read_topic(db.kafka, db.topic)
    assert b'"price":12345678901234.5678' in raw[0] and b'"price":0.1000' in raw[1]
    assert [p["price"] for p in db.payloads()] == values
    schema = json.loads(raw[0])["schema"]
    price = next(f for f in schema["fields"] if f["field"] == "price")
    assert price["name"] == "org.apache.kafka.connect.data.Decimal" and price["parameters"]["scale"] == "4"


def test_rows_sharing_the_last_timestamp_across_a_batch_boundary(db):
    # timestamp mode, batch of 2, five rows with one timestamp: Kafka Connect reads 2 and loses 3.
    db.insert([(f"I{i}", Decimal(i), T0) for i in range(5)])
    assert db.run(mode="timestamp", batch_max_rows=2)["records"] == 5
    db.insert([("late-same-ts", Decimal(9), T0 + dt.timedelta(microseconds=1))])
    assert db.run(mode="timestamp", batch_max_rows=2)["records"] == 1
    assert sorted(p["item"] for p in db.payloads()) == ["I0", "I1", "I2", "I3", "I4", "late-same-ts"]


def test_microsecond_timestamps_are_compared_exactly(db):
    db.insert([(f"I{i}", Decimal(i), T0 + dt.timedelta(microseconds=i)) for i in range(4)])
    assert db.run(mode="timestamp", batch_max_rows=1)["records"] == 4
    db.insert([("next-microsecond", Decimal(1), T0 + dt.timedelta(microseconds=4))])
    assert db.run(mode="timestamp", batch_max_rows=1)["records"] == 1
    assert len(db.payloads()) == 5


def test_a_transaction_that_commits_late_with_an_older_timestamp(db):
    late_conn = db.connect()
    db.insert([("late", Decimal(1), T0)], conn=late_conn, commit=False)  # open, not committed
    db.insert([("early", Decimal(2), T0 + dt.timedelta(seconds=30))])
    assert db.run(timestamp_lookback_ms=120000)["records"] == 1
    late_conn.commit()
    late_conn.close()
    result = db.run(timestamp_lookback_ms=120000)
    assert result["records"] == 1 and result["tables"][0]["skipped_already_delivered"] == 1
    assert db.run(timestamp_lookback_ms=120000)["records"] == 0
    assert sorted(p["item"] for p in db.payloads()) == ["early", "late"]


def test_the_lookback_window_spans_batches_and_runs(db):
    # Five rows in small batches, all inside a 120 s window, one far older: the next run reads the
    # window again and skips exactly the five (remembered across the batches, not only the last).
    db.insert([("old", Decimal(0), T0 - dt.timedelta(seconds=600))])
    db.insert([(f"w{i}", Decimal(i), T0 + dt.timedelta(seconds=i)) for i in range(5)])
    assert db.run(timestamp_lookback_ms=120000, batch_max_rows=2)["records"] == 6
    result = db.run(timestamp_lookback_ms=120000, batch_max_rows=2)
    assert result["records"] == 0 and result["tables"][0]["skipped_already_delivered"] == 5
    db.insert([("late", Decimal(9), T0 + dt.timedelta(seconds=1))])
    result = db.run(timestamp_lookback_ms=120000, batch_max_rows=2)
    assert result["records"] == 1 and result["tables"][0]["skipped_already_delivered"] == 5
    assert sorted(p["item"] for p in db.payloads()) == ["late", "old", "w0", "w1", "w2", "w3", "w4"]


def test_null_timestamps_are_reported_never_silently_dropped(db, caplog):
    db.insert([("has-ts", Decimal(1), T0), ("no-ts", Decimal(2), None)])
    result = db.run()
    assert result["records"] == 1 and result["null_timestamps"] == 1
    assert any("1 row(s) have a NULL updated_at" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="1 row\\(s\\) have a NULL updated_at"):
        db.run(timestamp_null_handling="fail")
    # A fallback column (COALESCE, as in Kafka Connect) picks the row up.
    db.execute(f"ALTER TABLE {db.table} ADD COLUMN created_at {'TIMESTAMPTZ(6)' if db.kind == 'postgres' else 'DATETIME(6)'} NULL")
    db.execute(f"UPDATE {db.table} SET created_at = %s", (db._param(T0 + dt.timedelta(seconds=5)),))
    fresh = {"store": MemoryStore(), "name": f"jdbc-{db.table}-coalesce"}
    assert db.run(**fresh, timestamp_column_name="updated_at,created_at")["records"] == 2


def test_modes_bulk_and_incrementing(db):
    db.insert([("a", Decimal(1), T0), ("b", Decimal(2), None)])
    assert db.run(mode="incrementing")["records"] == 2
    db.insert([("c", Decimal(3), None)])
    assert db.run(mode="incrementing")["records"] == 1
    bulk = {"store": MemoryStore(), "name": f"jdbc-{db.table}-bulk"}
    assert db.run(**bulk, mode="bulk")["records"] == 3
    assert db.run(**bulk, mode="bulk")["records"] == 3  # a snapshot every run, as in Connect


def test_a_query_instead_of_a_table(db):
    db.insert([("a", Decimal(1), T0), ("b", Decimal(2), T0 + dt.timedelta(seconds=1))])
    cfg = db.definition()
    cfg["config"].pop("table.whitelist")
    cfg["config"]["query"] = f"SELECT id, item, updated_at FROM {db.table} WHERE item <> 'a'"
    result = JdbcSource(validate(cfg), db.store, db.kafka, db.connect).run().as_dict()
    assert result["records"] == 1
    assert [loads(v)["payload"]["item"] for v in read_topic(db.kafka, db.topic_prefix)] == ["b"]


def test_a_database_that_is_down_is_a_transient_error_and_offsets_stay(db):
    db.insert([("a", Decimal(1), T0)])
    db.run()
    before = dict(db.store)
    with pytest.raises(TransientError, match="the database is unreachable"):
        JdbcSource(validate(db.definition()), db.store, db.kafka, _unreachable(db.kind)).run()
    assert dict(db.store) == before


def _unreachable(kind):
    if kind == "postgres":
        import psycopg2

        return lambda: psycopg2.connect("host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2")
    import MySQLdb

    return lambda: MySQLdb.connect(host="127.0.0.1", port=1, user="x", connect_timeout=2)


def test_a_missing_table_or_renamed_column_names_what_is_wrong(db):
    db.insert([("a", Decimal(1), T0)])
    with pytest.raises(Exception, match="column\\(s\\) stamp not found"):
        db.run(timestamp_column_name="stamp")
    cfg = db.definition()
    cfg["config"]["table.whitelist"] = "no_such_table_x"
    with pytest.raises(Exception, match="no_such_table_x"):
        JdbcSource(validate(cfg), MemoryStore(), db.kafka, db.connect).run()


@pytest.mark.parametrize("table", ["sales; DROP TABLE pos_sales", "sales`--", 'sales"--', "x' OR '1'='1"])
def test_sql_injection_through_a_table_name_is_refused_at_validation(table):
    with pytest.raises(ConfigError, match="key 'table.whitelist'"):
        validate({"name": "j", "config": {"connector.class": "JdbcSourceConnector", "db.conn.id": "postgres_ec",
                                          "mode": "bulk", "table.whitelist": table, "topic.prefix": "p."}})


@pytest.mark.parametrize(("extra", "key"), [
    ({"mode": "timestamp"}, "timestamp.column.name"),
    ({"mode": "incrementing"}, "incrementing.column.name"),
    ({"mode": "sometimes"}, "mode"),
    ({"connection.url": "jdbc:postgresql://x/y"}, "connection.url"),
    ({"query": "SELECT 1"}, "query"),
    ({"db.timezone": "Mars/Olympus"}, "db.timezone"),
])
def test_bad_jdbc_definitions_name_the_key(extra, key):
    cfg = {"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
           "mode": "bulk", "table.whitelist": "t", "topic.prefix": "p."}
    cfg.update(extra)
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        validate({"name": "j", "config": cfg})


def test_naive_timestamps_in_a_non_utc_database_zone_become_utc(kafka, unique):
    """POS wall-clock DATETIME in Tokyo: 2018-11-01 08:30 JST is 2018-10-31T23:30Z (October in UTC)."""
    d = Db("mysql", unique, kafka)
    try:
        d.execute(f"INSERT INTO {d.table} (item, price, updated_at) VALUES ('x', 1, '2018-11-01 08:30:00.000001')")
        d.run(db_timezone="Asia/Tokyo")
        assert d.payloads()[0]["updated_at"] == "2018-10-31T23:30:00.000001Z"
        d.execute(f"INSERT INTO {d.table} (item, price, updated_at) VALUES ('y', 2, '2018-11-01 09:00:00')")
        assert d.run(db_timezone="Asia/Tokyo")["records"] == 1
    finally:
        d.close()


def test_timestamptz_with_the_server_in_another_zone_is_exported_in_utc(kafka, unique):
    d = Db("postgres", unique, kafka)
    try:
        d.execute("SET TIME ZONE 'America/Los_Angeles'")
        d.execute(f"INSERT INTO {d.table} (item, price, updated_at) VALUES ('x', 1, '2018-10-31 16:30:00-07')")
        d.run()
        assert d.payloads()[0]["updated_at"] == "2018-10-31T23:30:00.000000Z"
    finally:
        d.close()


def test_wrong_credentials_are_a_permanent_error_that_says_so(db):
    gen = generator()
    if db.kind == "postgres":
        import psycopg2

        wrong = lambda: psycopg2.connect(gen.default_pg_dsn().replace("airconnect@", "airconnect-x@")  # noqa: E731
                                         if "@" in gen.default_pg_dsn() else gen.default_pg_dsn() + " user=nobody_x")
    else:
        import MySQLdb

        wrong = lambda: MySQLdb.connect(host="127.0.0.1", port=int(os.environ.get("AIRCONNECT_MARIADB_PORT", "3306")),  # noqa: E731
                                        user="airconnect", password="wrong-password", database="pos")
    with pytest.raises(PermanentError, match=r"connecting to the database of the Airflow Connection '(postgres_ec|mysql_pos)'"
                                             r".*(authentication failed|Access denied).*check the login and password"):
        JdbcSource(validate(db.definition()), db.store, db.kafka, wrong).run()
    assert dict(db.store) == {}
