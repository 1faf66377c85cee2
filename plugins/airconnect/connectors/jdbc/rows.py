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
from operator import itemgetter
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


def _refuse_null(column: Column) -> Callable[[], str]:
    """What a NULL in a NOT NULL column is written as: nothing, it is refused (its schema field is
    required, and JsonConverter refuses null there, as Kafka Connect's JDBC source does)."""
    def refuse() -> str:
        raise DataError(f"column {column.name!r} is NOT NULL, yet the database gave no value (MariaDB and MySQL give "
                        "none for a zero date, 0000-00-00); its field is required, so a null cannot be written")
    return refuse


def _null_expr(column: Column, i: int, env: dict[str, Any]) -> str:
    """The writer's expression for a None in ``column``: ``'null'``, or a refusal if it is required."""
    if column.schema.get("optional", True):
        return "'null'"
    env[f"_n{i}"] = _refuse_null(column)
    return f"_n{i}()"


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
        lines.append(f"    s{i} = {_null_expr(c, i, env)} if v{i} is None else ({expr})")
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
    nulls = [(lambda: "null") if c.schema.get("optional", True) else _refuse_null(c) for c in columns]
    head, tail = _envelope_ends(columns, record_name, envelope)
    triples = list(zip(prefixes, writers, nulls))

    def write(row: Sequence[Any]) -> bytes:
        return (head + ",".join([p + (n() if v is None else w(v)) for (p, w, n), v in zip(triples, row)]) + tail).encode()
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
    refs = [f"v{i}" for i in range(len(columns))]
    target = "(" + "".join(f"{r}, " for r in refs) + ")"
    source = "rows"
    if indexes is not None:
        refs = [f"r[{j}]" for j in indexes]
        target = "r"
        if indexes:
            # The row's values at indexes, picked in C, each bound once (a key's expressions use
            # it several times).
            env.update({"_map": map, "_pick": itemgetter(*indexes)})
            refs = [f"v{i}" for i in range(len(indexes))]
            target = refs[0] if len(indexes) == 1 else "(" + "".join(f"{r}, " for r in refs) + ")"
            source = "_map(_pick, rows)"
    items = ["_head"]
    for i, c in enumerate(columns):
        env[f"_p{i}"] = ("," if i else "") + _dumps_str(c.name) + ":"
        env[f"_w{i}"] = c.write
        inline = c.inline or "{w}({v})"
        text = fragments.text_inline(c) if fragments is not None else None
        if text is not None:
            inline, env[f"_f{i}"] = text[0].replace("{f}", f"_f{i}"), text[1]
            env.update(_MY_TEXT_NAMES)
        elif fragments is not None and fragments.casts(c):
            inline = "{v} if {v}.__class__ is str else (" + inline + ")"
        expr = inline.format(v=refs[i], w=f"_w{i}")
        items += [f"_p{i}", f"({_null_expr(c, i, env)} if {refs[i]} is None else ({expr}))"]
    items.append("_tail")
    body = f"[_join(({', '.join(items)},)).encode() for {target} in {source}]"
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


# MySQL/MariaDB: mysqlclient hands a column's text as it came from the server when ``str`` is the
# converter of its type (in C, no Python call per value: _mysql.c's _mysql_field_to_python decodes
# it with the connection's character set, and DECIMAL and DATETIME text is ASCII in every one a
# client can use). The row writers turn that text into JSON inline (:func:`_my_text_inline`); the
# server pads a DATETIME's fraction and a DECIMAL's to the column's digits (the description's
# scale), so one length or one character tells the common form, and any other text (zero and
# invalid dates, years below 1000, a form the description did not announce) goes through the
# driver's own converter and the column's writer: the general path's bytes.

#: "MM-DD" of every valid day in a year without Feb 29 (MariaDB can store zero and invalid dates,
#: which mysqlclient reads as None; Feb 29 takes the driver's converter, which knows leap years).
_MONTH_DAYS: Final = frozenset(f"{m:02d}-{d:02d}" for m, last in zip(range(1, 13), (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31))
                               for d in range(1, last + 1))


def _my_ts_json(s: str) -> str | None:
    """A DATETIME/TIMESTAMP's text in a form the description did not announce, as JSON; None for
    what only the driver's converter reads right (zero and invalid dates, years below 1000)."""
    if len(s) >= 19 and s[5:10] in _MONTH_DAYS and s[:4] >= "1000":
        return _ts_text(s, len(s))
    return None


#: Connection character sets mysqlclient decodes with a codec that reads ASCII as ASCII (UTF-8;
#: cp1252 for latin1). Others it decodes with the codec of the set's MySQL name, which Python may
#: not have ("binary", "dec8"): the fast path is left out for them.
_MY_ASCII_CHARSETS: Final = ("utf8", "latin1", "ascii")
#: The names :meth:`_MyText.inline`'s expressions use.
_MY_TEXT_NAMES: Final = {"_MONTH_DAYS": _MONTH_DAYS, "_decimal_text": _decimal_text, "_my_ts_json": _my_ts_json}


