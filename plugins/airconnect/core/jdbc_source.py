"""JDBC source: reads a table (or a query) incrementally into a topic, like Kafka Connect's
JdbcSourceConnector (bulk, incrementing, timestamp, timestamp+incrementing), exactly once.

Reading
  One query per run over a server-side cursor (PostgreSQL named cursor, MySQL/MariaDB
  ``SSCursor``) fetched ``batch.max.rows`` at a time: memory stays flat as the table grows.
  Identifiers from the definition are validated names and are always quoted.

Where Kafka Connect loses rows, and what airconnect does instead
  * Rows sharing the last timestamp across a batch boundary (``timestamp`` mode): a batch is
    only cut between two different timestamps, so the offset never splits a group.
  * Transactions that commit late carrying an older timestamp: ``timestamp.delay.interval.ms``
    keeps the newest rows back (``ts < database now - delay``, on the database's clock), and
    ``timestamp.lookback.ms`` re-reads that much before the stored timestamp on every run,
    skipping the rows already delivered (their ``(timestamp, key)`` pairs are kept in the offset
    while they are inside the window). A row that commits later than the lookback is lost, as
    in Connect: choose the window longer than your longest write transaction.
  * Microseconds: offsets keep Connect's ``timestamp`` (epoch ms) + ``timestamp_nanos``, so
    microsecond timestamps are compared exactly.
  * NULL timestamps never match ``ts > x``: with several timestamp columns they are
    ``COALESCE``d (as in Connect); rows where all are NULL are counted on every run and
    reported in the log and the task result (``timestamp.null.handling=warn``), or stop the
    run (``fail``). They are never dropped silently.

Records
  Value: a struct with every column, in JsonConverter's schema envelope by default. DECIMAL
  columns use Connect's Decimal logical type with ``decimal.format=NUMERIC`` (exact JSON
  numbers, not base64). Timestamps are ISO-8601 strings in UTC with microseconds
  (``2018-10-31T23:30:00.123456Z``; schema name ``io.airconnect.Timestamp``); naive columns
  (``timestamp``/``DATETIME``) are read in ``db.timezone``. Key: the primary key (or
  ``key.columns``) as a struct. Topic: ``topic.prefix`` + table (query mode: the prefix).

Offsets (Connect's shape): partition ``{"table": name}`` (query mode ``{"query": "query"}``) ->
``{"timestamp": ms, "timestamp_nanos": ns, "incrementing": id}``. Each batch is one Kafka
transaction carrying the batch and its offset (see SourceWriter); bulk mode writes a whole
snapshot in one transaction.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

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


JDBC_SOURCE = register(ConnectorClass(
    name="airconnect.JdbcSource",
    kind="source",
    aliases=("io.confluent.connect.jdbc.JdbcSourceConnector", "JdbcSourceConnector", "JdbcSource"),
    keys=(
        Key("db.conn.id", "string", doc="The Airflow Connection of the database (type postgres or mysql)."),
        Key("connection.url", "string", "", "Kafka Connect's JDBC URL; airconnect uses db.conn.id instead."),
        Key("mode", "string", doc="How new rows are found.", choices=MODES),
        Key("table.whitelist", "list", [], "Tables to read (optionally schema.table); one topic each."),
        Key("query", "string", "", "A SELECT to read instead of tables."),
        Key("topic.prefix", "string", doc="Topic = prefix + table name (query mode: the prefix)."),
        Key("incrementing.column.name", "string", "", "A strictly increasing column (incrementing modes)."),
        Key("timestamp.column.name", "list", [], "Timestamp column(s), COALESCEd in this order (timestamp modes)."),
        Key("timestamp.delay.interval.ms", "int", 0, "Leave rows newer than the database's now minus this.", minimum=0),
        Key("timestamp.lookback.ms", "int", 0, "Re-read this much before the offset; already-delivered rows are skipped.", minimum=0),
        Key("timestamp.null.handling", "string", "warn", "Rows whose timestamp is NULL: report them, or fail.", choices=("warn", "fail")),
        Key("batch.max.rows", "int", 100000, "Rows per Kafka transaction (one offset commit per batch); they are "
            "fetched and sent 10,000 at a time, so memory does not grow with it.", minimum=1),
        Key("db.timezone", "string", "UTC", "Zone of timestamp columns without a time zone.", check=check_timezone),
        Key("key.columns", "list", [], "Record key columns (default: the table's primary key)."),
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

    def quote(self, identifier: str) -> str:
        if not identifier or "\x00" in identifier:
            raise ConfigError(f"invalid identifier {identifier!r}")
        parts = identifier.split(".")
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
                (self.quote(table),),
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


def _db_error(exc: BaseException, what: str) -> Exception:
    """Map a DB-API error: unreachable/timeouts are transient; missing tables/columns are not."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).strip()
    detail = " ".join(line.strip() for line in text.splitlines()[:2]) if text else type(exc).__name__
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


