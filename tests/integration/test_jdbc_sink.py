"""JDBC sink against real PostgreSQL and MariaDB: modes, keys, DDL, names, exact values, dead letters."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import event, given, settings
from hypothesis import strategies as st

from airconnect.core.data import (
    BYTES_SCHEMA,
    DATE_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    TIMESTAMP_SCHEMA,
    Struct,
    decimal_schema,
    from_connect,
    struct_schema,
)
from airconnect.core.errors import ConfigError, DataError
from airconnect.core.kafka_client import Admin
from airconnect.core.offsets import MemoryStore, Offsets
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import generator, read_topic

UTC = dt.timezone.utc
SINK = "io.confluent.connect.jdbc.JdbcSinkConnector"


class Db:
    """The sink's target database: a connection factory, queries, and the tables to drop at the end."""

    def __init__(self, kind: str, kafka: dict[str, Any]):
        self.kind, self.kafka = kind, kafka
        gen = generator()
        self.connect = gen.connect_pg if kind == "postgres" else gen.connect_mysql
        self.conn = gen.connect_pg() if kind == "postgres" else gen.connect_mysql()
        self.tables: list[str] = []
        self.store = MemoryStore()

    def q(self, name: str) -> str:
        c = '"' if self.kind == "postgres" else "`"
        return c + name.replace(c, c + c) + c

    def execute(self, sql: str, params: Any = None) -> None:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        cur.close()
        self.conn.commit()

    def rows(self, table: str, order: str = "1") -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(f"SELECT * FROM {self.q(table)} ORDER BY {order}")
        rows = [tuple(r) for r in cur.fetchall()]
        cur.close()
        self.conn.commit()
        return rows

    def columns(self, table: str) -> list[str]:
        cur = self.conn.cursor()
        cur.execute(f"SELECT * FROM {self.q(table)} WHERE 1 = 0")
        names = [d[0] for d in cur.description]
        cur.close()
        self.conn.commit()
        return names

    def table(self, name: str) -> str:
        self.tables.append(name)
        return name

    def run(self, name: str, topics: str, store: MemoryStore | None = None, **config: Any) -> dict[str, Any]:
        definition = {"name": name, "config": {"connector.class": SINK, "topics": topics, "db.conn.id": "unused",
                                               **{k.replace("_", "."): str(v) for k, v in config.items()}}}
        return run(definition, self.store if store is None else store, self.kafka, connect=self.connect)

    def close(self) -> None:
        for t in self.tables:
            self.execute(f"DROP TABLE IF EXISTS {self.q(t)}")
        self.execute("DELETE FROM airconnect_sink_offsets WHERE connector LIKE %s", ("sink-test-%",))
        self.conn.close()


@pytest.fixture(params=["postgres", "mysql"])
def db(request, kafka):
    d = Db(request.param, kafka)
    yield d
    d.close()


@pytest.fixture
def pg(kafka):
    d = Db("postgres", kafka)
    yield d
    d.close()


def make_topic(kafka: dict[str, Any], topic: str, partitions: int = 1) -> str:
    Admin(kafka).ensure_topic(topic, partitions=partitions)
    return topic


def produce(kafka: dict[str, Any], topic: str, records: list[tuple[bytes | None, bytes | None]], partition: int = 0) -> None:
    p = Producer(kafka)
    for key, value in records:
        p.produce(topic, value, key, partition=partition)
    assert p.flush(30) == 0


# A struct like the JDBC source's records: NUMERIC decimals, io.airconnect.Timestamp text.
SALE_SCHEMA = ('{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"},'
               '{"type":"string","optional":false,"field":"item"},'
               '{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,'
               '"parameters":{"scale":"4","connect.decimal.precision":"20"},"field":"price"},'
               '{"type":"string","optional":true,"name":"io.airconnect.Timestamp","version":1,"field":"updated_at"}],'
               '"optional":false,"name":"sales"}')


def sale(i: int, item: str, price: str, ts: str | None) -> bytes:
    stamp = "null" if ts is None else json.dumps(ts)
    return (f'{{"schema":{SALE_SCHEMA},"payload":{{"id":{i},"item":{json.dumps(item, ensure_ascii=False)},'
            f'"price":{price},"updated_at":{stamp}}}}}').encode()


