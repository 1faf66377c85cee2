"""JDBC source: reads a table (or a query) incrementally into a topic, like Kafka Connect's
JdbcSourceConnector (bulk, incrementing, timestamp, timestamp+incrementing), exactly once.

Reading
  One query per run over a server-side cursor (PostgreSQL named cursor, MySQL/MariaDB
  ``SSCursor``) fetched ``batch.max.rows`` at a time: memory stays flat as the table grows.
  Table and column names from the definition are always quoted by the dialect's rules
  (PostgreSQL: double quotes, as psycopg's ``sql.Identifier``; MySQL/MariaDB: backticks; the
  quote character doubled inside), so any legal name works (``売上``, ``sales$2018``,
  ``Sales Table``). Validation refuses what cannot be a name (empty, a NUL byte) and names
  holding SQL's ``;``, ``'``, ``--`` or ``/*`` (a pasted statement rather than a name).

Where Kafka Connect loses rows, and what airconnect does instead
  * Rows sharing the last timestamp across a batch boundary (``timestamp`` mode): a batch is
    only cut between two different timestamps, so the offset never splits a group.
  * Transactions that commit late carrying an older timestamp: ``timestamp.delay.interval.ms``
    keeps the newest rows back (``ts < database now - delay``, on the database's clock), and
    ``timestamp.lookback.ms`` re-reads that much before the stored timestamp on every run,
    skipping the rows already delivered (their ``(timestamp, key)`` pairs are kept in the offset
    while they are inside the window). A row that commits later than the lookback cannot be read
    (as in Connect), but it is noticed: see Reconciliation.
  * Microseconds: offsets keep Connect's ``timestamp`` (epoch ms) + ``timestamp_nanos``, so
    microsecond timestamps are compared exactly.
  * NULL timestamps never match ``ts > x``: with several timestamp columns they are
    ``COALESCE``d (as in Connect); rows where all are NULL are counted on every run and
    reported in the log and the task result (``timestamp.null.handling=warn``), or stop the
    run (``fail``). They are never dropped silently.

Reconciliation (not in Connect)
  The offset counts the rows delivered at or below it (``delivered_at_or_below``: each batch
  adds its row count, in the same transaction as the offset). Each run first counts the rows the
  table holds where no read reaches any more: at or below the offset (incrementing: ``id <=``;
  timestamp: ``ts <=``; timestamp+incrementing: ``(ts, id) <=``), with a lookback at or below the
  offset minus the lookback (the delivered rows above it are the offset's ``recent`` list). More
  rows in the table than delivered there are rows that committed behind the offset: the run stops
  with a PermanentError (``reconcile.on.mismatch=fail``) or logs a warning, reports
  ``unaccounted_rows`` and takes the table's count (``warn``). Fewer (deletes, rows updated to a
  later timestamp) are reported as ``deleted_or_moved_rows`` and the count follows the table.
  Bulk mode re-reads everything and has nothing to reconcile; query mode counts over the query.

Records
  Value: a struct with every column, in JsonConverter's schema envelope by default. DECIMAL
  columns use Connect's Decimal logical type with ``decimal.format=NUMERIC`` (exact JSON
  numbers, not base64). Timestamps are ISO-8601 strings in UTC with microseconds
  (``2018-10-31T23:30:00.123456Z``; schema name ``io.airconnect.Timestamp``); naive columns
  (``timestamp``/``DATETIME``) are read in ``db.timezone``. Key: the primary key (or
  ``key.columns``) as a struct. Topic: ``topic.prefix`` + table, each character other than
  ``A-Z a-z 0-9 . _ -`` replaced by ``_`` (Debezium's rule; query mode: the prefix); the record's
  schema name and the offset's partition keep the table's real name.

Offsets (Connect's shape): partition ``{"table": name}`` (query mode ``{"query": "query"}``) ->
``{"timestamp": ms, "timestamp_nanos": ns, "incrementing": id, "delivered_at_or_below": n}``
(with a lookback also ``recent``). Each batch is one Kafka
transaction carrying the batch and its offset (see SourceWriter); bulk mode writes a whole
snapshot in one transaction.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import zoneinfo
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, cast

from airconnect.core.config import ConnectorClass, ConnectorConfig, Key, check_timezone, register
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.jsonexact import encode_str, iso_utc
from airconnect.core.kafka_client import Admin, SourceWriter, journal_key
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

MODES: Final = ("bulk", "incrementing", "timestamp", "timestamp+incrementing")
UTC: Final = dt.timezone.utc
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=UTC)
FETCH_ROWS: Final = 10000  # rows a fetch from the server-side cursor brings at most
#: The keys that hold database names (tables, columns); each is quoted by the dialect's rules.
NAME_KEYS: Final = ("table.whitelist", "incrementing.column.name", "timestamp.column.name", "key.columns")
#: What a name may not hold although a quoted identifier could: SQL's statement separator, string
#: quote and comment marks. Quoting makes them harmless; they are refused because a value holding
#: them is a pasted statement (or an attack), not the name of a table somebody reads.
SQL_MARKS: Final = (";", "'", "--", "/*")
_NOT_IN_TOPICS: Final = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(prefix: str, table: str = "") -> str:
    """``prefix + table`` with every character Kafka refuses in a topic name (all but A-Z a-z 0-9
    . _ -) replaced by ``_``, as Debezium sanitises topic names: ``売上`` -> ``__``,
    ``sales$2018`` -> ``sales_2018``, ``Sales Table`` -> ``Sales_Table``."""
    return _NOT_IN_TOPICS.sub("_", prefix + table)


def _check_names(cfg: ConnectorConfig) -> None:
    name = cfg.name
    for key_name in NAME_KEYS:
        value = cfg[key_name]
        for item in value if isinstance(value, list) else [value] if value else []:
            if "\x00" in item:
                raise ConfigError(f"{item!r} is not a name: it holds a NUL byte", connector=name, key=key_name)
            mark = next((m for m in SQL_MARKS if m in item), None)
            if mark is not None:
                raise ConfigError(
                    f"{item!r} holds {mark!r}; airconnect quotes every name, but refuses SQL's statement separator, "
                    "string quote and comment marks (; ' -- /*) in names: such a value is a pasted statement, not "
                    "a table or column", connector=name, key=key_name)
    tables = cfg["table.whitelist"]
    seen: dict[str, str] = {}  # Kafka's form of a topic (it treats '.' and '_' alike) -> its table
    for table in tables:
        topic = topic_name(cfg["topic.prefix"], table)
        if len(topic) > 249:
            raise ConfigError(f"the topic of table {table!r}, {topic!r}, is longer than Kafka's 249 characters; "
                              "shorten 'topic.prefix'", connector=name, key="table.whitelist")
        other = seen.setdefault(topic.replace(".", "_"), table)
        if other == table and tables.count(table) > 1:
            raise ConfigError(f"lists the table {table!r} twice", connector=name, key="table.whitelist")
        if other != table:
            theirs = topic_name(cfg["topic.prefix"], other)
            why = (f"would both write to the same topic {topic!r}" if theirs == topic else
                   f"would write to topics {theirs!r} and {topic!r}, which collide in Kafka ('.' and '_' are the "
                   "same to it)")
            raise ConfigError(
                f"the tables {other!r} and {table!r} {why}: a topic is topic.prefix + the table's name with every "
                "character other than A-Z a-z 0-9 . _ - replaced by '_'; read one of them with another connector "
                "and another 'topic.prefix'", connector=name, key="table.whitelist")


def _check(cfg: ConnectorConfig) -> None:
    name = cfg.name
    if cfg["errors.tolerance"] != "none":
        raise ConfigError("must be 'none': the JDBC source has no dead-letter topic; a value it cannot convert "
                          "(a NaN or infinite number) stops the run at that row", connector=name, key="errors.tolerance")
    if cfg["connection.url"]:
        raise ConfigError("is not used: airconnect reads the database address and credentials from an "
                          "Airflow Connection; name it with 'db.conn.id'", connector=name, key="connection.url")
    tables, query = cfg["table.whitelist"], cfg["query"]
    if bool(tables) == bool(query):
        raise ConfigError("set exactly one of 'table.whitelist' (tables) and 'query'", connector=name,
                          key="query" if query else "table.whitelist")
    mode = cfg["mode"]
    if "incrementing" in mode and not cfg["incrementing.column.name"]:
        raise ConfigError(f"is required with mode '{mode}'", connector=name, key="incrementing.column.name")
    if "timestamp" in mode and not cfg["timestamp.column.name"]:
        raise ConfigError(f"is required with mode '{mode}'", connector=name, key="timestamp.column.name")
    if cfg["timestamp.lookback.ms"] and "timestamp" not in mode:
        raise ConfigError("only applies to the timestamp modes", connector=name, key="timestamp.lookback.ms")
    _check_names(cfg)


JDBC_SOURCE = register(ConnectorClass(
    name="airconnect.JdbcSource",
    kind="source",
    aliases=("io.confluent.connect.jdbc.JdbcSourceConnector", "JdbcSourceConnector", "JdbcSource"),
    keys=(
        Key("db.conn.id", "string", doc="The Airflow Connection of the database (type postgres or mysql)."),
        Key("connection.url", "string", "", "Kafka Connect's JDBC URL; airconnect uses db.conn.id instead."),
        Key("mode", "string", doc="How new rows are found.", choices=MODES),
        Key("table.whitelist", "names", [], "Tables to read (optionally schema.table), any legal name; one topic each."),
        Key("query", "string", "", "A SELECT to read instead of tables."),
        Key("topic.prefix", "string", doc="Topic = prefix + table name, characters other than A-Z a-z 0-9 . _ - "
            "replaced by '_' (query mode: the prefix)."),
        Key("incrementing.column.name", "string", "", "A strictly increasing column (incrementing modes)."),
        Key("timestamp.column.name", "names", [], "Timestamp column(s), COALESCEd in this order (timestamp modes)."),
        Key("timestamp.delay.interval.ms", "int", 0, "Leave rows newer than the database's now minus this.", minimum=0),
        Key("timestamp.lookback.ms", "int", 0, "Re-read this much before the offset; already-delivered rows are skipped.", minimum=0),
        Key("timestamp.null.handling", "string", "warn", "Rows whose timestamp is NULL: report them, or fail.", choices=("warn", "fail")),
        Key("batch.max.rows", "int", 100000, "Rows per Kafka transaction (one offset commit per batch); they are "
            "fetched and sent 10,000 at a time, so memory does not grow with it.", minimum=1),
        Key("db.timezone", "string", "UTC", "Zone of timestamp columns without a time zone.", check=check_timezone),
        Key("key.columns", "names", [], "Record key columns (default: the table's primary key)."),
        Key("reconcile.on.mismatch", "string", "fail", "When the table holds more rows at or below the offset than "
            "were delivered (rows committed behind the offset, which polling cannot read): stop the run, or warn "
            "and run on.", choices=("fail", "warn")),
    ),
    doc="Reads database tables incrementally, one record per row.",
    check=_check,
))


# ----------------------------------------------------------------------------- dialects

@dataclass(frozen=True)
class Dialect:
    """What differs between PostgreSQL and MySQL/MariaDB for this connector."""

    name: str
    quote_char: str
    now_sql: str
    now_is_utc_naive: bool

    def quote(self, identifier: str, *, dotted: bool = False) -> str:
        """A quoted identifier: PostgreSQL's double quotes (as psycopg's ``sql.Identifier``), or
        MySQL/MariaDB's backticks, the quote character doubled inside. ``dotted``: a table name,
        where a dot separates schema and table (``pos.Sales Table`` -> ```pos`.`Sales Table```)."""
        parts = identifier.split(".") if dotted else [identifier]
        if not all(parts) or "\x00" in identifier:  # validation refuses these first; never build such SQL
            raise ConfigError(f"{identifier!r} is not a name (empty, or it holds a NUL byte)")
        q = self.quote_char
        return ".".join(q + p.replace(q, q + q) + q for p in parts)

    def server_cursor(self, conn: Any, batch: int) -> Any:
        if self.name == "postgres":
            cur = conn.cursor(name="airconnect_stream")
            cur.itersize = batch
            return cur
        import MySQLdb.cursors  # noqa: PLC0415 - only with a MySQL connection

        return conn.cursor(MySQLdb.cursors.SSCursor)

    def prepare_session(self, conn: Any) -> None:
        cur = conn.cursor()
        if self.name == "postgres":
            cur.execute("SET TIME ZONE 'UTC'")
        else:
            cur.execute("SET time_zone = '+00:00'")
        cur.close()

    def primary_key(self, conn: Any, table: str) -> list[str]:
        cur = conn.cursor()
        if self.name == "postgres":
            cur.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)",
                (self.quote(table, dotted=True),),
            )
        else:
            schema, _, name = table.rpartition(".")
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_NAME = 'PRIMARY' "
                "AND TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (schema or None, name),
            )
        cols = [r[0] for r in cur.fetchall()]
        cur.close()
        return cols


DIALECTS: Final = {
    "postgres": Dialect("postgres", '"', "SELECT clock_timestamp()", False),
    "mysql": Dialect("mysql", "`", "SELECT UTC_TIMESTAMP(6)", True),
}


def dialect_of(conn: Any) -> Dialect:
    module = type(conn).__module__
    if module.startswith("psycopg"):  # psycopg2, or psycopg 3 (the Postgres provider's default when installed)
        return DIALECTS["postgres"]
    if module.startswith("MySQLdb"):
        return DIALECTS["mysql"]
    raise PermanentError(f"unsupported database connection {module}.{type(conn).__name__}: airconnect reads PostgreSQL "
                         "(psycopg 3 or psycopg2) and MySQL/MariaDB (mysqlclient)")


def _missing_relation(exc: BaseException) -> bool:
    """The database says the table (or its schema) does not exist."""
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)  # psycopg2 / psycopg 3
    if code in ("42P01", "3F000"):  # undefined_table, invalid_schema_name
        return True
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return bool(args) and args[0] in (1146, 1049)  # MySQL/MariaDB: no such table, no such database


def _detail(exc: BaseException) -> str:
    """The database's message, on one line."""
    text = str(exc).strip()
    return " ".join(line.strip() for line in text.splitlines()[:2]) if text else type(exc).__name__