def _value_writer(columns: Sequence[Column], record_name: str, envelope: bool,
                  indexes: Sequence[int] | None = None) -> Callable[[Sequence[Any]], bytes]:
    """``row -> JsonConverter bytes`` for ``columns`` (the row's values at ``indexes``, by default
    all of them in order): the schema envelope (built once) and the payload struct.

    The writer is compiled into one function per column set, like ``dataclasses`` and
    ``namedtuple`` build theirs: per row it unpacks the values and formats each inline, with no
    loop, no per-column call for text and whole numbers, and one string build. It writes exactly
    what ``_value_writer_reference`` writes (the unit tests compare them).
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


def _value_writer_reference(columns: Sequence[Column], record_name: str, envelope: bool) -> Callable[[Sequence[Any]], bytes]:
    """The plain form of :func:`_value_writer`: a loop over the columns."""
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
            return [({"query": "query"}, self.config["query"], prefix)]
        return [({"table": t}, t, prefix + t) for t in self.config["table.whitelist"]]

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
        return dialect.quote(source)

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
                nullable = self._nullable(conn, dialect, source)
                key_cols = self.config["key.columns"] or (
                    dialect.primary_key(conn, source) if not self.config["query"] else [])
            except Exception as exc:  # noqa: BLE001
                raise _db_error(exc, f"{what}: reading the table's description") from None
            names = [d[0] for d in description]
            missing = [c for c in [*key_cols, *self._needed_columns()] if c not in names]
            if missing:
                raise PermanentError(f"{what}: column(s) {', '.join(missing)} not found (renamed or dropped?); "
                                     f"the columns are {', '.join(names)}")
            now = None
            if "timestamp" in self.mode:
                try:
                    cur.execute(f"SELECT COUNT(*) FROM {frm} WHERE {self._ts_expr(dialect)} IS NULL")
                    table.null_timestamps = int(cur.fetchone()[0])
                    now = self._db_now(cur, dialect)
                except Exception as exc:  # noqa: BLE001
                    raise _db_error(exc, f"{what}: reading the database clock") from None
        finally:
            cur.close()
        if table.null_timestamps:
            msg = (f"{what}: {table.null_timestamps} row(s) have a NULL {'/'.join(self.config['timestamp.column.name'])} "
                   "and cannot be read in a timestamp mode; give them a timestamp, or add a fallback column to "
                   "timestamp.column.name")
            if self.config["timestamp.null.handling"] == "fail":
                raise DataError(msg)
            log.warning("%s (timestamp.null.handling=warn: reported on every run, never dropped silently)", msg)

        columns = describe_columns(dialect, description, self.zone, nullable)
        record_name = table.source if "table" in partition else topic
        to_value = _value_writer(columns, record_name, self.config["value.converter.schemas.enable"])
        key_idx = [names.index(c) for c in key_cols]
        to_key = self._key_writer([columns[i] for i in key_idx], key_idx) if key_idx else None

        sql, params, order = self._query(dialect, frm, offset, now, columns)
        ts_idx = names.index(self.config["timestamp.column.name"][0]) if "timestamp" in self.mode else None
        inc_idx = names.index(self.config["incrementing.column.name"]) if "incrementing" in self.mode else None
        ts_cols = [names.index(c) for c in self.config["timestamp.column.name"]] if "timestamp" in self.mode else []
        naive_ts = columns[ts_idx].naive_ts if ts_idx is not None else False
        recent: set[tuple[int, str]] = {(int(m), str(k)) for m, k in (offset or {}).get("recent", [])}
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
            in_txn = False
            previous = offset
            last_row: Sequence[Any] | None = None  # the batch's last row: its timestamp and id make the offset
            lookback_us = int(self.lookback.total_seconds() * 1_000_000)

            def row_micros(row: Sequence[Any]) -> int:
                raw_ts = row[ts_idx] if row[ts_idx] is not None or len(ts_cols) == 1 else next(
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
                nonlocal count, in_txn, batch_rows
                assert last_row is not None
                send()
                last_ts = row_micros(last_row) if ts_idx is not None else None
                stored_ts = ts_micros_from_offset(previous or {})
                delivered: list[tuple[int, str]] = []
                if batch_rows and last_ts is not None:
                    # The rows the next run's lookback query reads again (_commit keeps just these).
                    horizon = max(last_ts, stored_ts if stored_ts is not None else last_ts) - lookback_us
                    delivered = [(row_micros(row), ident(row)) for row in rows_after(horizon)]
                new = self._commit(writer, key, partition, count, delivered, previous, last_ts,
                                   last_row[inc_idx] if inc_idx is not None else None, stored_ts, recent, table,
                                   progress)
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
                    if count >= batch and not (timestamp_only and row_micros(row) == row_micros(last_row)):
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

    def _needed_columns(self) -> list[str]:
        cols = list(self.config["timestamp.column.name"]) if "timestamp" in self.mode else []
        if "incrementing" in self.mode:
            cols.append(self.config["incrementing.column.name"])
        return cols

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
        return _value_writer(key_columns, f"{self.name}.Key", self.config["key.converter.schemas.enable"], indexes)

    def _check_offset(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> None:
        if offset is None:
            return
        for field_name in ("timestamp", "timestamp_nanos", "incrementing"):
            if field_name in offset:
                v = offset[field_name]
                if isinstance(v, bool) or not isinstance(v, int) or (field_name != "incrementing" and v < 0):
                    raise self.offsets._fail(f"partition {partition} has {field_name}={v!r}; expected a whole number")
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
                params += [self._param(last, naive), offset["incrementing"], self._param(last, naive)]
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
                recent: set[tuple[int, str]], table: TableResult, progress: Progress) -> dict[str, Any] | None:
        """Ends the batch's transaction (its records were sent) with the new offset."""
        new: dict[str, Any] = {}
        if "timestamp" in self.mode and batch_last_ts is not None:
            top = max(batch_last_ts, last_micros) if last_micros is not None else batch_last_ts
            new.update(ts_offset(top))
            if self.lookback:
                horizon = top - int(self.lookback.total_seconds() * 1_000_000)
                recent.update(delivered)
                for item in [r for r in recent if r[0] <= horizon]:
                    recent.discard(item)
                new["recent"] = sorted([m, k] for m, k in recent)
        if "incrementing" in self.mode and batch_last_inc is not None:
            new["incrementing"] = int(batch_last_inc) if not isinstance(batch_last_inc, int) else batch_last_inc
        writer.commit({key: (new, previous)})
        self._save(partition, new)
        table.records += records
        table.batches += 1
        progress.add(records)
        return new or previous
