"""Rows into Kafka Connect records: column types, the row writer (compiled, and the plain loop it
equals), and the fast path that takes DECIMAL and timestamp values' JSON text straight from the
database's text while fetching (:class:`Fragments`)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, cast

from airconnect.connectors.jdbc.dialect import Dialect
from airconnect.connectors.jdbc.offset import UTC
from airconnect.core.data import json_string
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
    kind: str = "string"  # what describe_columns made of its type: int64, decimal, timestamp_naive, ...


#: A JSON string as Connect's JsonConverter (Jackson) writes it: characters beyond U+FFFF as escaped
#: surrogate pairs, control characters in upper-case hex, everything else raw UTF-8.
_dumps_str = json_string
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
        columns.append(Column(name, schema, write, naive, inline, kind))
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


# ----------------------------------------------------------------------------- many rows at once

def values_writer(columns: Sequence[Column], record_name: str, envelope: bool, indexes: Sequence[int] | None = None,
                  fragments: Fragments | None = None) -> Callable[[Sequence[Sequence[Any]]], list[bytes]]:
    """``rows -> [JsonConverter bytes]``: :func:`value_writer` for a whole fetched chunk, one list
    comprehension compiled per column set (no call per row), each record one ``str.join``.

    With ``fragments`` (the cursor's rows were fetched with :meth:`Fragments.installed`), a
    column the fetch turned into JSON text (a ``str`` in a DECIMAL or timestamp column) is
    written as it is; any other value of it (what the driver made of a value the fast path left
    alone) goes through the column's writer, as in :func:`value_writer`. Without ``fragments``
    it writes exactly what :func:`value_writer` writes for each row.
    """
    head, tail = _envelope_ends(columns, record_name, envelope)
    env: dict[str, Any] = dict(_INLINE_NAMES)
    env.update({"_join": "".join, "_head": head, "_tail": tail})
    if indexes is None:
        refs = [f"v{i}" for i in range(len(columns))]
        target = "(" + "".join(f"{r}, " for r in refs) + ")"
    else:
        refs = [f"r[{j}]" for j in indexes]
        target = "r"
    items = ["_head"]
    for i, c in enumerate(columns):
        env[f"_p{i}"] = ("," if i else "") + _dumps_str(c.name) + ":"
        env[f"_w{i}"] = c.write
        inline = c.inline or "{w}({v})"
        if fragments is not None and fragments.casts(c):
            inline = "{v} if {v}.__class__ is str else (" + inline + ")"
        expr = inline.format(v=refs[i], w=f"_w{i}")
        items += [f"_p{i}", f"('null' if {refs[i]} is None else ({expr}))"]
    items.append("_tail")
    body = f"[_join(({', '.join(items)},)).encode() for {target} in rows]"
    names = ", ".join(env)
    src = f"def _make({names}):\n  def write_all(rows):\n    return {body}\n  return write_all\n"
    ns: dict[str, Any] = {}
    exec(compile(src, f"<airconnect rows writer {record_name}>", "exec"), ns)  # noqa: S102 - code built above, no input text
    return cast(Callable[[Sequence[Sequence[Any]]], list[bytes]], ns["_make"](**env))


# ----------------------------------------------------------------------------- the fast path: JSON text from the database's text

#: The kinds whose values the fetch can turn into their JSON text (the others are cheap already:
#: the drivers make ints and text in C, and the writer formats them inline).
FRAGMENT_KINDS: Final = ("decimal", "timestamp", "timestamp_naive")
_DIGITS: Final = "0123456789"
_ZEROS: Final = ["0" * n for n in range(7)]
#: The last day of each month in a year without Feb 29 (MySQL/MariaDB can store invalid dates;
#: mysqlclient reads them as None, so the fast path leaves anything after these alone).
_LAST_DAY: Final = {f"{m:02d}": f"{d:02d}" for m, d in zip(range(1, 13), (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31))}


def _decimal_text(s: str) -> bool:
    """The database's text of a DECIMAL is what ``str(Decimal(text))`` writes: digits with at
    most 6 after the point (more can turn into exponent form, ``0E-7``), no NaN or infinity."""
    if not s or s[-1] not in _DIGITS:
        return False
    dot = s.find(".")
    return dot < 0 or len(s) - dot <= 7


def _ts_text(s: str, n: int) -> str | None:
    """``"YYYY-MM-DD HH:MM:SS[.f{1,6}]"`` (the first ``n`` characters of ``s``; year 1000 to 9999)
    as the writer's ``"YYYY-MM-DDTHH:MM:SS.ffffffZ"``; None for any other form."""
    if s[4] != "-" or s[10] != " " or s[0] == "0" or not ("0" < s[0] <= "9"):
        return None
    if n == 26 and s[19] == ".":
        return '"' + s[:10] + "T" + s[11:26] + 'Z"'
    if n == 19:
        return '"' + s[:10] + "T" + s[11:19] + '.000000Z"'
    if 21 <= n < 26 and s[19] == ".":
        return '"' + s[:10] + "T" + s[11:n] + _ZEROS[26 - n] + 'Z"'
    return None


# The casters run once per value: the commonest form is checked inline (a call costs as much as
# the checks), the rest by the helpers above; each check is a condition of _decimal_text/_ts_text.

def _pg_decimal(fallback: Any) -> Callable[..., Any]:
    def cast(s: str | None, cur: Any) -> Any:
        if s is not None and s and s[-1] in _DIGITS:
            dot = s.find(".")
            if dot < 0 or len(s) - dot <= 7:
                return s
        return fallback(s, cur)
    return cast


def _pg_timestamptz(fallback: Any) -> Callable[..., Any]:
    def cast(s: str | None, cur: Any) -> Any:
        # In the session's UTC (prepare_session): "2018-10-31 23:30:00.123456+00".
        if s is not None:
            if len(s) == 29 and s[26:] == "+00" and s[19] == "." and s[4] == "-" and s[10] == " " and "0" < s[0] <= "9":
                return '"' + s[:10] + "T" + s[11:26] + 'Z"'
            if s[-3:] == "+00" and len(s) >= 22:
                text = _ts_text(s, len(s) - 3)
                if text is not None:
                    return text
        return fallback(s, cur)
    return cast


def _pg_timestamp(fallback: Any) -> Callable[..., Any]:
    def cast(s: str | None, cur: Any) -> Any:
        if s is not None:
            if len(s) == 26 and s[19] == "." and s[4] == "-" and s[10] == " " and "0" < s[0] <= "9":
                return '"' + s[:10] + "T" + s[11:] + 'Z"'
            if len(s) >= 19:
                text = _ts_text(s, len(s))
                if text is not None:
                    return text
        return fallback(s, cur)
    return cast


def _my_decimal(fallback: Any) -> Callable[[Any], Any]:
    def cast(s: Any) -> Any:
        if s.__class__ is str and s and s[-1] in _DIGITS:
            dot = s.find(".")
            if dot < 0 or len(s) - dot <= 7:
                return s
        return fallback(s)
    return cast


def _my_datetime(fallback: Any) -> Callable[[Any], Any]:
    def cast(s: Any) -> Any:
        if s.__class__ is str and len(s) >= 19 and "01" <= s[8:10] <= _LAST_DAY.get(s[5:7], ""):
            if len(s) == 26 and s[19] == "." and s[4] == "-" and s[10] == " " and "0" < s[0] <= "9":
                return '"' + s[:10] + "T" + s[11:] + 'Z"'
            text = _ts_text(s, len(s))
            if text is not None:
                return text
        return fallback(s)
    return cast


@dataclass
class Fragments:
    """The fetch's fast path: the database's text of DECIMAL and timestamp values turned into
    their JSON text while fetching, by type casters on the cursor (psycopg2) or the connection's
    converters during the query (mysqlclient), so the driver makes no ``Decimal`` or ``datetime``
    and the writer copies the text. Only a form whose JSON is known to equal the writer's is
    taken (:func:`_decimal_text`, :func:`_ts_text`: UTC, year 1000-9999, valid dates); any other
    value goes through the driver's own converter and the column's writer, so the bytes are the
    general path's (the unit tests hold the two equal)."""

    dialect: str
    codes: dict[int, Callable[..., Any]]  # type code -> caster
    cast_columns: list[Column] = field(default_factory=list)
    aware: list[Column] = field(default_factory=list)  # PostgreSQL timestamptz: the driver gives aware values

    def casts(self, column: Column) -> bool:
        return any(c is column for c in self.cast_columns)

    def value(self, column: Column, v: Any) -> Any:
        """The value the driver would have given for ``v`` (for offsets and row identities)."""
        if v.__class__ is not str or not self.casts(column):
            return v
        if column.kind == "decimal":
            return Decimal(v)
        # '"YYYY-MM-DDTHH:MM:SS.ffffffZ"' (year 1000-9999: _ts_text)
        value = dt.datetime.strptime(v[1:-2], "%Y-%m-%dT%H:%M:%S.%f")
        return value.replace(tzinfo=UTC) if any(c is column for c in self.aware) else value

    @contextmanager
    def installed(self, conn: Any, cur: Any) -> Iterator[None]:
        """Around the query's ``execute``: the casters are in place for its rows."""
        if self.dialect == "postgres":
            import psycopg2.extensions as ext  # noqa: PLC0415 - only with a psycopg2 connection

            for code, fn in self.codes.items():
                ext.register_type(ext.new_type((code,), f"AIRCONNECT_JSON_{code}", fn), cur)
            yield
            return
        converters = conn.converter  # mysqlclient reads it when the query's result is set up
        saved = {code: converters[code] for code in self.codes if code in converters}
        converters.update(self.codes)
        try:
            yield
        finally:
            for code in self.codes:
                if code in saved:
                    converters[code] = saved[code]
                else:
                    converters.pop(code, None)


def fragments_for(dialect: Dialect, conn: Any, description: Sequence[Sequence[Any]], columns: Sequence[Column],
                  zone: dt.tzinfo) -> Fragments | None:
    """The fast path for this connection and these columns, or None (a driver it does not know,
    psycopg 3; or no column it applies to). Naive timestamps only when ``zone`` is UTC all year."""
    module = type(conn).__module__
    utc = _is_utc(zone)
    wanted: dict[int, str] = {}  # type code -> "decimal" | "tz" | "naive"
    cast_columns: list[Column] = []
    aware: list[Column] = []
    for d, c in zip(description, columns):
        code = d[1]
        if c.kind == "decimal":
            wanted[code] = "decimal"
        elif c.kind == "timestamp" and dialect.name == "postgres" and code == 1184:
            wanted[code] = "tz"
            aware.append(c)
        elif c.kind == "timestamp" and dialect.name == "mysql":  # TIMESTAMP: naive text in the session's UTC
            wanted[code] = "naive"
        elif c.kind == "timestamp_naive" and utc:
            wanted[code] = "naive"
        else:
            continue
        cast_columns.append(c)
    if not wanted:
        return None
    codes: dict[int, Callable[..., Any]] = {}
    if dialect.name == "postgres" and module.startswith("psycopg2"):
        import psycopg2.extensions as ext  # noqa: PLC0415 - only with a psycopg2 connection

        own = getattr(conn, "string_types", None) or {}
        for code, what in wanted.items():
            fallback = own.get(code) or ext.string_types.get(code)
            if fallback is None:
                return None
            codes[code] = {"decimal": _pg_decimal, "tz": _pg_timestamptz, "naive": _pg_timestamp}[what](fallback)
    elif dialect.name == "mysql" and module.startswith("MySQLdb") and isinstance(getattr(conn, "converter", None), dict):
        for code, what in wanted.items():
            fallback = conn.converter.get(code)
            if not callable(fallback):
                return None
            codes[code] = (_my_decimal if what == "decimal" else _my_datetime)(fallback)
    else:
        return None
    return Fragments(dialect.name, codes, cast_columns, aware)
