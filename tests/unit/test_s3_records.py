"""What the S3 sink makes of each record value: the shortcut for envelopes that repeat a schema
gives exactly what the whole parse gives, and bad values are refused the same way."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from airconnect.connectors.s3.sink import S3Sink
from airconnect.core import jsonexact
from airconnect.core.errors import DataError
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate

SCHEMA = {"type": "struct", "optional": False, "name": "pos_sales", "fields": [
    {"field": "sale_id", "type": "int64", "optional": False},
    {"field": "item", "type": "string", "optional": True},
    {"field": "price", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
     "parameters": {"scale": "2"}, "optional": False},
    {"field": "updated_at", "type": "string", "optional": False, "doc": "\"payload\": in a doc string"},
]}


def envelope(payload: str, schema: dict = SCHEMA) -> bytes:
    return ('{"schema":' + json.dumps(schema, separators=(",", ":"), ensure_ascii=False) + ',"payload":' + payload
            + "}").encode()


def sink() -> S3Sink:
    config = validate({"name": "s3-test", "config": {
        "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": "pos.pos_sales",
        "s3.bucket.name": "b", "timestamp.field": "updated_at"}})
    return S3Sink(config, MemoryStore(), {"bootstrap.servers": "unused:9"})


def whole(value: bytes) -> tuple:
    doc = jsonexact.loads(value)
    return (doc["schema"], doc["payload"]) if isinstance(doc, dict) and set(doc) == {"schema", "payload"} else (None, doc)


ROW = '{"sale_id":%d,"item":"お茶 \\u00e9\\"x\\"","price":12.30,"updated_at":"2018-10-31T23:30:00.000000Z"}'

VALUES = [
    envelope(ROW % 1),
    envelope(ROW % 2),  # the same schema: only the payload is parsed
    envelope("null"),
    envelope(' {"sale_id":3,"price":1E+2,"updated_at":"2018-11-01T00:00:00Z"} '),
    envelope(ROW % 4, {**SCHEMA, "name": "other"}),  # another schema: a whole parse, then its prefix
    envelope(ROW % 5),
    envelope(ROW % 6)[:-1] + b',"extra":1}',  # three keys: not an envelope
    b'{"sale_id":7,"updated_at":"2018-10-31T23:30:00Z"}',  # no envelope at all
    b'{"payload":{"a":1},"schema":{"type":"struct"}}',  # keys in the other order
]


def test_every_value_gives_what_the_whole_parse_gives():
    s = sink()
    for value in VALUES:
        assert s._envelope(value) == whole(value), value
    assert s._prefix is not None  # the shortcut was taken


@pytest.mark.parametrize("bad, message", [
    (envelope('{"sale_id":1,"item":"ÿ"}').replace("ÿ".encode(), b"\xff"), "not valid UTF-8 at byte"),
    (envelope('{"sale_id":1,'), "not JSON"),
    (envelope('{"sale_id":1}}'), "not JSON"),
])
def test_a_bad_value_after_the_shortcut_is_refused_as_before(bad, message):
    s = sink()
    s._envelope(VALUES[0])
    assert s._prefix is not None and bad.startswith(s._prefix)
    with pytest.raises(DataError, match=message):
        s._envelope(bad)


def test_the_exported_line_keeps_decimals_and_text_exact():
    s = sink()
    for _ in range(2):
        line, month, _, _ = s._line_and_month(envelope(ROW % 1))
        assert line == '{"sale_id":1,"item":"お茶 é\\"x\\"","price":12.30,"updated_at":"2018-10-31T23:30:00.000000Z"}\n'.encode()
        assert month == (2018, 10)
    assert jsonexact.loads(line)["price"] == Decimal("12.30")
