"""JDBC source against real PostgreSQL and MariaDB: the cases where Kafka Connect loses rows."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import pytest

from airconnect.connectors.jdbc.source import JdbcSource
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.jsonexact import loads
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
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


def test_a_value_without_a_json_form_names_its_row_and_delivers_nothing_of_its_batch(db):
    """NaN in a DECIMAL column has no JSON number: the run stops with the connector, the table, the
    row's key and the value; nothing of its batch is delivered; once the row is fixed, the next
    run delivers every row once. (PostgreSQL's COPY path leaves the row to the general writer.)"""
    if db.kind != "postgres":
        pytest.skip("NaN is PostgreSQL's: MariaDB's DECIMAL has none")
    db.insert([("ITEM001", Decimal("1.50"), T0), ("ITEM002", Decimal("2.50"), T0 + dt.timedelta(seconds=1))])
    db.execute(f"UPDATE {db.table} SET price = 'NaN' WHERE item = 'ITEM002'")
    with pytest.raises(DataError, match=rf"connector 'jdbc-{db.table}' \({db.table}\): row 2: the DECIMAL value NaN"):
        db.run()
    assert db.payloads() == []
    db.execute(f"UPDATE {db.table} SET price = 2.5 WHERE item = 'ITEM002'")
    assert db.run()["records"] == 2
    assert [(p["item"], p["price"]) for p in db.payloads()] == [("ITEM001", Decimal("1.5000")), ("ITEM002", Decimal("2.5000"))]


def test_a_zero_date_in_a_not_null_column_names_its_row_and_delivers_nothing_of_its_batch(db):
    """MariaDB stores 0000-00-00 in a NOT NULL DATE (its default sql_mode allows it) and the driver
    reads it as None: a required field cannot be null, so the run stops naming the row and the
    column, as for NaN; once the row is fixed, the next run delivers every row once."""
    if db.kind != "mysql":
        pytest.skip("zero dates are MariaDB's")
    db.execute(f"ALTER TABLE {db.table} ADD COLUMN sold_on DATE NOT NULL DEFAULT '2018-10-01'")
    db.insert([("ITEM001", Decimal("1.50"), T0), ("ITEM002", Decimal("2.50"), T0 + dt.timedelta(seconds=1))])
    db.execute(f"UPDATE {db.table} SET sold_on = '0000-00-00' WHERE item = 'ITEM002'")
    with pytest.raises(DataError, match=rf"connector 'jdbc-{db.table}' \({db.table}\): row 2: column 'sold_on' is NOT NULL"):
        db.run()
    assert db.payloads() == []
    db.execute(f"UPDATE {db.table} SET sold_on = '2018-10-02' WHERE item = 'ITEM002'")
    assert db.run()["records"] == 2
    assert [(p["item"], p["sold_on"]) for p in db.payloads()] == [("ITEM001", "2018-10-01"), ("ITEM002", "2018-10-02")]


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


# ------------------------------------------------------------------ reconciliation: rows the polling cannot see

TEA = dt.datetime(2021, 3, 5, 9, 0, 0, 250000, tzinfo=UTC)


def _offset_doc(store, name):
    return json.loads(store[f"airconnect.offsets.{name}"])


def test_a_late_row_beyond_the_lookback_stops_the_run_loudly_or_is_reported(db, caplog):
    # Nine rows a minute apart, exported with a 60 s lookback.
    db.insert([(f"matcha-{i}", Decimal(f"{i}.25"), TEA + dt.timedelta(minutes=i)) for i in range(9)])
    assert db.run(timestamp_lookback_ms=60000)["records"] == 9
    # A transaction that began long ago commits now: its row is stamped three minutes before the
    # offset, far outside the lookback. The polling query cannot see it; the count can.
    db.insert([("hojicha-late", Decimal("7.77"), TEA + dt.timedelta(minutes=8) - dt.timedelta(minutes=3))])
    for _ in range(2):  # every run says so, until a person decides
        with pytest.raises(PermanentError) as err:
            db.run(timestamp_lookback_ms=60000)
        msg = str(err.value)
        assert f"connector 'jdbc-{db.table}'" in msg and f"table {db.table}" in msg
        assert "timestamp.lookback.ms" in msg and "reconcile.on.mismatch" in msg
        # 9:07 is the offset (9:08) minus the lookback: 9 rows at or before it, 8 delivered.
        assert "9 row(s) are at or below updated_at 2021-03-05T09:07:00.250000Z" in msg and "but 8 were delivered" in msg
    assert len(db.payloads()) == 9
    # A user who accepts the loss runs on: a WARNING and the difference in the run's result, once.
    caplog.clear()
    result = db.run(timestamp_lookback_ms=60000, reconcile_on_mismatch="warn")
    assert result["records"] == 0 and result["tables"][0]["unaccounted_rows"] == 1
    assert any(r.levelname == "WARNING" and "1 row(s)" in r.getMessage() and db.table in r.getMessage()
               for r in caplog.records)
    db.insert([("sencha", Decimal("1.50"), TEA + dt.timedelta(minutes=20))])
    result = db.run(timestamp_lookback_ms=60000)  # accepted: the default (fail) runs on
    assert result["records"] == 1 and result["tables"][0]["unaccounted_rows"] == 0
    assert len(db.payloads()) == 10


def test_a_late_row_inside_the_lookback_is_delivered_and_counted(db):
    db.insert([(f"genmai-{i}", Decimal(i), TEA + dt.timedelta(seconds=10 * i)) for i in range(4)])
    assert db.run(timestamp_lookback_ms=60000)["records"] == 4
    db.insert([("genmai-late", Decimal(9), TEA + dt.timedelta(seconds=5))])  # 25 s before the offset
    result = db.run(timestamp_lookback_ms=60000)
    assert result["records"] == 1 and result["tables"][0]["unaccounted_rows"] == 0
    assert result["tables"][0]["offset"]["delivered_at_or_below"] == 5
    assert db.run(timestamp_lookback_ms=60000)["records"] == 0


def test_identical_rows_of_a_table_without_a_key_are_counted_as_rows(db):
    # No key and no id: two identical rows are one (timestamp, row) pair in the lookback window;
    # the count must still see two rows once the window has passed them (no false alarm).
    ts_type = "TIMESTAMPTZ(6)" if db.kind == "postgres" else "DATETIME(6)"
    keyless = f"{db.table}_nokey"
    db.execute(f"CREATE TABLE {keyless} (item VARCHAR(32) NOT NULL, updated_at {ts_type} NOT NULL)")
    try:
        for item, when in (("shincha", TEA), ("shincha", TEA)):
            db.execute(f"INSERT INTO {keyless} VALUES (%s, %s)", (item, db._param(when)))
        run = {"mode": "timestamp", "table_whitelist": keyless, "timestamp_lookback_ms": 60000}
        assert db.run(**run)["records"] == 2
        assert db.run(**run)["records"] == 0
        db.execute(f"INSERT INTO {keyless} VALUES ('ichibancha', %s)", (db._param(TEA + dt.timedelta(minutes=10)),))
        assert db.run(**run)["records"] == 1
        result = db.run(**run)  # the two identical rows are now below the window: counted, both delivered
        assert result["records"] == 0 and result["tables"][0]["unaccounted_rows"] == 0
        assert result["tables"][0]["offset"]["delivered_at_or_below"] == 3
    finally:
        db.execute(f"DROP TABLE {keyless}")


def test_a_late_row_with_the_offsets_timestamp_and_a_lower_id_is_noticed(db):
    # timestamp+incrementing without a lookback: a row at the offset's timestamp with a higher id
    # is read as usual; one with a lower id (committed late) cannot be, and is noticed.
    def insert(row_id, item):
        db.execute(f"INSERT INTO {db.table} (id, item, price, updated_at) VALUES (%s, %s, 1, %s)",
                   (row_id, item, db._param(TEA)))

    insert(10, "kabuse-10")
    insert(11, "kabuse-11")
    assert db.run()["records"] == 2
    insert(12, "kabuse-12")
    assert db.run()["records"] == 1
    insert(5, "kabuse-late")
    with pytest.raises(PermanentError, match=r"4 row\(s\).*3 were delivered"):
        db.run()


def test_deletes_and_moved_rows_are_reported_not_failed(db):
    db.insert([(f"bancha-{i}", Decimal(i), TEA + dt.timedelta(seconds=i)) for i in range(5)])
    assert db.run(batch_max_rows=2)["records"] == 5
    db.execute(f"DELETE FROM {db.table} WHERE item = 'bancha-0'")
    db.execute(f"UPDATE {db.table} SET updated_at = %s WHERE item = 'bancha-1'",
               (db._param(TEA + dt.timedelta(hours=1)),))
    result = db.run()
    table = result["tables"][0]
    assert result["records"] == 1 and table["deleted_or_moved_rows"] == 2 and table["unaccounted_rows"] == 0
    assert table["offset"]["delivered_at_or_below"] == 4
    # The count follows the table: a later late row is still noticed.
    db.execute(f"INSERT INTO {db.table} (id, item, price, updated_at) VALUES (100, 'bancha-late', 1, %s)",
               (db._param(TEA),))
    with pytest.raises(PermanentError, match=r"5 row\(s\).*4 were delivered"):
        db.run()


def test_incrementing_mode_notices_an_id_committed_below_the_offset(db):
    for i in (1, 2, 3, 5):
        db.execute(f"INSERT INTO {db.table} (id, item, price) VALUES (%s, %s, 1)", (i, f"kukicha-{i}"))
    assert db.run(mode="incrementing")["records"] == 4
    db.execute(f"INSERT INTO {db.table} (id, item, price) VALUES (4, 'kukicha-late', 1)")
    with pytest.raises(PermanentError, match=r"incrementing.*5 row\(s\).*4 were delivered") as err:
        db.run(mode="incrementing")
    assert f"connector 'jdbc-{db.table}'" in str(err.value)


def test_query_mode_reconciles_through_the_query(db):
    for i in (1, 2, 4):
        db.execute(f"INSERT INTO {db.table} (id, item, price) VALUES (%s, %s, 1)", (i, f"mugi-{i}"))
    cfg = db.definition(mode="incrementing")
    cfg["config"].pop("table.whitelist")
    cfg["config"]["query"] = f"SELECT id, item FROM {db.table}"
    assert JdbcSource(validate(cfg), db.store, db.kafka, db.connect).run().records == 3
    db.execute(f"INSERT INTO {db.table} (id, item, price) VALUES (3, 'mugi-late', 1)")
    with pytest.raises(PermanentError, match=r"query.*4 row\(s\).*3 were delivered"):
        JdbcSource(validate(cfg), db.store, db.kafka, db.connect).run()


def test_an_offset_saved_before_the_count_existed_still_loads(db, caplog):
    db.insert([(f"gyokuro-{i}", Decimal(i), TEA + dt.timedelta(minutes=i)) for i in range(3)])
    db.run()
    name = f"jdbc-{db.table}"
    doc = _offset_doc(db.store, name)
    assert doc["offsets"][0]["offset"]["delivered_at_or_below"] == 3
    del doc["offsets"][0]["offset"]["delivered_at_or_below"]
    db.store[f"airconnect.offsets.{name}"] = json.dumps(doc)
    caplog.set_level("INFO")
    assert db.run()["records"] == 0
    assert any(r.levelname == "INFO" and "takes the table's count, 3" in r.getMessage() for r in caplog.records)
    assert _offset_doc(db.store, name)["offsets"][0]["offset"]["delivered_at_or_below"] == 3


def test_reconcile_on_mismatch_takes_fail_or_warn():
    cfg = {"connector.class": "JdbcSourceConnector", "db.conn.id": "postgres_ec", "mode": "incrementing",
           "incrementing.column.name": "id", "table.whitelist": "t", "topic.prefix": "p.",
           "reconcile.on.mismatch": "ignore"}
    with pytest.raises(ConfigError, match="key 'reconcile.on.mismatch': expected one of 'fail', 'warn'"):
        validate({"name": "j", "config": cfg})


# ------------------------------------------------------------------ table names that are legal but not ASCII words

def _quoted(kind, name):
    """The test's own quoting (not the connector's), to create the tables."""
    q = '"' if kind == "postgres" else "`"
    return q + name.replace(q, q + q) + q


@pytest.mark.parametrize("names", [["売上", "sales$2018", "Sales Table"], ['we"ird', "back`tick"]],
                         ids=["retail", "quotes"])
def test_tables_with_any_legal_name_are_read_onto_sanitised_topics(db, names):
    tables = [f"{n}_{db.table[-10:]}" for n in names]
    ts_type = "TIMESTAMPTZ(6)" if db.kind == "postgres" else "DATETIME(6)"
    try:
        for i, t in enumerate(tables):
            db.execute(f"CREATE TABLE {_quoted(db.kind, t)} (id INT PRIMARY KEY, item VARCHAR(32) NOT NULL, "
                       f"updated_at {ts_type} NOT NULL)")
            db.execute(f"INSERT INTO {_quoted(db.kind, t)} (id, item, updated_at) VALUES (1, %s, %s), (2, %s, %s)",
                       (f"煎茶-{i}", db._param(TEA), f"玄米茶-{i}", db._param(TEA + dt.timedelta(seconds=1))))
        result = db.run(table_whitelist=", ".join(tables))
        assert result["records"] == 2 * len(tables)
        for i, t in enumerate(tables):
            topic = db.topic_prefix + "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in t)
            values = [json.loads(v) for v in read_topic(db.kafka, topic)]
            assert [v["payload"]["item"] for v in values] == [f"煎茶-{i}", f"玄米茶-{i}"], topic
            assert values[0]["schema"]["name"] == t  # the record keeps the table's real name
        partitions = [o["partition"] for o in _offset_doc(db.store, f"jdbc-{db.table}")["offsets"]]
        assert sorted(p["table"] for p in partitions) == sorted(tables)
        assert db.run(table_whitelist=", ".join(tables))["records"] == 0
    finally:
        for t in tables:
            db.execute(f"DROP TABLE IF EXISTS {_quoted(db.kind, t)}")


@pytest.mark.parametrize("tables", ["sales$2018, sales_2018", "売上, 在庫", "pos.sales, pos_sales"])
def test_two_tables_whose_topics_would_collide_are_refused(tables):
    with pytest.raises(ConfigError, match=r"connector 'j', key 'table.whitelist': .*same topic|collide"):
        validate({"name": "j", "config": {"connector.class": "JdbcSourceConnector", "db.conn.id": "postgres_ec",
                                          "mode": "bulk", "table.whitelist": tables, "topic.prefix": "p."}})


@pytest.mark.parametrize(("key", "value"), [("table.whitelist", "sales,\x00x"), ("table.whitelist", " , "),
                                            ("table.whitelist", "pos..sales"), ("key.columns", "id\x00"),
                                            ("incrementing.column.name", "id\x00"),
                                            ("timestamp.column.name", "updated_at,\x00")])
def test_what_cannot_be_a_name_is_refused_at_validation(key, value):
    cfg = {"connector.class": "JdbcSourceConnector", "db.conn.id": "postgres_ec", "mode": "timestamp+incrementing",
           "table.whitelist": "t", "topic.prefix": "p.", "incrementing.column.name": "id",
           "timestamp.column.name": "updated_at", key: value}
    with pytest.raises(ConfigError, match=f"connector 'j', key '{key}'"):
        validate({"name": "j", "config": cfg})


def test_identifiers_are_quoted_by_each_dialects_rules():
    import psycopg2
    from psycopg2 import sql

    from airconnect.connectors.jdbc.dialect import DIALECTS

    conn = psycopg2.connect(generator().default_pg_dsn())
    try:
        for name in ['a"; DROP TABLE x; --', "売上", "Sales Table", 'q""q', "sales$2018"]:
            assert DIALECTS["postgres"].quote(name) == sql.Identifier(name).as_string(conn)
        assert DIALECTS["postgres"].quote('pos.we"ird', dotted=True) == sql.Identifier("pos", 'we"ird').as_string(conn)
    finally:
        conn.close()
    assert DIALECTS["mysql"].quote("a`; DROP TABLE x; --") == "`a``; DROP TABLE x; --`"
    assert DIALECTS["mysql"].quote("pos.Sales Table", dotted=True) == "`pos`.`Sales Table`"
    assert DIALECTS["mysql"].quote("price.usd") == "`price.usd`"  # a column: the dot is part of its name


# ------------------------------------------------------------------ errors about configured columns name the key

@pytest.mark.parametrize(("extra", "key", "missing"), [
    ({"incrementing_column_name": "no_such_id"}, "incrementing.column.name", "no_such_id"),
    ({"timestamp_column_name": "updated_at,no_such_ts"}, "timestamp.column.name", "no_such_ts"),
    ({"key_columns": "id,no_such_key"}, "key.columns", "no_such_key"),
    ({"table_whitelist": "no_such_table_y"}, "table.whitelist", "no_such_table_y"),
    ({"timestamp_column_name": "item"}, "timestamp.column.name", "item"),
    ({"incrementing_column_name": "item"}, "incrementing.column.name", "item"),
])
def test_a_misconfigured_column_or_table_names_the_connector_and_key(db, extra, key, missing):
    db.insert([("oolong", Decimal("2.00"), TEA)])
    with pytest.raises(ConfigError, match=f"^connector 'jdbc-{db.table}', key '{key}': .*{missing}"):
        db.run(**extra)
    assert dict(db.store) == {}