STOCK = struct_schema([("item", STRING_SCHEMA), ("shop", STRING_SCHEMA), ("stock", INT32_SCHEMA)], name="stock")


def stock(item: str, shop: str, n: int) -> bytes:
    return from_connect(STOCK, Struct(STOCK, {"item": item, "shop": shop, "stock": n})) or b""


def naive_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


# ---------------------------------------------------------------------------- writing


@pytest.mark.parametrize("driver", ["", "psycopg3"])  # psycopg 3: what Airflow's PostgresHook hands out
def test_insert_creates_the_table_and_keeps_decimals_and_timestamps_exact(db, unique, driver):
    if driver and db.kind != "postgres":
        pytest.skip("psycopg 3 is PostgreSQL's")
    if driver:
        import psycopg

        db.connect = lambda: psycopg.connect(generator().default_pg_dsn())
    topic = make_topic(db.kafka, db.table(f"sink-sales-{unique}"))
    rows = [(1, "ITEM001", "12345678901234.5678", "2018-10-01T01:01:01.123456Z"),
            (2, "売上の品", "0.1000", "2018-10-31T23:59:59.999999Z"), (3, "ITEM003", "-0.0001", None)]
    produce(db.kafka, topic, [(None, sale(*r)) for r in rows])
    name = f"sink-test-{unique}"
    out = db.run(name, topic, auto_create="true")
    assert (out["records"], out["written"], out["tables_created"]) == (3, 3, [topic])
    got = db.rows(topic)
    assert [(r[0], r[1], r[2], naive_utc(r[3])) for r in got] == [
        (1, "ITEM001", Decimal("12345678901234.5678"), dt.datetime(2018, 10, 1, 1, 1, 1, 123456)),
        (2, "売上の品", Decimal("0.1000"), dt.datetime(2018, 10, 31, 23, 59, 59, 999999)),
        (3, "ITEM003", Decimal("-0.0001"), None)]
    # Connect's own logical types (base64 Decimal, Date, Timestamp in epoch ms) into a second table.
    schema = struct_schema([("id", INT64_SCHEMA), ("amount", decimal_schema(2)), ("day", DATE_SCHEMA),
                            ("at", TIMESTAMP_SCHEMA), ("text", STRING_SCHEMA), ("blob", BYTES_SCHEMA)])
    value = Struct(schema, {"id": 7, "amount": Decimal("-1234567.89"), "day": dt.date(2018, 10, 31),
                            "at": dt.datetime(2018, 10, 31, 12, 0, 0, 5000, tzinfo=UTC),
                            "text": "tab\there, back\\slash,\nnew line \\N", "blob": b"\x00\x01\\\xff"})
    other = make_topic(db.kafka, db.table(f"sink-logical-{unique}"))
    produce(db.kafka, other, [(None, from_connect(schema, value))])
    db.run(f"{name}-2", other, auto_create="true")
    (row,) = db.rows(other)
    assert (row[0], row[1], row[2], naive_utc(row[3]), row[4], bytes(row[5])) == (
        7, Decimal("-1234567.89"), dt.date(2018, 10, 31), dt.datetime(2018, 10, 31, 12, 0, 0, 5000),
        "tab\there, back\\slash,\nnew line \\N", b"\x00\x01\\\xff")
    # Nothing new: nothing written; the offsets are in the database, the Variable and the group.
    assert db.run(name, topic)["records"] == 0
    assert db.rows(topic, "1") == got
    cur = db.conn.cursor()
    cur.execute("SELECT topic, kafka_partition, next_offset FROM airconnect_sink_offsets WHERE connector = %s", (name,))
    assert [tuple(r) for r in cur.fetchall()] == [(topic, 0, 3)]
    db.conn.commit()
    assert Offsets(db.store, name).get({"kafka_topic": topic, "kafka_partition": 0}) == {"kafka_offset": 3}
    c = Consumer({**db.kafka, "group.id": f"connect-{name}"})
    assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3
    c.close()


