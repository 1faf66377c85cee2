"""airconnect's own transform (ParseCsv), the chain built from a definition, and the Java pieces
the transforms rely on (SimpleDateFormat, regex replacements). Kafka Connect's transforms are
compared with Connect itself in tests/integration/test_smt_vs_kafka_connect.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from airconnect.core.data import STRING, ConnectRecord, Schema, from_connect
from airconnect.core.errors import DataError
from airconnect.transforms import RecordCodec, TransformError, build_chain
from airconnect.transforms.base import SimpleDateFormat, compile_java_regex, java_replacement

P = "org.apache.kafka.connect.transforms."
LINE = "ITEM001,SHOP001,929,2018-10-01 01:01:01"


def _line(text: str | None) -> ConnectRecord:
    return ConnectRecord("zaiko-data", None, None, None, Schema(STRING), text)


def _chain(**config: str):
    chain, errors = build_chain(config, "unit")
    assert not errors, [str(e) for e in errors]
    assert chain is not None
    return chain


def test_parse_csv_makes_a_typed_struct_for_a_jdbc_sink():
    chain = _chain(transforms="csv", **{
        "transforms.csv.type": "airconnect.transforms.ParseCsv$Value",
        "transforms.csv.fields": "item_id,shop_id,stock,changed_at,price",
        "transforms.csv.types": "string,string,int32,timestamp,decimal(2)",
        "transforms.csv.timezone": "Asia/Tokyo", "transforms.csv.schema.name": "zaiko"})
    out = chain.apply(_line(LINE + ",12.5"))
    assert out is not None
    assert out.value.get("stock") == 929 and out.value.get("price") == Decimal("12.50")
    assert out.value.get("changed_at") == dt.datetime(2018, 9, 30, 16, 1, 1, tzinfo=dt.timezone.utc)
    assert from_connect(out.value_schema, out.value, schemas_enable=False) == (
        b'{"item_id":"ITEM001","shop_id":"SHOP001","stock":929,"changed_at":1538323261000,"price":"BOI="}')
    assert chain.apply(_line(None)) == _line(None)  # a tombstone passes
    with pytest.raises(TransformError, match=r"transform 'csv' \(airconnect.transforms.ParseCsv\$Value\).*'stock'"):
        chain.apply(_line("ITEM001,SHOP001,lots,2018-10-01 01:01:01,1"))
    with pytest.raises(TransformError, match="has 2 field"):
        chain.apply(_line("ITEM001,SHOP001"))


def test_parse_csv_options_are_checked():
    _, errors = build_chain({"transforms": "csv", "transforms.csv.type": "airconnect.transforms.ParseCsv$Value",
                             "transforms.csv.fields": "a,b", "transforms.csv.types": "string,money"}, "unit")
    assert [e.key for e in errors] == ["transforms.csv.types"]
    assert "decimal(N)" in str(errors[0])


def test_predicates_and_negate_choose_the_records_a_transform_applies_to():
    chain = _chain(transforms="drop", predicates="zaiko", **{
        "transforms.drop.type": P + "Filter", "transforms.drop.predicate": "zaiko", "transforms.drop.negate": "true",
        "predicates.zaiko.type": P + "predicates.TopicNameMatches", "predicates.zaiko.pattern": "zaiko-.*"})
    assert chain.apply(_line(LINE)) is not None
    assert chain.apply(_line(LINE).new_record(topic="pos-data")) is None


def test_codec_round_trips_the_connectors_bytes():
    codec = RecordCodec()
    value = b'{"schema":{"type":"string","optional":false},"payload":"ITEM001,\xe5\x9c\xa8\xe5\xba\xab"}'
    record = codec.decode("t", None, value, [("h", b"1")])
    assert codec.encode(record) == (None, value, [("h", b"1")])


def test_simple_date_format_formats_and_parses_like_java():
    fmt = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS'Z' EEE MMM")
    assert fmt.format(1538355661123) == "2018-10-01T01:01:01.123Z Mon Oct"
    assert SimpleDateFormat("yyyyMMdd").parse("20181001") == 1538352000000
    assert SimpleDateFormat("yyyy-MM-dd HH:mm").parse("2018-10-01 25:00 trailing text") == 1538442000000  # lenient
    with pytest.raises(ValueError):
        SimpleDateFormat("yyyy-MM-dd").parse("2018/10/01")
    with pytest.raises(ValueError):
        SimpleDateFormat("yyyy-qq")


def test_java_replacement_syntax():
    regex = compile_java_regex(r"(?<table>[a-z]+)-(\d+)")
    m = regex.fullmatch("zaiko-12")
    assert m is not None
    assert java_replacement(r"${table}_$2\$")(m) == "zaiko_12$"
    with pytest.raises(DataError):
        java_replacement("$9")(m)
