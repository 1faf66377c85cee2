"""Rows into Kafka Connect records: column types, and the row writer (compiled, and the plain loop it equals)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from airconnect.connectors.jdbc.dialect import Dialect
from airconnect.connectors.jdbc.offset import UTC
from airconnect.core.errors import DataError
from airconnect.core.jsonexact import encode_str, iso_utc

# ----------------------------------------------------------------------------- columns

@dataclass
class Column:
    name: str
    schema: dict[str, Any]
    write: Callable[[Any], str]  # value (not None) -> JSON text
    naive_ts: bool = False
    # The same as ``write``, as a Python expression over ``{v}`` for the compiled row writer
    # (names it uses are in _INLINE_NAMES, ``{w}`` is ``write``); None: call ``write``.
    inline: str | None = None


_dumps_str = json.JSONEncoder(ensure_ascii=False).encode
_ZERO: Final = dt.timedelta(0)


def _is_utc(zone: dt.tzinfo) -> bool:
    """UTC all year (a zone with summer time is not, even if its winter offset is 0)."""
    return all(zone.utcoffset(dt.datetime(2000, m, 1)) == _ZERO for m in (1, 7))


def _ts_writer(zone: dt.tzinfo, naive: bool) -> Callable[[Any], str]:
    naive_zone = zone if naive else UTC
    naive_is_utc = _is_utc(naive_zone)
    datetime = dt.datetime

    def write(v: Any) -> str:
        if v.__class__ is datetime and v.year >= 1000:
            # The common cases without a conversion: a naive UTC value (MariaDB in a UTC session)
            # or one whose zone is UTC (PostgreSQL). isoformat gives "YYYY-MM-DDTHH:MM:SS.ffffff"
            # first; iso_utc below is the general form and gives the same text.
            tz = v.tzinfo
            if tz is None:
                if naive_is_utc:
                    return '"' + v.isoformat(timespec="microseconds") + 'Z"'
            elif tz is UTC or v.utcoffset() == _ZERO:
                return '"' + v.isoformat(timespec="microseconds")[:26] + 'Z"'
        if isinstance(v, dt.datetime):
            if v.tzinfo is None:
                v = v.replace(tzinfo=naive_zone)
            return '"' + iso_utc(v) + '"'
        return _dumps_str(str(v))
    return write


def _ts_inline(zone: dt.tzinfo, naive: bool) -> str:
    """The compiled row writer's form of :func:`_ts_writer`: its commonest fast path inline (a
    value in UTC, or naive in a UTC session), the call otherwise."""
    naive_is_utc = _is_utc(zone if naive else UTC)
    utc = "({v}.tzinfo is _UTC or {v}.tzinfo is None)" if naive_is_utc else "{v}.tzinfo is _UTC"
    return ("'\"' + {v}.isoformat(timespec='microseconds')[:26] + 'Z\"' "
            "if {v}.__class__ is _datetime and " + utc + " and {v}.year >= 1000 else {w}({v})")


def _decimal(v: Any) -> str:
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise DataError(f"the DECIMAL value {v} cannot be exported exactly")
        return str(v)
    return str(v)


def _int(v: Any) -> str:
    return str(int(v))


def _str(v: Any) -> str:
    return _dumps_str(v if isinstance(v, str) else str(v))


_INLINE_NAMES: Final = {"_encode_str": encode_str, "_int": _int, "_str": _str, "int": int, "str": str,
                        "_UTC": UTC, "_datetime": dt.datetime}


def _bytes(v: Any) -> str:
    return '"' + base64.b64encode(bytes(v)).decode() + '"'


def _float(v: Any) -> str:
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        raise DataError(f"the floating-point value {f} has no JSON form")
    return repr(f)


_PG_TYPES: Final = {
    16: "boolean", 20: "int64", 21: "int16", 23: "int32", 26: "int64", 700: "float32", 701: "float64", 1700: "decimal",
    1114: "timestamp_naive", 1184: "timestamp", 1082: "date", 17: "bytes",
}
_MYSQL_TYPES: Final = {
    0: "decimal", 246: "decimal", 1: "int16", 2: "int16", 3: "int32", 9: "int32", 8: "int64", 4: "float32", 5: "float64",
    12: "timestamp_naive", 7: "timestamp", 10: "date", 13: "int32", 16: "int64",
}


def describe_columns(dialect: Dialect, description: Sequence[Sequence[Any]], zone: dt.tzinfo,
                     nullable: Mapping[str, bool]) -> list[Column]:
    columns = []
    types = _PG_TYPES if dialect.name == "postgres" else _MYSQL_TYPES
    for d in description:
        name, type_code = d[0], d[1]
        precision, scale = (d[4], d[5]) if len(d) > 5 else (None, None)
        if dialect.name == "mysql" and type_code in (0, 246) and d[3]:
            # mysqlclient reports the display length: digits + sign + decimal point.
            precision = d[3] - 1 - (1 if scale else 0)
        kind = types.get(type_code, "string")
        optional = nullable.get(name, True)
        schema: dict[str, Any] = {"type": "string", "optional": optional}
        write: Callable[[Any], str] = _str
        inline: str | None = "_encode_str({v}) if {v}.__class__ is str else _str({v})"
        naive = False
        if kind in ("int16", "int32", "int64"):
            schema["type"], write = kind, _int
            inline = "str({v}) if {v}.__class__ is int else _int({v})"
        elif kind == "boolean":
            schema["type"], write, inline = "boolean", lambda v: "true" if v else "false", None  # noqa: E731
        elif kind in ("float32", "float64"):
            schema["type"], write, inline = kind, _float, None
        elif kind == "decimal":
            schema.update({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                           "parameters": {"scale": str(scale if scale is not None and scale >= 0 else 0)}})
            if precision:
                schema["parameters"]["connect.decimal.precision"] = str(precision)
            write, inline = _decimal, None
        elif kind in ("timestamp", "timestamp_naive"):
            naive = kind == "timestamp_naive"
            schema.update({"name": "io.airconnect.Timestamp", "version": 1,
                           "doc": "ISO-8601 in UTC with microseconds"})
            write, inline = _ts_writer(zone, naive), _ts_inline(zone, naive)
        elif kind == "date":
            schema.update({"name": "io.airconnect.Date", "version": 1})
            write, inline = (lambda v: '"' + v.isoformat() + '"'), None  # noqa: E731
        elif kind == "bytes":
            schema["type"], write, inline = "bytes", _bytes, None
        schema["field"] = name
        columns.append(Column(name, schema, write, naive, inline))
    return columns


def _envelope_ends(columns: Sequence[Column], record_name: str, envelope: bool) -> tuple[str, str]:
    """What comes before and after a row's payload fields: JsonConverter's envelope with the
    struct schema (built once), or just the braces without schemas."""
    if not envelope:
        return "{", "}"
    schema = json.dumps({"type": "struct", "fields": [c.schema for c in columns], "optional": False,
                         "name": record_name}, separators=(",", ":"), ensure_ascii=False)
    return '{"schema":' + schema + ',"payload":{', "}}"


def value_writer(columns: Sequence[Column], record_name: str, envelope: bool,
                  indexes: Sequence[int] | None = None) -> Callable[[Sequence[Any]], bytes]:
    """``row -> JsonConverter bytes`` for ``columns`` (the row's values at ``indexes``, by default
    all of them in order): the schema envelope (built once) and the payload struct.

    The writer is compiled into one function per column set, like ``dataclasses`` and
    ``namedtuple`` build theirs: per row it unpacks the values and formats each inline, with no
    loop, no per-column call for text and whole numbers, and one string build. It writes exactly
    what ``value_writer_reference`` writes (the unit tests compare them).
    """
    head, tail = _envelope_ends(columns, record_name, envelope)
    env: dict[str, Any] = dict(_INLINE_NAMES)
    if indexes is None:
        lines = [f"    {''.join(f'v{i}, ' for i in range(len(columns)))}= row"]
    else:
        lines = [f"    v{i} = row[{j}]" for i, j in enumerate(indexes)]
    pieces = ["_head"]
    env["_head"] = head
    for i, c in enumerate(columns):
        env[f"_p{i}"] = ("," if i else "") + _dumps_str(c.name) + ":"
        env[f"_w{i}"] = c.write
        expr = c.inline.format(v=f"v{i}", w=f"_w{i}") if c.inline else f"_w{i}(v{i})"
        lines.append(f"    s{i} = 'null' if v{i} is None else ({expr})")
        pieces += [f"_p{i}", f"s{i}"]
    env["_tail"] = tail
    pieces.append("_tail")
    lines.append("    return (" + " + ".join(pieces) + ").encode()")
    names = ", ".join(env)
    src = f"def _make({names}):\n  def write(row):\n" + "\n".join("  " + ln for ln in lines) + "\n  return write\n"
    ns: dict[str, Any] = {}
    exec(compile(src, f"<airconnect row writer {record_name}>", "exec"), ns)  # noqa: S102 - code built above, no input text
    return ns["_make"](**env)


def value_writer_reference(columns: Sequence[Column], record_name: str, envelope: bool) -> Callable[[Sequence[Any]], bytes]:
    """The plain form of :func:`value_writer`: a loop over the columns."""
    prefixes = [_dumps_str(c.name) + ":" for c in columns]
    writers = [c.write for c in columns]
    head, tail = _envelope_ends(columns, record_name, envelope)
    pairs = list(zip(prefixes, writers))

    def write(row: Sequence[Any]) -> bytes:
        return (head + ",".join([p + ("null" if v is None else w(v)) for (p, w), v in zip(pairs, row)]) + tail).encode()
    return write