def test_timestamps_are_written_as_wall_time_in_db_timezone(db, unique):
    topic = make_topic(db.kafka, db.table(f"sink-tz-{unique}"))
    produce(db.kafka, topic, [(None, sale(1, "ITEM001", "1.00", "2018-10-01T01:01:01.500000Z")),
                              (None, sale(2, "ITEM002", "2.00", "2018-10-01T12:00:00+02:00"))])
    db.run(f"sink-test-{unique}", topic, auto_create="true", db_timezone="Asia/Tokyo")
    assert [r[3] for r in db.rows(topic)] == [  # TIMESTAMP / DATETIME: Tokyo's wall time
        dt.datetime(2018, 10, 1, 10, 1, 1, 500000), dt.datetime(2018, 10, 1, 19, 0, 0)]


def test_upsert_by_value_fields_keeps_the_last_version(db, unique):
    """Flow 3's inventory view: pk.mode record_value, pk.fields item,shop."""
    topic = make_topic(db.kafka, db.table(f"sink-stock-{unique}"))
    produce(db.kafka, topic, [(None, stock("ITEM001", "SHOP001", 5)), (None, stock("ITEM002", "SHOP001", 7)),
                              (None, stock("ITEM001", "SHOP001", 4))])  # the same key twice in one batch
    name = f"sink-test-{unique}"
    cfg = {"insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": "item,shop", "auto_create": "true"}
    assert db.run(name, topic, **cfg)["written"] == 3
    assert db.rows(topic, "1, 2") == [("ITEM001", "SHOP001", 4), ("ITEM002", "SHOP001", 7)]
    produce(db.kafka, topic, [(None, stock("ITEM002", "SHOP001", 0)), (None, stock("ITEM003", "SHOP002", 1))])
    db.run(name, topic, **cfg)
    assert db.rows(topic, "1, 2") == [("ITEM001", "SHOP001", 4), ("ITEM002", "SHOP001", 0), ("ITEM003", "SHOP002", 1)]


def test_record_key_upsert_update_and_delete_on_tombstone(db, unique):
    topic = make_topic(db.kafka, db.table(f"sink-keyed-{unique}"))
    key_schema = struct_schema([("item", STRING_SCHEMA)])
    value_schema = struct_schema([("item", STRING_SCHEMA), ("note", OPTIONAL_STRING_SCHEMA)])

    def key(item: str) -> bytes:
        return from_connect(key_schema, Struct(key_schema, {"item": item})) or b""

    def value(item: str, note: str) -> bytes:
        return from_connect(value_schema, Struct(value_schema, {"item": item, "note": note})) or b""

    produce(db.kafka, topic, [(key("A"), value("A", "one")), (key("B"), value("B", "two")),
                              (key("C"), value("C", "three")), (key("A"), value("A", "uno"))])
    name = f"sink-test-{unique}"
    cfg = {"insert_mode": "upsert", "pk_mode": "record_key", "auto_create": "true", "delete_enabled": "true"}
    db.run(name, topic, **cfg)
    assert db.rows(topic) == [("A", "uno"), ("B", "two"), ("C", "three")]
    assert db.columns(topic)[0] == "item"
    produce(db.kafka, topic, [(key("B"), None), (key("D"), value("D", "four")), (key("Z"), None)])  # tombstones
    out = db.run(name, topic, **cfg)
    assert (out["deleted"], out["written"]) == (2, 1)
    assert db.rows(topic) == [("A", "uno"), ("C", "three"), ("D", "four")]
    # update mode changes existing rows only; a key with no row changes nothing.
    produce(db.kafka, topic, [(key("C"), value("C", "drei")), (key("Q"), value("Q", "none"))])
    db.run(name, topic, insert_mode="update", pk_mode="record_key")
    assert db.rows(topic) == [("A", "uno"), ("C", "drei"), ("D", "four")]


