"""Kafka Connect's converters, byte for byte: JsonConverter (with or without schemas) and
StringConverter.

JsonConverter with ``schemas.enable=true`` writes a string as::

    {"schema":{"type":"string","optional":false},"payload":"ITEM001,SHOP001,929,2018-10-01 01:01:01"}

Jackson, which Connect uses, escapes ``"``, ``\\`` and control characters (``\\u001F``, upper-case
hex), writes each character beyond U+FFFF as an escaped surrogate pair (``\\uD83D\\uDE00``) and
every other character as raw UTF-8: :func:`airconnect.core.data.json_string`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from airconnect.core.config import JSON_CONVERTER, STRING_CONVERTER
from airconnect.core.data import json_string
from airconnect.core.errors import DataError

_STRING_ENVELOPE_HEAD: Final = b'{"schema":{"type":"string","optional":false},"payload":'
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: The bytes JSON escapes in a string (``"``, ``\\``, control characters); ``\n`` is left out
#: because it separates lines. A ``\r`` is one of them, so CRLF text never takes the plain path.
#: So are the lead bytes of characters beyond U+FFFF, which Jackson writes as escaped surrogates.
_JSON_SPECIAL: Final = re.compile(rb'[\x00-\x09\x0b-\x1f"\\\xf0-\xf4]')


def plain_lines(data: bytes) -> bool:
    """Whether every line of ``data`` (``\n``-separated) is valid UTF-8 with no character that
    JSON escapes and no ``\r``: then :meth:`StringValueWriter.plain_values` applies."""
    if _JSON_SPECIAL.search(data):
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class StringValueWriter:
    """Turns a text line into a record value, as the configured converter would."""

    def __init__(self, converter: str = JSON_CONVERTER, schemas_enable: bool = True):
        if converter not in (JSON_CONVERTER, STRING_CONVERTER):
            raise ValueError(f"unsupported converter {converter!r}")
        self.converter = converter
        self.schemas_enable = schemas_enable

    def __call__(self, text: str) -> bytes:
        if self.converter == STRING_CONVERTER:
            return text.encode("utf-8")
        encoded = json_string(text).encode("utf-8")
        if self.schemas_enable:
            return _STRING_ENVELOPE_HEAD + encoded + b"}"
        return encoded

    def plain_values(self, lines: list[bytes]) -> list[bytes]:
        """The values of ``lines`` that passed :func:`plain_lines`, without decoding them: byte for
        byte ``[self(line.decode("utf-8")) for line in lines]`` (a plain line's JSON string is the
        line between quotes, and its UTF-8 text is the line itself)."""
        if self.converter == STRING_CONVERTER:
            return lines
        if self.schemas_enable:
            head = _STRING_ENVELOPE_HEAD + b'"'
            return [head + line + b'"}' for line in lines]
        return [b'"' + line + b'"' for line in lines]


_STRING_ENVELOPE_OPEN: Final = _STRING_ENVELOPE_HEAD + b'"'
_STRING_ENVELOPE_CLOSE: Final = b'"}'
#: What can make a JSON string's text differ from its bytes: escapes, and raw control
#: characters (which make the document invalid JSON).
_STRING_SPECIAL: Final = re.compile(rb'[\x00-\x1f"\\]')


def plain_payload(value: bytes | None) -> bytes | None:
    """The UTF-8 payload of a string envelope in JsonConverter's exact form whose payload has no
    escape or control character (what airconnect's and Kafka Connect's file sources write for
    plain lines), without parsing it; ``None`` for any other value, which
    :func:`payload_text` handles. When it is not ``None`` it equals
    ``payload_text(value).encode("utf-8")``."""
    if (value is None or not value.startswith(_STRING_ENVELOPE_OPEN)
            or not value.endswith(_STRING_ENVELOPE_CLOSE) or len(value) < len(_STRING_ENVELOPE_OPEN) + 2):
        return None
    payload = value[len(_STRING_ENVELOPE_OPEN):-2]
    if _STRING_SPECIAL.search(payload):
        return None
    if not payload.isascii():
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return payload


def payload_text(value: bytes | None) -> str | None:
    """The text a file sink writes for a record value.

    Accepts JsonConverter envelopes (``{"schema": ..., "payload": ...}``), schemaless JSON
    strings and plain strings (StringConverter). A non-string payload is written as compact
    JSON. ``None`` (a tombstone) returns ``None``.
    """
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"record value is not valid UTF-8 at byte {exc.start}") from None
    stripped = text.lstrip()
    if stripped[:1] in ('{', '"'):
        try:
            doc: Any = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict) and set(doc) == {"schema", "payload"}:
            doc = doc["payload"]
            if doc is None:
                return None
        if isinstance(doc, str):
            return doc
        return _dumps(doc)
    return text
