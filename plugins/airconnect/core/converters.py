"""Kafka Connect's converters, byte for byte: JsonConverter (with or without schemas) and
StringConverter.

JsonConverter with ``schemas.enable=true`` writes a string as::

    {"schema":{"type":"string","optional":false},"payload":"ITEM001,SHOP001,929,2018-10-01 01:01:01"}

Jackson, which Connect uses, escapes ``"``, ``\\`` and control characters and writes every
other character as raw UTF-8; ``json.dumps(ensure_ascii=False)`` with compact separators does
the same.
"""

from __future__ import annotations

import json
from typing import Any, Final

from airconnect.core.config import JSON_CONVERTER, STRING_CONVERTER
from airconnect.core.errors import DataError

_STRING_ENVELOPE_HEAD: Final = b'{"schema":{"type":"string","optional":false},"payload":'
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
        encoded = _dumps(text).encode("utf-8")
        if self.schemas_enable:
            return _STRING_ENVELOPE_HEAD + encoded + b"}"
        return encoded


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