def test_pk_mode_kafka_and_primitive_keys(pg, unique):
    topic = make_topic(pg.kafka, pg.table(f"sink-kafka-{unique}"))
    produce(pg.kafka, topic, [(None, stock("ITEM001", "SHOP001", 5)), (None, stock("ITEM001", "SHOP001", 5))])
    pg.run(f"sink-test-{unique}", topic, pk_mode="kafka", auto_create="true")
    assert pg.rows(topic, "3") == [(topic, 0, 0, "ITEM001", "SHOP001", 5), (topic, 0, 1, "ITEM001", "SHOP001", 5)]
    assert pg.columns(topic)[:3] == ["__connect_topic", "__connect_partition", "__connect_offset"]
    # A primitive (string) key: pk.fields names its one column.
    other = make_topic(pg.kafka, pg.table(f"sink-prim-{unique}"))
    key = from_connect(STRING_SCHEMA, "K1")
    produce(pg.kafka, other, [(key, stock("ITEM009", "SHOP009", 9))])
    pg.run(f"sink-test-{unique}-p", other, pk_mode="record_key", pk_fields="code", insert_mode="upsert",
           auto_create="true")
    assert pg.rows(other) == [("K1", "ITEM009", "SHOP009", 9)]
    # A pk.fields name the record does not have stops the run, naming the key.
    third = make_topic(pg.kafka, pg.table(f"sink-nokey-{unique}"))
    produce(pg.kafka, third, [(None, stock("ITEM001", "SHOP001", 1))])
    with pytest.raises(DataError, match=r"key 'pk.fields'.*no field 'sku'"):
        pg.run(f"sink-test-{unique}-n", third, pk_mode="record_value", pk_fields="sku", auto_create="true",
               errors_tolerance="all")


def test_auto_evolve_adds_an_optional_column(db, unique):
    topic = make_topic(db.kafka, db.table(f"sink-evolve-{unique}"))
    produce(db.kafka, topic, [(None, stock("ITEM001", "SHOP001", 5))])
    name = f"sink-test-{unique}"
    db.run(name, topic, auto_create="true", auto_evolve="true")
    v2 = struct_schema([("item", STRING_SCHEMA), ("shop", STRING_SCHEMA), ("stock", INT32_SCHEMA),
                        ("note", OPTIONAL_STRING_SCHEMA)])
    produce(db.kafka, topic, [(None, from_connect(v2, Struct(v2, {"item": "ITEM002", "shop": "SHOP001", "stock": 1,
                                                                  "note": "new"})))])
    out = db.run(name, topic, auto_evolve="true")
    assert out["columns_added"] == [f"{topic}.note"]
    assert db.rows(topic) == [("ITEM001", "SHOP001", 5, None), ("ITEM002", "SHOP001", 1, "new")]
    # Without auto.evolve a field the table lacks stops the run (nothing after it written), naming the key.
    v3 = struct_schema([("item", STRING_SCHEMA), ("shop", STRING_SCHEMA), ("stock", INT32_SCHEMA),
                        ("colour", OPTIONAL_STRING_SCHEMA)])
    produce(db.kafka, topic, [(None, from_connect(v3, Struct(v3, {"item": "ITEM003", "shop": "S", "stock": 2})))])
    with pytest.raises(DataError, match=r"key 'auto.evolve'.*'colour'.*offset stays at 2"):
        db.run(name, topic)
    # A required field is not added even with auto.evolve (Confluent's rule).
    v4 = struct_schema([("item", STRING_SCHEMA), ("size", INT32_SCHEMA)])
    other = make_topic(db.kafka, f"sink-evolve-{unique}-b")
    produce(db.kafka, other, [(None, from_connect(v4, Struct(v4, {"item": "I", "size": 1})))])
    with pytest.raises(DataError, match=r"adds only optional fields"):
        db.run(f"{name}-b", other, auto_evolve="true", table_name_format=topic)
    assert len(db.rows(topic)) == 2