@dataclass(frozen=True)
class _MyText:
    """A column whose values the fetch leaves as the server's text."""

    kind: str  # "decimal" | "timestamp"
    digits: int | None  # the description's scale: a DECIMAL's places, a DATETIME's fraction digits
    driver: Callable[[str], Any]  # mysqlclient's own converter for the type (Decimal, DateTime_or_None)
    write: Callable[[Any], str]  # the column's writer (of what the driver makes)

    def fallback(self, s: str) -> str:
        """The general path: the driver's value, written by the column's writer."""
        v = self.driver(s)
        return "null" if v is None else self.write(v)

    def inline(self) -> str:
        """The text as JSON, a Python expression over ``{v}`` (the text) and ``{f}`` (:meth:`fallback`)."""
        d = self.digits
        if self.kind == "decimal":
            # str(Decimal(text)) is the text when it has at most 6 places (more may turn into an
            # exponent form: 0E-7), and the server writes exactly the column's places.
            if d == 0:
                return "{v} if '.' not in {v} else {f}({v})"
            if d is not None and 0 < d <= 6:
                return f"{{v}} if {{v}}[{-d - 1}:{-d}] == '.' else {{f}}({{v}})"
            return "{v} if _decimal_text({v}) else {f}({v})"
        if d is not None and 0 <= d <= 6:
            # "YYYY-MM-DD HH:MM:SS[.f{d}]": the writer's "YYYY-MM-DDTHH:MM:SS.ffffffZ" when the year
            # is 1000 or later ("1" or more) and the month's day exists.
            length, pad = (19, ".000000") if d == 0 else (20 + d, "0" * (6 - d))
            return (f"'\"' + {{v}}.replace(' ', 'T') + '{pad}Z\"' "
                    f"if len({{v}}) == {length} and {{v}} >= '1' and {{v}}[5:10] in _MONTH_DAYS else {{f}}({{v}})")
        return "_my_ts_json({v}) or {f}({v})"


@dataclass
class Fragments:
    """The fetch's fast path: the database's text of DECIMAL and timestamp values kept as text,
    so the driver makes no ``Decimal`` or ``datetime``. PostgreSQL (psycopg2): type casters on the
    cursor turn the text into its JSON text while fetching, and the writer copies it. MySQL and
    MariaDB (mysqlclient): ``str`` as the connection's converter during the query hands the
    server's text as it is (no Python call per value), and the compiled writers turn it into JSON
    inline (:meth:`text_inline`). Only a form whose JSON is known to equal the writer's is taken
    (UTC, year 1000-9999, valid dates, at most 6 decimal places); any other value goes through the
    driver's own converter and the column's writer, so the bytes are the general path's (the tests
    hold the two equal)."""

    dialect: str
    codes: dict[int, Callable[..., Any]]  # type code -> caster (mysqlclient: str)
    cast_columns: list[Column] = field(default_factory=list)
    aware: list[Column] = field(default_factory=list)  # PostgreSQL timestamptz: the driver gives aware values
    texts: dict[int, _MyText] = field(default_factory=dict)  # MySQL: id(column) -> its text's handling

    def casts(self, column: Column) -> bool:
        return any(c is column for c in self.cast_columns)

    def text_inline(self, column: Column) -> tuple[str, Callable[[str], str]] | None:
        """MySQL: the writer's expression for the column's text (over ``{v}``, and ``{f}``: the
        fallback returned with it); None for a column the fetch gives as JSON text or leaves alone."""
        text = self.texts.get(id(column))
        return None if text is None else (text.inline(), text.fallback)

    def value(self, column: Column, v: Any) -> Any:
        """The value the driver would have given for ``v`` (for offsets and row identities)."""
        if v.__class__ is not str or not self.casts(column):
            return v
        text = self.texts.get(id(column))
        if text is not None:
            return text.driver(v)
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
        return mysql_fragments(description, columns, zone, conn.converter, conn.character_set_name())
    else:
        return None
    return Fragments(dialect.name, codes, cast_columns, aware)


def mysql_fragments(description: Sequence[Sequence[Any]], columns: Sequence[Column], zone: dt.tzinfo,
                    converters: Mapping[int, Any], charset: str) -> Fragments | None:
    """The fast path for a mysqlclient connection whose converters are ``converters`` (its
    ``converter`` dict) and whose character set is ``charset``: DECIMAL, TIMESTAMP, and DATETIME
    when ``zone`` is UTC all year, come as the server's text; None when there is no such column,
    or the character set is one mysqlclient may not decode ASCII text with (the general path
    then reads every value)."""
    if not charset.startswith(_MY_ASCII_CHARSETS):
        return None
    utc = _is_utc(zone)
    codes: dict[int, Callable[..., Any]] = {}
    for d, c in zip(description, columns):
        if c.kind == "decimal" or c.kind == "timestamp" or (c.kind == "timestamp_naive" and utc):
            codes[d[1]] = str
    if not codes:
        return None
    texts: dict[int, _MyText] = {}
    cast_columns: list[Column] = []
    for d, c in zip(description, columns):
        if d[1] not in codes:
            continue
        driver = converters.get(d[1])
        if not callable(driver) or c.kind not in FRAGMENT_KINDS:
            return None  # a type the driver reads in a way of its own: leave the query alone
        digits = d[5] if len(d) > 5 and isinstance(d[5], int) else None
        texts[id(c)] = _MyText("decimal" if c.kind == "decimal" else "timestamp", digits, driver, c.write)
        cast_columns.append(c)
    return Fragments("mysql", codes, cast_columns, [], texts)