def _db_error(exc: BaseException, what: str) -> Exception:
    """Map a DB-API error: unreachable/timeouts are transient; missing tables/columns are not."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).strip()
    detail = _detail(exc)
    if "authentication failed" in text or (getattr(exc, "pgcode", None) or "").startswith("28"):
        # PostgreSQL: wrong login or password (SQLSTATE class 28). A retry cannot fix it.
        return PermanentError(f"{what}: {detail}; check the login and password")
    if names & {"OperationalError", "InterfaceError"} and not names & {"ProgrammingError"}:
        code = getattr(exc, "args", [None])[0]
        # MySQL: 1054 unknown column, 1146 no such table are "operational" in mysqlclient.
        if code in (1045, 1044):  # MySQL/MariaDB: access denied
            return PermanentError(f"{what}: {detail}; check the login and password")
        if code in (1054, 1146, 1049):
            return PermanentError(f"{what}: {detail}")
        return TransientError(f"{what}: the database is unreachable or failed: {detail}")
    return PermanentError(f"{what}: {detail}")


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


# ----------------------------------------------------------------------------- offsets

def micros_of(value: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def ts_offset(micros: int) -> dict[str, int]:
    """Kafka Connect's timestamp offset fields: epoch milliseconds + nanoseconds of the second."""
    return {"timestamp": micros // 1000, "timestamp_nanos": (micros % 1_000_000) * 1000}


def ts_micros_from_offset(offset: Mapping[str, Any]) -> int | None:
    ms = offset.get("timestamp")
    if ms is None:
        return None
    nanos = offset.get("timestamp_nanos")
    if nanos is None:
        return int(ms) * 1000
    return (int(ms) // 1000) * 1_000_000 + int(nanos) // 1000


# ----------------------------------------------------------------------------- the connector

@dataclass
class TableResult:
    source: str
    topic: str
    records: int = 0
    batches: int = 0
    null_timestamps: int = 0
    skipped_already_delivered: int = 0
    # The reconciliation at the run's start: rows at or below the stored offset that were never
    # delivered (only with reconcile.on.mismatch=warn: fail stops the run), and rows delivered
    # that are no longer there (deleted, or updated to a later timestamp: not a loss).
    unaccounted_rows: int = 0
    deleted_or_moved_rows: int = 0
    recovered: bool = False
    offset: dict[str, Any] | None = None


@dataclass
class JdbcSourceResult:
    connector: str
    tables: list[TableResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(t.records for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector, "records": self.records, "seconds": self.seconds,
            "null_timestamps": sum(t.null_timestamps for t in self.tables),
            "unaccounted_rows": sum(t.unaccounted_rows for t in self.tables),
            "tables": [{k: v for k, v in t.__dict__.items() if k != "offset"} | {"offset": _public(t.offset)}
                       for t in self.tables],
        }


def _public(offset: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if offset is None else {k: v for k, v in offset.items() if k != "recent"}


class JdbcSource:
    """Reads each configured table (or the query) from its offset, one Kafka transaction per batch."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
                 connect: Callable[[], Any] | None = None):
        if config.cls is not JDBC_SOURCE:
            raise ConfigError(f"is {config.cls.name}, not a JDBC source", connector=config.name, key="connector.class")
        if connect is None:
            raise PermanentError(f"connector '{config.name}': no database connection factory was given")
        self.config = config
        self.name = config.name
        self.mode: str = config["mode"]
        self.kafka = dict(kafka)
        self.connect = connect
        self.offsets = Offsets(store, config.name)
        self.zone = zoneinfo.ZoneInfo(config["db.timezone"])
        self.batch = config["batch.max.rows"]
        self.delay = dt.timedelta(milliseconds=config["timestamp.delay.interval.ms"])
        self.lookback = dt.timedelta(milliseconds=config["timestamp.lookback.ms"])

    def sources(self) -> list[tuple[dict[str, str], str, str]]:
        """(offset partition, FROM clause source, topic) for each table, or the query."""
        prefix = self.config["topic.prefix"]
        if self.config["query"]:
            return [({"query": "query"}, self.config["query"], topic_name(prefix))]
        return [({"table": t}, t, topic_name(prefix, t)) for t in self.config["table.whitelist"]]

    def run(self) -> JdbcSourceResult:
        result = JdbcSourceResult(self.name)
        progress = Progress(log, f"connector '{self.name}'", unit="rows")
        try:
            conn = self.connect()
        except Exception as exc:  # noqa: BLE001 - DB-API modules have no common base class
            raise _db_error(exc, f"connector '{self.name}': connecting to the database of the Airflow Connection "
                                 f"'{self.config['db.conn.id']}'") from None
        try:
            dialect = dialect_of(conn)
            dialect.prepare_session(conn)
            admin = Admin(self.kafka)
            admin.ensure_offsets_topic()
            writer = SourceWriter(self.kafka, self.name)
            try:
                for partition, source, topic in self.sources():
                    admin.ensure_topic(topic)
                    table = TableResult(source if "table" in partition else "query", topic)
                    result.tables.append(table)
                    self._read(conn, dialect, writer, partition, source, topic, table, progress)
            finally:
                writer.close()
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        progress.done()
        result.seconds = round(progress.seconds, 3)
        return result

    # -- one table

    def _from(self, dialect: Dialect, source: str) -> str:
        if self.config["query"]:
            return f"({source}) AS airconnect_q"
        return dialect.quote(source, dotted=True)

    def _ts_expr(self, dialect: Dialect) -> str:
        cols = [dialect.quote(c) for c in self.config["timestamp.column.name"]]
        return cols[0] if len(cols) == 1 else f"COALESCE({', '.join(cols)})"

    def _read(self, conn: Any, dialect: Dialect, writer: SourceWriter, partition: dict[str, str], source: str,
              topic: str, table: TableResult, progress: Progress) -> None:
        what = f"connector '{self.name}' ({table.source})"
        stored = self.offsets.get(partition)
        self._check_offset(partition, stored)
        key = journal_key(self.name, partition)
        offset = writer.recover(key, stored)
        if offset != stored:
            log.warning("%s: the previous run committed a batch but died before saving its offset; resuming after it", what)
            table.recovered = True
            self._save(partition, offset)
        frm = self._from(dialect, source)
        cur = conn.cursor()
        try:
            try:
                cur.execute(f"SELECT * FROM {frm} WHERE 1 = 0")
                description = cur.description
            except Exception as exc:  # noqa: BLE001
                raise self._source_error(exc, source, what) from None
            try:
                nullable = self._nullable(conn, dialect, source)
                key_cols = self.config["key.columns"] or (
                    dialect.primary_key(conn, source) if not self.config["query"] else [])
            except Exception as exc:  # noqa: BLE001
                raise _db_error(exc, f"{what}: reading the table's description") from None
            names = [d[0] for d in description]
            columns = describe_columns(dialect, description, self.zone, nullable)
            self._check_columns(columns, key_cols, source)
            now = None
            if "timestamp" in self.mode:
                try:
                    cur.execute(f"SELECT COUNT(*) FROM {frm} WHERE {self._ts_expr(dialect)} IS NULL")
                    table.null_timestamps = int(cur.fetchone()[0])
                    now = self._db_now(cur, dialect)
                except Exception as exc:  # noqa: BLE001
                    raise _db_error(exc, f"{what}: reading the database clock") from None
            # Rows delivered at or below the offset, as the table counts them now (None: nothing to
            # compare, bulk mode or no offset yet); the run's first commit continues from it.
            baseline = self._reconcile(cur, dialect, frm, offset, columns, table, source)
        finally:
            cur.close()
        if table.null_timestamps:
            msg = (f"{what}: {table.null_timestamps} row(s) have a NULL {'/'.join(self.config['timestamp.column.name'])} "
                   "and cannot be read in a timestamp mode; give them a timestamp, or add a fallback column to "
                   "timestamp.column.name")
            if self.config["timestamp.null.handling"] == "fail":
                raise DataError(msg)
            log.warning("%s (timestamp.null.handling=warn: reported on every run, never dropped silently)", msg)

        record_name = table.source if "table" in partition else topic
        to_value = value_writer(columns, record_name, self.config["value.converter.schemas.enable"])
        key_idx = [names.index(c) for c in key_cols]
        to_key = self._key_writer([columns[i] for i in key_idx], key_idx) if key_idx else None

        sql, params, order = self._query(dialect, frm, offset, now, columns)
        ts_idx = names.index(self.config["timestamp.column.name"][0]) if "timestamp" in self.mode else None
        inc_idx = names.index(self.config["incrementing.column.name"]) if "incrementing" in self.mode else None
        ts_cols = [names.index(c) for c in self.config["timestamp.column.name"]] if "timestamp" in self.mode else []
        naive_ts = columns[ts_idx].naive_ts if ts_idx is not None else False
        # Counted: identical rows of a table without a key share one (timestamp, row) pair, and the
        # reconciliation needs how many rows were delivered inside the window.
        recent: Counter[tuple[int, str]] = Counter((int(m), str(k)) for m, k in (offset or {}).get("recent", []))
        log.info("%s: %s -> %s from %s", what, self.mode, topic, _public(offset) or "the beginning")

        def ident(row: Sequence[Any]) -> str:
            """What identifies a row inside the lookback window: its key (or incrementing id)."""
            if len(key_idx) == 1:
                return str(row[key_idx[0]])
            if key_idx:
                return "|".join([str(row[i]) for i in key_idx])
            if inc_idx is not None:
                return str(row[inc_idx])
            return to_value(row).decode()

        fetch = min(self.batch, FETCH_ROWS)
        cur = dialect.server_cursor(conn, fetch)
        try:
            try:
                cur.execute(sql + order, params)
            except Exception as exc:  # noqa: BLE001
                raise _db_error(exc, f"{what}: querying") from None
            if self.mode == "bulk":
                self._bulk(cur, fetch, writer, topic, to_value, to_key, table, progress, what)
                return
            # A batch is one transaction, streamed: each fetched chunk's records go to Kafka at once
            # (memory holds a chunk, whatever batch.max.rows is), and the batch's end commits them
            # with the new offset. A crash or an error before the commit leaves none of them visible.
            values: list[bytes] = []
            keys: list[bytes | None] = []
            batch_rows: list[Sequence[Any]] = []  # with a lookback window: the batch's rows still inside it
            count = 0  # rows in the batch
            # Rows delivered at or below the offset (its "delivered_at_or_below"): every row a batch
            # delivers is at or below the offset that batch commits, so it grows by the batch's count.
            delivered_total = baseline or 0
            in_txn = False
            previous = offset
            last_row: Sequence[Any] | None = None  # the batch's last row: its timestamp and id make the offset
            lookback_us = int(self.lookback.total_seconds() * 1_000_000)

            ts_i = cast(int, ts_idx)  # row_micros is called in the timestamp modes only

            def row_micros(row: Sequence[Any]) -> int:
                raw_ts = row[ts_i] if row[ts_i] is not None or len(ts_cols) == 1 else next(
                    (row[i] for i in ts_cols if row[i] is not None), None)
                return micros_of(self._aware(raw_ts, naive_ts))

            def send() -> None:
                nonlocal in_txn, batch_rows
                if values:
                    if not in_txn:
                        writer.begin()
                        in_txn = True
                    writer.produce_many(topic, values, keys)
                    values.clear()
                    keys.clear()
                if batch_rows and last_row is not None:
                    # Rows at or before the window's start as of the newest row cannot be in the
                    # next run's window either: forget them.
                    batch_rows = rows_after(row_micros(last_row) - lookback_us)

            def rows_after(horizon: int) -> list[Sequence[Any]]:
                """The batch's rows newer than ``horizon`` (its tail: rows come in timestamp order)."""
                cut = len(batch_rows)
                while cut > 0 and row_micros(batch_rows[cut - 1]) > horizon:
                    cut -= 1
                return batch_rows[cut:]

            def commit() -> dict[str, Any] | None:
                nonlocal count, in_txn, batch_rows, delivered_total
                assert last_row is not None
                send()
                last_ts = row_micros(last_row) if ts_idx is not None else None
                stored_ts = ts_micros_from_offset(previous or {})
                delivered: list[tuple[int, str]] = []
                if batch_rows and last_ts is not None:
                    # The rows the next run's lookback query reads again (_commit keeps just these).
                    horizon = max(last_ts, stored_ts if stored_ts is not None else last_ts) - lookback_us
                    delivered = [(row_micros(row), ident(row)) for row in rows_after(horizon)]
                delivered_total += count
                new = self._commit(writer, key, partition, count, delivered, previous, last_ts,
                                   last_row[inc_idx] if inc_idx is not None else None, stored_ts, recent, table,
                                   progress, delivered_total)
                count, in_txn, batch_rows = 0, False, []
                return new

            # Per row only what every row needs: its value and key. Timestamps are read for the
            # offset (the batch's last row), at a cut in timestamp mode, for the rows the stored
            # offset remembers as delivered (the window the lookback query reads again: only rows
            # up to its newest timestamp can be among them, and rows come in timestamp order), and
            # for the rows the next run's lookback will read again.
            skip = set(recent) if ts_idx is not None else set()
            # (+2 hours: local times read in a zone with summer time are not quite in order in UTC)
            skip_until = max(m for m, _ in skip) + 2 * 3600 * 1_000_000 if skip else None
            remember = bool(self.lookback) and ts_idx is not None
            timestamp_only = self.mode == "timestamp"
            batch = self.batch
            append_value, append_key = values.append, keys.append
            while True:
                try:
                    rows = cur.fetchmany(fetch)
                except Exception as exc:  # noqa: BLE001
                    raise _db_error(exc, f"{what}: fetching rows") from None
                if not rows:
                    break
                for row in rows:
                    if skip_until is not None:
                        row_ts = row_micros(row)
                        if row_ts > skip_until:
                            skip_until = None  # well past the remembered window: nothing later is in it
                        elif (row_ts, ident(row)) in skip:
                            table.skipped_already_delivered += 1
                            continue
                    # A batch is cut before this row, except inside a group of equal timestamps
                    # in timestamp mode (the offset could not tell the group's rows apart).
                    if count >= batch and not (timestamp_only and row_micros(row) == row_micros(cast(Sequence[Any], last_row))):
                        previous = commit()
                    try:
                        append_value(to_value(row))
                    except DataError as exc:
                        raise DataError(f"{what}: row {ident(row)}: {exc}") from None
                    append_key(to_key(row) if to_key else None)
                    if remember:
                        batch_rows.append(row)
                    last_row = row
                    count += 1
                send()
            if count:
                previous = commit()
            elif (previous is offset and offset is not None and baseline is not None
                  and baseline != offset.get("delivered_at_or_below")):
                # No batch this run, but the count moved (rows deleted, a difference accepted with
                # reconcile.on.mismatch=warn, or an offset from before the count): journal the new
                # count in a transaction of its own, as a batch would.
                previous = {**offset, "delivered_at_or_below": baseline}
                writer.begin()
                writer.commit({key: (previous, offset)})
                self._save(partition, previous)
            table.offset = previous
        finally:
            try:
                cur.close()
            except Exception:  # noqa: BLE001
                pass

    def _bulk(self, cur: Any, fetch: int, writer: SourceWriter, topic: str, to_value: Callable[[Sequence[Any]], bytes],
              to_key: Callable[[Sequence[Any]], bytes] | None, table: TableResult, progress: Progress, what: str) -> None:
        """A whole snapshot in one transaction: a crash mid-snapshot leaves none of it visible."""
        writer.begin()
        while True:
            try:
                rows = cur.fetchmany(fetch)
            except Exception as exc:  # noqa: BLE001
                writer.abort()
                raise _db_error(exc, f"{what}: fetching rows") from None
            if not rows:
                break
            writer.produce_many(topic, [to_value(r) for r in rows], [to_key(r) for r in rows] if to_key else None)
            table.records += len(rows)
            progress.add(len(rows))
        writer.commit({})
        table.batches = 1

    def _source_error(self, exc: BaseException, source: str, what: str) -> Exception:
        """Reading the table's (or the query's) columns failed: a missing table names its key."""
        error = _db_error(exc, f"{what}: reading the table's description")
        if isinstance(error, TransientError):
            return error
        detail = _detail(exc)
        if self.config["query"]:
            return ConfigError(f"the query fails: {detail}", connector=self.name, key="query")
        if _missing_relation(exc):
            return ConfigError(f"table {source} does not exist, or this login cannot see it (misspelt, renamed or "
                               f"dropped?): {detail}", connector=self.name, key="table.whitelist")
        return error

    def _check_columns(self, columns: Sequence[Column], key_cols: Sequence[str], source: str) -> None:
        """Every configured column exists and has a type its key can use; errors name the key."""
        where = "the query's result" if self.config["query"] else f"table {source}"
        by_name = {c.name: c for c in columns}
        listed = ", ".join(by_name)
        ts_cols = list(self.config["timestamp.column.name"]) if "timestamp" in self.mode else []
        inc_cols = [self.config["incrementing.column.name"]] if "incrementing" in self.mode else []
        key_key = "key.columns" if self.config["key.columns"] else "table.whitelist"
        for key_name, wanted in (("incrementing.column.name", inc_cols), ("timestamp.column.name", ts_cols),
                                 (key_key, list(key_cols))):
            missing = [c for c in wanted if c not in by_name]
            if missing:
                raise ConfigError(f"column(s) {', '.join(missing)} not found in {where} (misspelt, renamed or "
                                  f"dropped?); its columns are {listed}", connector=self.name, key=key_name)
        for c in ts_cols:
            if by_name[c].schema.get("name") != "io.airconnect.Timestamp":
                raise ConfigError(f"column {c} of {where} is not a timestamp (its values are "
                                  f"{by_name[c].schema['type']}); name a TIMESTAMP/DATETIME column",
                                  connector=self.name, key="timestamp.column.name")
        for c in inc_cols:
            schema = by_name[c].schema
            whole = schema["type"] in ("int16", "int32", "int64") or (
                schema.get("name") == "org.apache.kafka.connect.data.Decimal" and schema["parameters"]["scale"] == "0")
            if not whole:
                raise ConfigError(f"column {c} of {where} is not a whole-number column (its values are "
                                  f"{'decimal' if schema.get('name') else schema['type']}); name a strictly increasing "
                                  "integer column", connector=self.name, key="incrementing.column.name")

    def _reconcile(self, cur: Any, dialect: Dialect, frm: str, offset: Mapping[str, Any] | None,
                   columns: Sequence[Column], table: TableResult, source: str) -> int | None:
        """Compares the rows the table holds where no read reaches any more (at or below the stored
        offset; with a lookback, at or below the offset minus the lookback) with the rows delivered
        there: more in the table is a row that committed behind the offset, which a polling source
        cannot read. Returns the offset's ``delivered_at_or_below`` the run goes on from; None when
        there is nothing to compare (bulk mode, no offset yet)."""
        if self.mode == "bulk" or not offset:
            return None
        counted = self._at_or_below(dialect, frm, offset, columns)
        if counted is None:
            return None
        sql, params, position, in_window = counted
        try:
            cur.execute(sql, params)
            in_table = int(cur.fetchone()[0])
        except Exception as exc:  # noqa: BLE001
            raise _db_error(exc, f"connector '{self.name}' ({table.source}): counting the rows at or below the "
                                 "offset") from None
        stored = offset.get("delivered_at_or_below")
        what = "the query" if self.config["query"] else f"table {source}"
        if stored is None:
            log.info("connector '%s', %s: the stored offset has no 'delivered_at_or_below' (it was saved before "
                     "airconnect counted); the reconciliation takes the table's count, %d, as the rows delivered at "
                     "or below %s", self.name, what, in_table, position)
            return in_table + in_window
        delivered = max(stored - in_window, 0)  # at or below the position (the rest are in the lookback window)
        if in_table == delivered:
            return stored
        if in_table < delivered:
            table.deleted_or_moved_rows = delivered - in_table
            log.info("connector '%s', %s: %d row(s) delivered at or below %s are no longer there (deleted, or updated "
                     "to a later timestamp); not a loss: the count follows the table (%d)", self.name, what,
                     delivered - in_table, position, in_table)
            return in_table + in_window
        lost = in_table - delivered
        if "timestamp" in self.mode:
            cause = (f"{lost} row(s) committed after the offset had passed their timestamp (a long write "
                     "transaction, or a row written with an old timestamp), farther back than timestamp.lookback.ms "
                     f"({self.config['timestamp.lookback.ms']} ms) re-reads, and a polling source cannot read them. "
                     "To export them, set timestamp.lookback.ms longer than your longest write transaction and reset "
                     f"the connector (airconnect reset {self.name} --delete-topics: the next run exports every row "
                     "again)")
        else:
            cause = (f"{lost} row(s) got an id at or below the offset but committed after it had moved past (ids are "
                     "given at insert, rows appear at commit), and incrementing mode cannot read them. To export "
                     f"them, reset the connector (airconnect reset {self.name} --delete-topics: the next run exports "
                     "every row again); mode timestamp+incrementing with a timestamp.lookback.ms longer than your "
                     "longest write transaction reads such rows")
        message = (f"connector '{self.name}', {what} ({self.mode} mode): {in_table} row(s) are at or below {position} "
                   f"but {delivered} were delivered: {cause}. To accept the difference and run on, set "
                   "reconcile.on.mismatch=warn. Change data capture, which sees every commit, is planned.")
        if self.config["reconcile.on.mismatch"] == "fail":
            raise PermanentError(message)
        table.unaccounted_rows = lost
        log.warning("%s (reconcile.on.mismatch=warn: this run goes on, reports unaccounted_rows=%d and takes the "
                    "table's count as delivered)", message, lost)
        return in_table + in_window

    def _at_or_below(self, dialect: Dialect, frm: str, offset: Mapping[str, Any],
                     columns: Sequence[Column]) -> tuple[str, list[Any], str, int] | None:
        """Where no read reaches any more: the query counting the rows there, its parameters, the
        position in words, and how many of the offset's delivered rows lie above it (in the
        lookback window, which the next read covers). One indexed count: ``inc <= id``;
        ``ts <= t``; timestamp+incrementing: ``ts <= t`` minus the rows at ``t`` after the id (a
        batch may end inside a group of equal timestamps: the rest of the group is read next);
        with a lookback, ``ts <= t - lookback`` (every delivered row above is in the offset's
        ``recent`` list)."""
        inc_name = self.config["incrementing.column.name"]
        last_inc = offset.get("incrementing")
        if self.mode == "incrementing":
            if last_inc is None:
                return None
            return (f"SELECT COUNT(*) FROM {frm} WHERE {dialect.quote(inc_name)} <= %s", [last_inc],
                    f"the stored offset ({inc_name} <= {last_inc})", 0)
        last = ts_micros_from_offset(offset)
        if last is None:
            return None
        ts = self._ts_expr(dialect)
        ts_names = "/".join(self.config["timestamp.column.name"])
        naive = next((c.naive_ts for c in columns if c.name == self.config["timestamp.column.name"][0]), False)
        lookback_us = int(self.lookback.total_seconds() * 1_000_000)
        if lookback_us:
            horizon = last - lookback_us
            in_window = sum(1 for m, _ in offset.get("recent", []) if int(m) > horizon)
            return (f"SELECT COUNT(*) FROM {frm} WHERE {ts} <= %s", [self._param(horizon, naive)],
                    f"{ts_names} {iso_utc(from_micros(horizon))} (the stored offset, {iso_utc(from_micros(last))}, "
                    "minus timestamp.lookback.ms: no run reads there again)", in_window)
        at = self._param(last, naive)
        if self.mode == "timestamp" or last_inc is None:
            return (f"SELECT COUNT(*) FROM {frm} WHERE {ts} <= %s", [at],
                    f"the stored offset ({ts_names} {iso_utc(from_micros(last))})", 0)
        inc = dialect.quote(inc_name)
        position = f"the stored offset ({ts_names} {iso_utc(from_micros(last))}, {inc_name} {last_inc})"
        if self.config["query"]:  # one pass over the query
            return (f"SELECT COUNT(*) FROM {frm} WHERE {ts} <= %s AND NOT ({ts} = %s AND {inc} > %s)",
                    [at, at, last_inc], position, 0)
        # Two counts an index on the timestamp column answers alone.
        return (f"SELECT (SELECT COUNT(*) FROM {frm} WHERE {ts} <= %s) - "
                f"(SELECT COUNT(*) FROM {frm} WHERE {ts} = %s AND {inc} > %s)", [at, at, last_inc], position, 0)

    def _nullable(self, conn: Any, dialect: Dialect, source: str) -> dict[str, bool]:
        if self.config["query"]:
            return {}
        schema, _, name = source.rpartition(".")
        cur = conn.cursor()
        try:
            if dialect.name == "postgres":
                cur.execute("SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = %s "
                            "AND table_schema = COALESCE(%s, current_schema())", (name, schema or None))
            else:
                cur.execute("SELECT COLUMN_NAME, IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_NAME = %s "
                            "AND TABLE_SCHEMA = COALESCE(%s, DATABASE())", (name, schema or None))
            return {r[0]: r[1] == "YES" for r in cur.fetchall()}
        finally:
            cur.close()

    def _key_writer(self, key_columns: Sequence[Column], indexes: Sequence[int]) -> Callable[[Sequence[Any]], bytes]:
        return value_writer(key_columns, f"{self.name}.Key", self.config["key.converter.schemas.enable"], indexes)

    def _check_offset(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> None:
        if offset is None:
            return
        for field_name in ("timestamp", "timestamp_nanos", "incrementing"):
            if field_name in offset:
                v = offset[field_name]
                if isinstance(v, bool) or not isinstance(v, int) or (field_name != "incrementing" and v < 0):
                    raise self.offsets._fail(f"partition {partition} has {field_name}={v!r}; expected a whole number")
        counted = offset.get("delivered_at_or_below", 0)
        if isinstance(counted, bool) or not isinstance(counted, int) or counted < 0:
            raise self.offsets._fail(f"partition {partition} has delivered_at_or_below={counted!r}; "
                                     "expected a whole number >= 0")
        recent = offset.get("recent", [])
        if not isinstance(recent, list) or not all(isinstance(r, list) and len(r) == 2 for r in recent):
            raise self.offsets._fail(f"partition {partition} has a malformed 'recent' list")

    def _db_now(self, cur: Any, dialect: Dialect) -> dt.datetime:
        cur.execute(dialect.now_sql)
        now = cur.fetchone()[0]
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    def _aware(self, value: Any, naive: bool) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            raise DataError(f"connector '{self.name}': timestamp column value {value!r} is not a timestamp")
        if value.tzinfo is None:
            return value.replace(tzinfo=self.zone if naive else UTC)
        return value

    def _param(self, micros: int, naive: bool) -> dt.datetime:
        """A bound parameter comparable with the timestamp column."""
        aware = from_micros(micros)
        if naive:
            return aware.astimezone(self.zone).replace(tzinfo=None)
        return aware

    def _query(self, dialect: Dialect, frm: str, offset: Mapping[str, Any] | None, now: dt.datetime | None,
               columns: Sequence[Column]) -> tuple[str, list[Any], str]:
        mode = self.mode
        where: list[str] = []
        params: list[Any] = []
        order = ""
        inc = dialect.quote(self.config["incrementing.column.name"]) if "incrementing" in mode else None
        if mode == "bulk":
            key_cols = self.config["key.columns"]
            if key_cols:
                order = " ORDER BY " + ", ".join(dialect.quote(c) for c in key_cols)
            return f"SELECT * FROM {frm}", params, order
        if mode == "incrementing":
            last_inc = (offset or {}).get("incrementing")
            if last_inc is not None:
                where.append(f"{inc} > %s")
                params.append(last_inc)
            return f"SELECT * FROM {frm}" + (" WHERE " + " AND ".join(where) if where else ""), params, f" ORDER BY {inc}"
        ts = self._ts_expr(dialect)
        ts_name = self.config["timestamp.column.name"][0]
        naive = next(c.naive_ts for c in columns if c.name == ts_name) if any(c.name == ts_name for c in columns) else False
        last = ts_micros_from_offset(offset or {})
        if last is not None:
            if self.lookback:
                where.append(f"{ts} > %s")
                params.append(self._param(last - int(self.lookback.total_seconds() * 1_000_000), naive))
            elif mode == "timestamp+incrementing" and (offset or {}).get("incrementing") is not None:
                where.append(f"(({ts} = %s AND {inc} > %s) OR {ts} > %s)")
                params += [self._param(last, naive), (offset or {})["incrementing"], self._param(last, naive)]
            else:
                where.append(f"{ts} > %s")
                params.append(self._param(last, naive))
        assert now is not None
        where.append(f"{ts} < %s")
        params.append(self._param(micros_of(now - self.delay), naive))
        order = f" ORDER BY {ts}" + (f", {inc}" if inc else "")
        return f"SELECT * FROM {frm} WHERE " + " AND ".join(where), params, order

    def _save(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> None:
        if offset is None:
            return
        self.offsets.put(partition, offset)
        self.offsets.save()

    def _commit(self, writer: SourceWriter, key: bytes, partition: dict[str, str], records: int,
                delivered: list[tuple[int, str]], previous: dict[str, Any] | None,
                batch_last_ts: int | None, batch_last_inc: Any, last_micros: int | None,
                recent: Counter[tuple[int, str]], table: TableResult, progress: Progress,
                delivered_at_or_below: int) -> dict[str, Any] | None:
        """Ends the batch's transaction (its records were sent) with the new offset."""
        new: dict[str, Any] = {}
        if "timestamp" in self.mode and batch_last_ts is not None:
            top = max(batch_last_ts, last_micros) if last_micros is not None else batch_last_ts
            new.update(ts_offset(top))
            if self.lookback:
                horizon = top - int(self.lookback.total_seconds() * 1_000_000)
                recent.update(delivered)
                for item in [r for r in recent if r[0] <= horizon]:
                    del recent[item]
                new["recent"] = sorted([m, k] for m, k in recent.elements())
        if "incrementing" in self.mode and batch_last_inc is not None:
            inc = int(batch_last_inc) if not isinstance(batch_last_inc, int) else batch_last_inc
            prev_inc = (previous or {}).get("incrementing")
            if "timestamp" in self.mode and last_micros is not None and batch_last_ts is not None and prev_inc is not None:
                # The offset is the newest (timestamp, id) delivered. With a lookback a batch may hold
                # only late rows, older than the stored offset: the position stays where it was.
                if batch_last_ts < last_micros or (batch_last_ts == last_micros and inc < prev_inc):
                    inc = prev_inc
            new["incrementing"] = inc
        new["delivered_at_or_below"] = delivered_at_or_below
        writer.commit({key: (new, previous)})
        self._save(partition, new)
        table.records += records
        table.batches += 1
        progress.add(records)
        return new or previous