def test_odd_table_names_are_quoted(db, unique):
    topic = make_topic(db.kafka, f"sink-odd-{unique}")
    produce(db.kafka, topic, [(None, stock("ITEM001", "SHOP001", 5))])
    for i, fmt in enumerate([f"売上_{unique}", f"Sales Table {unique}", f"a`b\"c%d_{unique}"]):
        db.table(fmt)
        db.run(f"sink-test-{unique}-{i}", topic, table_name_format=fmt, auto_create="true")
        assert db.rows(fmt) == [("ITEM001", "SHOP001", 5)]
    prefixed = db.table(f"kafka_{topic}")
    db.run(f"sink-test-{unique}-x", topic, table_name_format="kafka_${topic}", auto_create="true")
    assert db.rows(prefixed) == [("ITEM001", "SHOP001", 5)]
    # A name the database would cut (PostgreSQL: 63 bytes) or refuse (MariaDB: 64 characters) is refused first.
    with pytest.raises(DataError, match=r"key 'table.name.format'.*at most 6[34]"):
        db.run(f"sink-test-{unique}-long", topic, table_name_format="t" * 70, auto_create="true")


def test_a_value_that_does_not_fit_goes_to_the_dead_letters_or_stops_the_run(db, unique):
    topic = make_topic(db.kafka, f"sink-dlq-{unique}")
    table = db.table(f"sink-dlq-{unique}")
    db.execute(f"CREATE TABLE {db.q(table)} (item VARCHAR(8) NOT NULL, shop VARCHAR(8) NOT NULL, stock SMALLINT)")
    values = [stock("ITEM001", "SHOP001", 1), stock("ITEM-TOO-LONG", "SHOP001", 2), stock("ITEM003", "SHOP001", 70000),
              stock("ITEM004", "SHOP001", 4)]
    produce(db.kafka, topic, [(None, v) for v in values])
    out = db.run(f"sink-test-{unique}", topic, errors_tolerance="all", batch_size="10")
    assert (out["written"], out["dead_letters"]) == (2, 2)
    assert db.rows(topic) == [("ITEM001", "SHOP001", 1), ("ITEM004", "SHOP001", 4)]
    assert read_topic(db.kafka, f"{topic}.dlq") == [values[1], values[2]]
    # errors.tolerance=none: the rows before the bad record are committed, the offset stays at it.
    store = MemoryStore()
    db.execute(f"DELETE FROM {db.q(table)}")
    with pytest.raises(DataError, match=rf"connector 'sink-test-{unique}-n'.*{topic}\[0\]@1.*refused"):
        db.run(f"sink-test-{unique}-n", topic, store=store)
    assert db.rows(topic) == [("ITEM001", "SHOP001", 1)]
    assert Offsets(store, f"sink-test-{unique}-n").get({"kafka_topic": topic, "kafka_partition": 0}) == {"kafka_offset": 1}


def test_schemaless_values_are_refused(pg, unique):
    topic = make_topic(pg.kafka, f"sink-schemaless-{unique}")
    produce(pg.kafka, topic, [(None, b'{"item":"ITEM001","stock":5}')])
    with pytest.raises(DataError, match=rf"connector 'sink-test-{unique}', key 'value.converter'.*schema"):
        pg.run(f"sink-test-{unique}", topic, auto_create="true")


