"""Record values byte for byte as Kafka Connect's JsonConverter writes them."""

from __future__ import annotations

import json

import pytest

from airconnect.core.config import JSON_CONVERTER, STRING_CONVERTER
from airconnect.core.converters import StringValueWriter, payload_text, plain_lines, plain_payload
from airconnect.core.errors import DataError


def test_the_scenarios_envelope_byte_for_byte():
    value = StringValueWriter()("ITEM001,SHOP001,929,2018-10-01 01:01:01")
    assert value == b'{"schema":{"type":"string","optional":false},"payload":"ITEM001,SHOP001,929,2018-10-01 01:01:01"}'


def test_non_ascii_is_written_raw_and_specials_escaped_like_jackson():
    value = StringValueWriter()('お茶 500ml,"quoted"\\\t\x01')
    assert value == ('{"schema":{"type":"string","optional":false},"payload":"お茶 500ml,\\"quoted\\"\\\\\\t\\u0001"}').encode()
    assert json.loads(value)["payload"] == 'お茶 500ml,"quoted"\\\t\x01'


def test_characters_beyond_the_bmp_and_control_characters_as_connects_jackson_writes_them():
    # Kafka Connect's JsonConverter (Jackson's UTF8JsonGenerator) escapes each half of a surrogate
    # pair and writes control characters with upper-case hex; tests/smt/cases.json holds the same
    # bytes from Connect's own converter.
    value = StringValueWriter()("在庫 😀,\x1f")
    assert value == b'{"schema":{"type":"string","optional":false},"payload":"' + "在庫".encode() + b' \\uD83D\\uDE00,\\u001F"}'
    assert StringValueWriter(schemas_enable=False)("🍙") == b'"\\uD83C\\uDF59"'
    assert not plain_lines("おにぎり 🍙".encode())


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


@pytest.mark.parametrize("converter,schemas", [(JSON_CONVERTER, True), (JSON_CONVERTER, False), (STRING_CONVERTER, True)])
def test_plain_lines_in_bulk_are_the_same_bytes_as_one_by_one(converter, schemas):
    write = StringValueWriter(converter, schemas)
    lines = [b"ITEM001,SHOP001,929,2018-10-01 01:01:01", b"", "ITEM010,SHOP001,12,お茶 500ml".encode(), b"a\x7fb"]
    assert plain_lines(b"\n".join(lines))
    assert write.plain_values(lines) == [write(line.decode("utf-8")) for line in lines]


@pytest.mark.parametrize("data", [b'say "hi"', b"back\\slash", b"tab\there", b"crlf\r", b"\x01", b"\xff\xfe", b"\xe3\x81"])
def test_lines_json_escapes_or_bad_utf8_are_not_plain(data):
    assert not plain_lines(b"ok\n" + data + b"\nok")


@pytest.mark.parametrize("text", ["ITEM001,SHOP001,929,2018-10-01 01:01:01", "", "お茶 500ml", 'say "hi"', "a\\b",
                                  "tab\there", "x\ny", "\u2028"])
def test_a_plain_payload_is_the_text_the_sink_writes(text):
    for value in (StringValueWriter()(text), StringValueWriter(JSON_CONVERTER, False)(text), text.encode()):
        plain = plain_payload(value)
        assert plain is None or plain == payload_text(value).encode("utf-8")
    assert plain_payload(StringValueWriter()(text)) is not None or any(c in text for c in '"\\\t\n')


@pytest.mark.parametrize("value", [None, b'{"schema":{"type":"string","optional":false},"payload":"a\nb"}',
                                   b'{"schema":{"type":"string","optional":false},"payload":"\xff"}',
                                   b'{"schema":{"type":"string","optional":false},"payload":"a","x":"b"}',
                                   b'{"schema":{"type":"string","optional":false},"payload":null}'])
def test_values_that_are_not_plain_envelopes_are_left_to_payload_text(value):
    assert plain_payload(value) is None
