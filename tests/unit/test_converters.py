"""Record values byte for byte as Kafka Connect's JsonConverter writes them."""

from __future__ import annotations

import json

import pytest

from airconnect.core.config import JSON_CONVERTER, STRING_CONVERTER
from airconnect.core.converters import StringValueWriter, payload_text
from airconnect.core.errors import DataError


def test_the_scenarios_envelope_byte_for_byte():
    value = StringValueWriter()("ITEM001,SHOP001,929,2018-10-01 01:01:01")
    assert value == b'{"schema":{"type":"string","optional":false},"payload":"ITEM001,SHOP001,929,2018-10-01 01:01:01"}'


def test_non_ascii_is_written_raw_and_specials_escaped_like_jackson():
    value = StringValueWriter()('お茶 500ml,"quoted"\\\t\x01')
    assert value == ('{"schema":{"type":"string","optional":false},"payload":"お茶 500ml,\\"quoted\\"\\\\\\t\\u0001"}').encode()
    assert json.loads(value)["payload"] == 'お茶 500ml,"quoted"\\\t\x01'


def test_schemaless_and_string_converters():
    assert StringValueWriter(JSON_CONVERTER, schemas_enable=False)("a,b") == b'"a,b"'
    assert StringValueWriter(STRING_CONVERTER)("김치,b") == "김치,b".encode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b'{"schema":{"type":"string","optional":false},"payload":"ITEM001,SHOP001"}', "ITEM001,SHOP001"),
        (b'"ITEM001,SHOP001"', "ITEM001,SHOP001"),
        (b"ITEM001,SHOP001", "ITEM001,SHOP001"),
        ("お茶,SHOP001".encode(), "お茶,SHOP001"),
        (b'{"schema":{"type":"struct"},"payload":{"a":1}}', '{"a":1}'),
        (b'{"a": 1}', '{"a":1}'),
        (b"{not json", "{not json"),
        (None, None),
        (b'{"schema":{"type":"string","optional":true},"payload":null}', None),
    ],
)
def test_the_sink_accepts_envelopes_schemaless_json_and_plain_strings(value, text):
    assert payload_text(value) == text


def test_undecodable_bytes_are_a_clear_data_error():
    with pytest.raises(DataError, match="not valid UTF-8 at byte 3"):
        payload_text(b"abc\xff")