def test_topics_regex_reads_every_matching_topic(pg, unique):
    a = make_topic(pg.kafka, pg.table(f"sink-rx-{unique}-a"))
    b = make_topic(pg.kafka, pg.table(f"sink-rx-{unique}-b"))
    make_topic(pg.kafka, f"sink-other-{unique}")
    produce(pg.kafka, a, [(None, stock("ITEM001", "SHOP001", 1))])
    produce(pg.kafka, b, [(None, stock("ITEM002", "SHOP002", 2))])
    out = pg.run(f"sink-test-{unique}", "", topics_regex=f"sink-rx-{unique}-.*", auto_create="true")
    assert out["records"] == 2
    assert pg.rows(a) == [("ITEM001", "SHOP001", 1)] and pg.rows(b) == [("ITEM002", "SHOP002", 2)]


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("extra, key, says", [
    ({"delete.enabled": "true", "pk.mode": "record_value"}, "delete.enabled", "needs pk.mode 'record_key'"),
    ({"insert.mode": "merge"}, "insert.mode", "one of 'insert', 'upsert', 'update'"),
    ({"insert.mode": "upsert"}, "pk.mode", "needs a primary key"),
    ({"pk.mode": "none", "pk.fields": "id"}, "pk.fields", "pk.mode is 'none'"),
    ({"pk.mode": "kafka", "pk.fields": "a,b"}, "pk.fields", "exactly 3 names"),
    ({"pk.mode": "record_key", "key.converter.schemas.enable": "false"}, "key.converter.schemas.enable", "must be true"),
    ({"value.converter.schemas.enable": "false"}, "value.converter.schemas.enable", "values with a schema"),
    ({"value.converter": "org.apache.kafka.connect.storage.StringConverter"}, "value.converter", "values with a schema"),
    ({"topics.regex": "sales.*"}, "topics.regex", "exactly one of 'topics'"),
    ({"connection.url": "jdbc:postgresql://db/ec"}, "connection.url", "db.conn.id"),
    ({"table.name.format": "x; DROP TABLE y"}, "table.name.format", "statement separator"),
    ({"batch.size": "0"}, "batch.size", "an integer >= 1"),
])
def test_validation_names_the_connector_the_key_and_what_was_expected(extra, key, says):
    with pytest.raises(ConfigError) as err:
        validate({"name": "bad-sink", "config": {"connector.class": SINK, "topics": "t", "db.conn.id": "pg", **extra}})
    assert err.value.key == key and err.value.connector == "bad-sink" and says in str(err.value)



# ---------------------------------------------------------------------------- the fast path

FAST_SCHEMA = ('{"type":"struct","fields":[{"type":"int32","optional":false,"field":"n"},'
               '{"type":"string","optional":true,"field":"s"},{"type":"boolean","optional":true,"field":"b"},'
               '{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,'
               '"parameters":{"scale":"2"},"field":"d"},{"type":"double","optional":true,"field":"f"},'
               '{"type":"string","optional":true,"name":"io.airconnect.Timestamp","version":1,"field":"t"}],'
               '"optional":false,"name":"fast"}')
odd_nodes = (st.none() | st.booleans() | st.integers(min_value=-2**40, max_value=2**40) | st.text(max_size=4)
             | st.just([]) | st.just({}) | st.just(Decimal("1.5")))


def mostly(right: st.SearchStrategy) -> st.SearchStrategy:
    """The field's own type nine times in ten, anything else the tenth."""
    return st.tuples(st.integers(0, 9), right, odd_nodes).map(lambda t: t[1] if t[0] else t[2])


payloads = st.fixed_dictionaries({"n": mostly(st.integers(min_value=-2**31 - 2, max_value=2**31 + 1))}, optional={
    "s": mostly(st.text(max_size=8)),
    "b": mostly(st.booleans()),
    "d": mostly(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**6, max_value=10**6)
                | st.integers(min_value=-10**6, max_value=10**6)),
    "f": mostly(st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**6, max_value=10**6)),
    "t": mostly(st.sampled_from(["2018-10-01T01:01:01.123456Z", "2018-10-01T10:01:01+09:00", "2018-10-01T01:01:01Z",
                                 "2018-13-01T00:00:00Z", "not a time"])),
    "extra": odd_nodes,
})


class _Msg:
    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 5


@settings(max_examples=300, deadline=None)
@given(payloads,
       st.sampled_from(["none", "kafka", "record_value", "record_key"]), st.booleans(),
       mostly(st.integers(min_value=-2**31 - 2, max_value=2**31 + 1)))
