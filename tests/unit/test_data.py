"""Kafka Connect's data model and JsonConverter (core/data.py): the bytes Connect writes, both ways.

(The same conversions are compared with Connect's own JsonConverter, run in a JVM, by
tests/integration/test_smt_vs_kafka_connect.py.)"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from airconnect.core.data import (
    DATE_SCHEMA,
    INT32,
    INT64,
    STRING,
    TIMESTAMP_SCHEMA,
    ConnectRecord,
    Schema,
    Struct,
    decimal_schema,
    from_connect,
    java_double,
    java_map,
    struct_schema,
    to_connect,
)
from airconnect.core.errors import DataError

INVENTORY = struct_schema([("item", Schema(STRING)), ("shop", Schema(STRING)), ("qty", Schema(INT32)),
                           ("price", decimal_schema(2, optional=True)), ("day", DATE_SCHEMA.replace(optional=True)),
                           ("at", TIMESTAMP_SCHEMA)], name="zaiko")


def test_string_envelope_is_what_the_file_source_writes() -> None:
    data = from_connect(Schema(STRING), "ITEM001,SHOP001,929,2018-10-01 01:01:01")
    assert data == b'{"schema":{"type":"string","optional":false},"payload":"ITEM001,SHOP001,929,2018-10-01 01:01:01"}'
    assert to_connect(data) == (Schema(STRING), "ITEM001,SHOP001,929,2018-10-01 01:01:01")


def test_struct_with_logical_types_round_trips_byte_for_byte() -> None:
    value = Struct(INVENTORY, {"item": "商品001", "shop": "SHOP001", "qty": 929, "price": Decimal("12.50"),
                               "day": dt.date(2018, 10, 1), "at": dt.datetime(2018, 10, 1, 1, 1, 1, tzinfo=dt.timezone.utc)})
    data = from_connect(INVENTORY, value)
    assert data == (
        '{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"item"},'
        '{"type":"string","optional":false,"field":"shop"},{"type":"int32","optional":false,"field":"qty"},'
        '{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,'
        '"parameters":{"scale":"2"},"field":"price"},'
        '{"type":"int32","optional":true,"name":"org.apache.kafka.connect.data.Date","version":1,"field":"day"},'
        '{"type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1,"field":"at"}],'
        '"optional":false,"name":"zaiko"},'
        '"payload":{"item":"商品001","shop":"SHOP001","qty":929,"price":"BOI=","day":17805,"at":1538355661000}}'
    ).encode()
    schema, back = to_connect(data)
    assert schema == INVENTORY and back == value
    numeric = from_connect(INVENTORY, value, decimal_format="NUMERIC")
    assert numeric is not None and b'"price":12.50,' in numeric
    assert to_connect(numeric, decimal_format="NUMERIC")[1].get("price") == Decimal("12.50")


def test_schemaless_json_and_java_number_forms() -> None:
    schema, value = to_connect(b'{"a":1,"b":2.50,"c":[true,null],"d":"x"}', schemas_enable=False)
    assert schema is None and value == {"a": 1, "b": 2.5, "c": [True, None], "d": "x"}
    assert from_connect(None, value, schemas_enable=False) == b'{"a":1,"b":2.5,"c":[true,null],"d":"x"}'
    assert [java_double(x) for x in (1.0, 0.001, 1e-4, 1e7, 1234567.0, -2.5e-10, 100.0)] == [
        "1.0", "0.001", "1.0E-4", "1.0E7", "1234567.0", "-2.5E-10", "100.0"]
    assert java_double(0.1, single=True) == "0.1"


def test_maps_take_java_hashmap_order() -> None:
    # Connect keeps a schemaless object in a HashMap: "b" (hash 98) comes before "c" (99), "aa" (3104 -> bucket 0).
    assert list(java_map({"c": 1, "b": 2, "aa": 3})) == ["aa", "b", "c"]
    assert from_connect(None, to_connect(b'{"c":1,"b":2}', schemas_enable=False)[1], schemas_enable=False) == b'{"b":2,"c":1}'


def test_escapes_are_jacksons() -> None:
    assert from_connect(Schema(STRING), 'a"b\\c\n\x01é', schemas_enable=False) == '"a\\"b\\\\c\\n\\u0001é"'.encode()


def test_errors_are_data_errors() -> None:
    with pytest.raises(DataError, match="requires \"schema\" and \"payload\""):
        to_connect(b'{"a":1}')
    with pytest.raises(DataError, match="null value for field that is required"):
        from_connect(Schema(INT64), None)
    with pytest.raises(DataError, match="mismatching scale"):
        from_connect(decimal_schema(2), Decimal("1.5"))
    with pytest.raises(DataError):
        Struct(INVENTORY).put("qty", "x")


def test_new_record_replaces_only_what_it_is_given() -> None:
    record = ConnectRecord("t", 0, None, b"k", Schema(STRING), "v", 5, origin="msg")
    moved = record.new_record(topic="u", value="w")
    assert (moved.topic, moved.key, moved.value, moved.timestamp, moved.origin) == ("u", b"k", "w", 5, "msg")
    assert record.new_record(timestamp=None).timestamp is None
