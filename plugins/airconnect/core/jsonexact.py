"""JSON that keeps DECIMAL values exact.

``loads`` parses numbers with a fraction or exponent as :class:`decimal.Decimal`; ``dumps``
writes a ``Decimal`` as a JSON number with exactly its digits (``12.50`` stays ``12.50``), like
Kafka Connect's JsonConverter with ``decimal.format=NUMERIC``. Output is compact and, for the
same input, byte-identical (key order is preserved, not sorted).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

from airconnect.core.data import json_string

# json's C string encoder: a str as JSON text, non-ASCII kept (what
# JSONEncoder(ensure_ascii=False).encode calls for a str, without its Python frame).
_c_encode_str = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
# Characters beyond U+FFFF: Jackson (Kafka Connect's JsonConverter) writes each as an escaped
# surrogate pair, json's encoder as raw UTF-8.
_BEYOND_BMP = re.compile("[\U00010000-\U0010FFFF]")


def encode_str(text: str) -> str:
    """``text`` as a JSON string, byte for byte as Jackson writes it: json's C encoder, unless the
    text has a control character escaped as ``\\u00XX`` (Jackson's hex is upper-case) or a
    character beyond U+FFFF; those take :func:`airconnect.core.data.json_string`."""
    encoded = _c_encode_str(text)
    if "\\u00" in encoded or (not text.isascii() and _BEYOND_BMP.search(text) is not None):
        return json_string(text)
    return encoded


_keys: dict[str, str] = {}  # '"name":' of the keys seen (rows repeat them), up to _MAX_KEYS
_MAX_KEYS = 10000


_decoder = json.JSONDecoder(parse_float=Decimal)


def loads(data: bytes | str) -> Any:
    """``json.loads(data, parse_float=Decimal)``, with one decoder for every call."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    elif isinstance(data, str) and data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    return _decoder.decode(data)


def raw_decode(text: str, index: int = 0) -> tuple[Any, int]:
    """The JSON value that starts at ``text[index]`` (as :func:`loads` parses it), and where it ends."""
    return _decoder.raw_decode(text, index)


def dumps(obj: Any) -> str:
    """Compact JSON; ``Decimal`` as exact numbers, datetimes as ISO-8601 (UTC with ``Z``)."""
    if type(obj) is dict:
        flat = _flat_object(obj)
        if flat is not None:
            return flat
    parts: list[str] = []
    _write(obj, parts.append)
    return "".join(parts)


def _flat_object(obj: dict[Any, Any]) -> str | None:
    """The common case, an object of strings, integers, decimals and nulls (a database row),
    written without recursion; ``None`` when a value is of another type. Same text as
    :func:`_write`."""
    parts: list[str] = []
    append = parts.append
    for k, v in obj.items():
        t = type(v)
        if t is str:
            text = encode_str(v)
        elif t is int:
            text = str(v)
        elif t is Decimal:
            if not v.is_finite():
                raise ValueError(f"{v} cannot be written as a JSON number")
            text = str(v)
        elif v is None:
            text = "null"
        else:
            return None
        name = _keys.get(k)
        if name is None:
            name = encode_str(k if type(k) is str else str(k)) + ":"
            if type(k) is str and len(_keys) < _MAX_KEYS:
                _keys[k] = name
        append(name + text)
    return "{" + ",".join(parts) + "}"


def _write(obj: Any, out: Any) -> None:
    if obj is None:
        out("null")
    elif obj is True:
        out("true")
    elif obj is False:
        out("false")
    elif isinstance(obj, str):
        out(encode_str(obj))
    elif isinstance(obj, int):
        out(str(obj))
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"{obj} cannot be written as a JSON number")
        out(str(obj))
    elif isinstance(obj, float):
        out(json.dumps(obj))
    elif isinstance(obj, dict):
        out("{")
        first = True
        for k, v in obj.items():
            if not first:
                out(",")
            first = False
            out(encode_str(str(k)))
            out(":")
            _write(v, out)
        out("}")
    elif isinstance(obj, (list, tuple)):
        out("[")
        for i, v in enumerate(obj):
            if i:
                out(",")
            _write(v, out)
        out("]")
    elif isinstance(obj, dt.datetime):
        out('"' + iso_utc(obj) + '"')
    elif isinstance(obj, dt.date):
        out('"' + obj.isoformat() + '"')
    else:
        raise TypeError(f"cannot write {type(obj).__name__} as JSON")


_UTC = dt.timezone.utc


def iso_utc(value: dt.datetime) -> str:
    """``2018-10-31T23:30:00.123456Z``: always UTC, always microseconds."""
    if value.tzinfo is not None and value.tzinfo is not _UTC:
        value = value.astimezone(_UTC)
    if value.year < 1000:  # strftime's %Y does not pad years below 1000 here; keep its form
        return value.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # isoformat is much faster than strftime: "YYYY-MM-DDTHH:MM:SS.ffffff" is its first 26 characters.
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def parse_timestamp(value: Any) -> dt.datetime:
    """A record timestamp as an aware UTC datetime: ISO-8601 text (``Z`` or offset; naive = UTC),
    or Kafka Connect's Timestamp logical type (epoch milliseconds)."""
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=int(value))
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
        return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc)
    raise ValueError(f"not a timestamp: {value!r}")