def test_the_fast_path_writes_the_rows_to_connect_gives(payload, pk_mode, postgres, key_node):
    """A record the fast path takes gives the row the general path (core.data.to_connect) gives."""
    from airconnect.connectors.jdbc_sink.sink import FastPayload, JdbcSink, Table
    from airconnect.core.data import to_connect
    from airconnect.core.jsonexact import dumps

    config = validate({"name": "fast", "config": {"connector.class": SINK, "topics": "t", "db.conn.id": "x",
                                                  "pk.mode": pk_mode, "pk.fields": "n" if pk_mode == "record_value" else ""}})
    sink = JdbcSink(config, MemoryStore(), {}, connect=object)
    sink._postgres = postgres  # as a run sets it from its connection (MariaDB takes timestamps as text)
    table = Table(sink, "t")
    key_schema_text = '{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false}'
    keyed = pk_mode == "record_key"
    first_key = f'{{"schema":{key_schema_text},"payload":{{"id":7}}}}'.encode() if keyed else None
    first = f'{{"schema":{FAST_SCHEMA},"payload":{{"n":1}}}}'.encode()
    schema, _ = to_connect(first)
    key_schema = to_connect(first_key)[0] if keyed else None
    layout = sink._value_layout(table, schema, key_schema)
    fast = FastPayload.learn(first, first_key, table, layout, sink._fast_row(schema, layout.columns, key_schema))
    assert fast is not None and (fast.key is not None) == keyed
    value = f'{{"schema":{FAST_SCHEMA},"payload":{dumps(payload)}}}'.encode()
    key = f'{{"schema":{key_schema_text},"payload":{{"id":{dumps(key_node)}}}}}'.encode() if keyed else None
    node = fast.payload(value)
    knode = fast.key.payload(key) if fast.key is not None and key is not None else None
    try:
        quick = None if node is None or (keyed and knode is None) else fast.row(_Msg(), knode, node)
    except (ValueError, TypeError, ArithmeticError):
        quick = None  # the sink then takes the general path, which says what is wrong
    if quick is not None:
        general_key = to_connect(key)[1] if keyed else None
        assert quick == layout.extract(_Msg(), general_key, to_connect(value)[1])
    event("written by the fast path" if quick is not None else "left to the general path")


def test_inventory_lines_parsed_by_a_transform_are_upserted(db, unique):
    """Flow 3's inventory view: zaiko-data's text lines, ParseCsv$Value into a struct, upserted by item and shop."""
    from airconnect.core.converters import StringValueWriter

    topic = make_topic(db.kafka, db.table(f"sink-zaiko-{unique}"))
    line = StringValueWriter()
    produce(db.kafka, topic, [(None, line("ITEM001,SHOP001,929,2018-10-01 01:01:01")),
                              (None, line("ITEM002,SHOP001,5,2018-10-01 01:02:00")),
                              (None, line("ITEM001,SHOP001,928,2018-10-01 02:00:00"))])
    out = db.run(f"sink-test-{unique}", topic, insert_mode="upsert", pk_mode="record_value", pk_fields="item,shop",
                 auto_create="true", **{"transforms": "csv", "transforms.csv.type": "airconnect.transforms.ParseCsv$Value",
                                        "transforms.csv.fields": "item,shop,stock,changed_at",
                                        "transforms.csv.types": "string,string,int32,timestamp"})
    assert out["written"] == 3
    assert [(r[0], r[1], r[2], naive_utc(r[3])) for r in db.rows(topic, "1, 2")] == [
        ("ITEM001", "SHOP001", 928, dt.datetime(2018, 10, 1, 2, 0)),
        ("ITEM002", "SHOP001", 5, dt.datetime(2018, 10, 1, 1, 2))]


def test_the_operator_runs_it_with_the_airflow_connection(pg, unique):
    """Under Airflow: db.conn.id names the Connection (PostgresHook hands out psycopg 3), offsets in the Variable."""
    from airconnect.hooks import VariableStore
    from airconnect.operators import JdbcSinkOperator

    topic = make_topic(pg.kafka, pg.table(f"sink-op-{unique}"))
    produce(pg.kafka, topic, [(None, stock("ITEM001", "SHOP001", 5))])
    name = f"sink-test-{unique}"
    op = JdbcSinkOperator(connector={"name": name, "config": {
        "connector.class": SINK, "topics": topic, "db.conn.id": "postgres_ec", "auto.create": "true"}})
    assert op.task_id == name
    assert op.execute({})["written"] == 1
    assert pg.rows(topic) == [("ITEM001", "SHOP001", 5)]
    assert Offsets(VariableStore(), name).get({"kafka_topic": topic, "kafka_partition": 0}) == {"kafka_offset": 1}
    Offsets(VariableStore(), name).clear()
