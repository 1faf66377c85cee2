"""Single message transforms through real connectors and the real broker: routed records on the
topic a RegexRouter names, headers, a Filter with a predicate in a sink, ParseCsv, errors and
dead letters, offsets; and validation errors naming the connector, the transform and the key."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from airconnect.core.errors import ConfigError, DataError, InvalidDefinitions
from airconnect.core.offsets import MemoryStore, Offsets
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import file_sink, file_source

P = "org.apache.kafka.connect.transforms."
LINES = "ITEM001,SHOP001,929,2018-10-01 01:01:01\nITEM002,店舗002,480,2018-10-01 01:01:01\n"
CSV = {"transforms.csv.type": "airconnect.transforms.ParseCsv$Value",
       "transforms.csv.fields": "item_id,shop_id,stock,changed_at",
       "transforms.csv.types": "string,string,int32,timestamp",
       "transforms.csv.schema.name": "zaiko"}
ZAIKO_SCHEMA = ('{"type":"struct","fields":[{"type":"string","optional":false,"field":"item_id"},'
                '{"type":"string","optional":false,"field":"shop_id"},{"type":"int32","optional":false,"field":"stock"},'
                '{"type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1,'
                '"field":"changed_at"}],"optional":false,"name":"zaiko"}')


def read_messages(kafka: dict[str, Any], topic: str) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """(key, value, headers) of every committed record of ``topic``."""
    c = Consumer({**kafka, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True, "isolation.level": "read_committed",
                  "fetch.wait.max.ms": 20})
    try:
        t = c.list_topics(topic, timeout=15).topics.get(topic)
        if t is None or t.error is not None:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in t.partitions])
        out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        done: set[int] = set()
        idle = 0
        while len(done) < len(t.partitions) and idle < 150:
            msg = c.poll(0.1)
            if msg is None:
                idle += 1
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
                    continue
                raise RuntimeError(msg.error().str())
            out.append((msg.key(), msg.value(), list(msg.headers() or [])))
        return out
    finally:
        c.close()


def test_file_source_routes_parses_and_adds_a_header(tmp_path, kafka, unique):
    """poll -> ParseCsv -> RegexRouter -> InsertHeader -> JsonConverter -> the routed topic."""
    inventory = tmp_path / "latest.txt"
    inventory.write_text(LINES, encoding="utf-8")
    topic = f"zaiko-data-{unique}"
    definition = file_source(f"load-{unique}", inventory, topic, **{
        "transforms": "csv,route,origin", **CSV,
        "transforms.route.type": P + "RegexRouter", "transforms.route.regex": "zaiko-data-(.*)",
        "transforms.route.replacement": "ec-zaiko-$1",
        "transforms.origin.type": P + "InsertHeader", "transforms.origin.header": "source",
        "transforms.origin.value.literal": "在庫システム"})
    store = MemoryStore()
    result = run(definition, store, kafka)
    assert result["records"] == 2
    routed = read_messages(kafka, f"ec-zaiko-{unique}")
    assert [m[1] for m in routed] == [
        ('{"schema":%s,"payload":{"item_id":"ITEM001","shop_id":"SHOP001","stock":929,"changed_at":1538355661000}}'
         % ZAIKO_SCHEMA).encode(),
        ('{"schema":%s,"payload":{"item_id":"ITEM002","shop_id":"店舗002","stock":480,"changed_at":1538355661000}}'
         % ZAIKO_SCHEMA).encode(),
    ]
    assert [m[2] for m in routed] == [[("source", "在庫システム".encode())]] * 2
    assert read_messages(kafka, topic) == []  # nothing went to the topic before routing
    # the offset moved past both lines; a second run sends nothing again
    assert run(definition, store, kafka)["records"] == 0
    assert len(read_messages(kafka, f"ec-zaiko-{unique}")) == 2


def test_source_transform_error_stops_the_run_or_goes_to_the_dead_letter_topic(tmp_path, kafka, unique):
    inventory = tmp_path / "latest.txt"
    inventory.write_text(LINES + "ITEM003,SHOP001,many,2018-10-01 01:01:01\nITEM004,SHOP001,7,2018-10-02 02:02:02\n",
                         encoding="utf-8")
    topic = f"zaiko-{unique}"
    store = MemoryStore()
    strict = file_source(f"strict-{unique}", inventory, topic, transforms="csv", **CSV)
    with pytest.raises(DataError) as failed:
        run(strict, store, kafka)
    message = str(failed.value)
    assert f"connector 'strict-{unique}'" in message and "transform 'csv'" in message and "'stock'" in message
    assert read_messages(kafka, topic) == []  # the batch was not delivered ...
    assert Offsets(store, f"strict-{unique}").get({"filename": str(inventory)}) is None  # ... and no offset moved

    tolerant = file_source(f"tolerant-{unique}", inventory, topic, transforms="csv", **CSV,
                           **{"errors.tolerance": "all"})
    assert run(tolerant, store, kafka)["records"] == 3
    assert len(read_messages(kafka, topic)) == 3
    dead = read_messages(kafka, f"{topic}.dlq")
    assert [d[1] for d in dead] == [b'{"schema":{"type":"string","optional":false},"payload":'
                                    b'"ITEM003,SHOP001,many,2018-10-01 01:01:01"}']
    headers = dict(dead[0][2])
    assert headers["__connect.errors.stage"] == b"TRANSFORMATION"
    assert headers["__connect.errors.transform"] == b"csv"
    assert headers["__connect.errors.connector.name"] == f"tolerant-{unique}".encode()


def _produce(kafka: dict[str, Any], topic: str, records: list[tuple[str, list[tuple[str, bytes]]]]) -> None:
    from airconnect.core.kafka_client import Admin

    Admin(kafka).ensure_topic(topic)
    p = Producer(kafka)
    for line, headers in records:
        value = json.dumps({"schema": {"type": "string", "optional": False}, "payload": line},
                           ensure_ascii=False, separators=(",", ":")).encode()
        p.produce(topic, value, headers=headers)
    assert p.flush(15) == 0


def test_file_sink_filters_with_a_predicate_and_moves_its_offsets_past_dropped_records(tmp_path, kafka, unique):
    topic = f"ec-{unique}"
    _produce(kafka, topic, [("ITEM001,SHOP001,929", []), ("TEST,SHOP999,0", [("test", b"1")]),
                            ("ITEM002,SHOP001,480", []), ("TEST,SHOP999,1", [("test", b"1")])])
    out = tmp_path / "ec.txt"
    name = f"sink-{unique}"
    sink = file_sink(name, out, topic, **{
        "transforms": "dropTests,mask", "transforms.dropTests.type": P + "Filter",
        "transforms.dropTests.predicate": "isTest",
        "transforms.mask.type": P + "RegexRouter", "transforms.mask.regex": "ec-(.*)",
        "transforms.mask.replacement": "x-$1",
        "predicates": "isTest", "predicates.isTest.type": P + "predicates.HasHeaderKey", "predicates.isTest.name": "test"})
    store = MemoryStore()
    run(sink, store, kafka)
    assert out.read_bytes() == b"ITEM001,SHOP001,929\nITEM002,SHOP001,480\n"
    # past the dropped record at the end too
    assert Offsets(store, name).get({"kafka_topic": topic, "kafka_partition": 0}) == {"kafka_offset": 4}
    run(sink, store, kafka)
    assert out.read_bytes() == b"ITEM001,SHOP001,929\nITEM002,SHOP001,480\n"


def test_sink_transform_error_keeps_the_offset_at_the_failed_record(tmp_path, kafka, unique):
    topic = f"ec-{unique}"
    _produce(kafka, topic, [("ITEM001,SHOP001,929,2018-10-01 01:01:01", []), ("garbage", []),
                            ("ITEM002,SHOP001,480,2018-10-01 01:01:01", [])])
    out = tmp_path / "ec.txt"
    name = f"sink-{unique}"
    sink = file_sink(name, out, topic, transforms="csv,back", **CSV, **{
        "transforms.back.type": P + "ExtractField$Value", "transforms.back.field": "item_id"})
    store = MemoryStore()
    with pytest.raises(DataError) as failed:
        run(sink, store, kafka)
    assert f"connector '{name}'" in str(failed.value) and "transform 'csv'" in str(failed.value)
    assert f"{topic}[0]@1" in str(failed.value)
    assert out.read_bytes() == b"ITEM001\n"  # the record before it was written
    assert Offsets(store, name).get({"kafka_topic": topic, "kafka_partition": 0}) == {"kafka_offset": 1}
    with pytest.raises(DataError):  # the next run stops at the same record: nothing is skipped
        run(sink, store, kafka)
    assert out.read_bytes() == b"ITEM001\n"

    tolerant_out = tmp_path / "tolerant.txt"
    tolerant = file_sink(f"tolerant-{unique}", tolerant_out, topic, transforms="csv,back", **CSV, **{
        "transforms.back.type": P + "ExtractField$Value", "transforms.back.field": "item_id",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": f"{topic}-dlq"})
    run(tolerant, store, kafka)
    assert tolerant_out.read_bytes() == b"ITEM001\nITEM002\n"
    dead = read_messages(kafka, f"{topic}-dlq")
    assert [d[1] for d in dead] == [b'{"schema":{"type":"string","optional":false},"payload":"garbage"}']
    assert dict(dead[0][2])["__connect.errors.stage"] == b"TRANSFORMATION"
    assert Offsets(store, f"tolerant-{unique}").get({"kafka_topic": topic, "kafka_partition": 0}) == {"kafka_offset": 3}


@pytest.mark.parametrize(("extra", "key", "expected"), [
    ({"transforms": "route", "transforms.route.type": P + "RegexRoutr"}, "transforms.route.type",
     "unknown transform class 'org.apache.kafka.connect.transforms.RegexRoutr' (did you mean "
     "'org.apache.kafka.connect.transforms.RegexRouter'?)"),
    ({"transforms": "route", "transforms.route.type": P + "RegexRouter", "transforms.route.replacement": "x"},
     "transforms.route.regex", "is required"),
    ({"transforms": "route", "transforms.route.type": P + "RegexRouter", "transforms.route.regex": "(",
      "transforms.route.replacement": "x"}, "transforms.route.regex", "expected a valid (Java) regular expression"),
    ({"transforms": "drop", "transforms.drop.type": P + "Filter", "transforms.drop.predicate": "isTest"},
     "transforms.drop.predicate", "refers to predicate 'isTest', which is not declared in 'predicates'"),
    ({"transforms": "c", "transforms.c.type": P + "Cast$Value", "transforms.c.spec": "qty:bytes"},
     "transforms.c.spec", "Cast transformation does not support casting to BYTES"),
    ({"transforms": "ts", "transforms.ts.type": P + "TimestampConverter$Value", "transforms.ts.target.type": "string"},
     "transforms.ts.format", "is required when target.type is string"),
    ({"transforms": "h", "transforms.h.type": P + "InsertHeader", "transforms.h.header": "a",
      "transforms.h.value.literal": "b", "transforms.h.colour": "red"}, "transforms.h.colour",
     "is not an option of org.apache.kafka.connect.transforms.InsertHeader"),
    ({"transforms": "a", "transforms.b.type": P + "Filter", "transforms.a.type": P + "Filter"}, "transforms.b.type",
     "names transform 'b', which is not listed in 'transforms'"),
    ({"predicates": "p", "predicates.p.type": P + "predicates.TopicNameMatches"}, "predicates.p.pattern", "is required"),
])
def test_validation_names_connector_transform_and_key(extra, key, expected):
    definition = file_source("bad-transforms", "/tmp/zaiko.txt", "zaiko", **extra)
    with pytest.raises(ConfigError) as failed:
        validate(definition)
    problems = failed.value.errors if isinstance(failed.value, InvalidDefinitions) else [failed.value]
    mine = [p for p in problems if p.key == key]
    assert mine, [str(p) for p in problems]
    assert str(mine[0]).startswith(f"connector 'bad-transforms', key '{key}': ")
    assert expected in str(mine[0])


def test_every_connector_class_accepts_transforms():
    chain = {"transforms": "route", "transforms.route.type": P + "RegexRouter", "transforms.route.regex": "(.*)",
             "transforms.route.replacement": "x-$1"}
    from airconnect.core.registry import connector_classes

    for cls in connector_classes():
        try:
            validate({"name": "any", "config": {"connector.class": cls.name, **chain}})
        except ConfigError as exc:
            problems = exc.errors if isinstance(exc, InvalidDefinitions) else [exc]
            assert not [p for p in problems if (p.key or "").startswith("transforms")], [str(p) for p in problems]


BAD_ROUTE = {"transforms": "route", "transforms.route.type": P + "RegexRouter", "transforms.route.regex": "(",
             "transforms.route.replacement": "x", "predicates": "p", "predicates.p.type": P + "predicates.Nope"}


def test_airconnect_validate_shows_transform_errors(tmp_path, capsys):
    from airconnect.cli import main

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(file_source("bad-route", "/tmp/zaiko.txt", "zaiko", **BAD_ROUTE)), encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "connector 'bad-route', key 'transforms.route.regex': expected a valid (Java) regular expression" in err
    assert "connector 'bad-route', key 'predicates.p.type': unknown predicate class" in err


def test_rest_validate_endpoint_lists_transform_errors_under_their_keys():
    from fastapi.testclient import TestClient

    from airconnect import rest

    rest.app.dependency_overrides[rest.check_access] = lambda: None
    try:
        body = file_source("bad-route", "/tmp/zaiko.txt", "zaiko", **BAD_ROUTE)["config"]
        r = TestClient(rest.app).put("/connector-plugins/FileStreamSourceConnector/config/validate", json=body)
    finally:
        rest.app.dependency_overrides.pop(rest.check_access, None)
    assert r.status_code == 200
    errors = {c["value"]["name"]: c["value"]["errors"] for c in r.json()["configs"] if c["value"]["errors"]}
    assert set(errors) == {"transforms.route.regex", "predicates.p.type"}
    assert errors["transforms.route.regex"][0].startswith("expected a valid (Java) regular expression")
    assert r.json()["error_count"] == 2


def test_file_source_filter_drops_everything_and_still_moves_the_offset(tmp_path, kafka, unique):
    inventory = tmp_path / "latest.txt"
    inventory.write_text(LINES, encoding="utf-8")
    topic = f"zaiko-{unique}"
    name = f"drop-{unique}"
    store = MemoryStore()
    definition = file_source(name, inventory, topic, transforms="drop", **{"transforms.drop.type": P + "Filter"})
    run(definition, store, kafka)
    assert read_messages(kafka, topic) == []
    offset = Offsets(store, name).get({"filename": str(inventory)})
    assert offset is not None and offset["position"] == len(LINES.encode())


def test_jdbc_source_records_get_their_key_and_topic_from_transforms(kafka, unique):
    """The runtime applies a JDBC source's transforms too: ValueToKey + ExtractField$Key make the
    row's id the record key (Connect's usual recipe), RegexRouter renames the topic."""
    from airconnect.core.data import from_connect, to_connect
    from helpers import generator

    connect = generator().connect_pg
    table = f"zaiko_{unique}"
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, item VARCHAR(32) NOT NULL, stock INTEGER NOT NULL)")
        cur.execute(f"INSERT INTO {table} (item, stock) VALUES ('ITEM001', 929), ('商品002', 480)")
        conn.commit()
        definition = {"name": f"jdbc-{unique}", "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
            "mode": "incrementing", "incrementing.column.name": "id", "table.whitelist": table,
            "topic.prefix": f"pg-{unique}.", "transforms": "key,id,route",
            "transforms.key.type": P + "ValueToKey", "transforms.key.fields": "id",
            "transforms.id.type": P + "ExtractField$Key", "transforms.id.field": "id",
            "transforms.route.type": P + "RegexRouter", "transforms.route.regex": r"pg-[0-9a-f]+\.(.*)",
            "transforms.route.replacement": "inventory.$1"}}
        run(definition, MemoryStore(), kafka, connect=connect)
        got = read_messages(kafka, f"inventory.{table}")
        assert len(got) == 2 and read_messages(kafka, f"pg-{unique}.{table}") == []
        for key, value, _ in got:
            schema, row = to_connect(value)
            assert schema is not None and row.get("item") in ("ITEM001", "商品002")
            id_field = schema.field("id")
            assert id_field is not None
            assert key == from_connect(id_field.schema, row.get("id"))  # e.g. {"schema":{"type":"int64",...},"payload":1}
    finally:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()
