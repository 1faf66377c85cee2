"""PostgreSQL change data capture: logical decoding (wal2json) through a replication slot, as
Debezium's PostgresConnector's change events, exactly once.

One run is a bounded micro-batch:

1. The end: ``pg_current_wal_lsn()`` at the run's start.
2. The slot is peeked (``pg_logical_slot_peek_changes``: nothing is consumed) up to the end, at
   most ``max.batch.size`` changes at a time (whole transactions: PostgreSQL never splits one).
3. Each batch of transactions goes to Kafka in one Kafka transaction with the offset
   ``{"lsn": <end LSN of its last commit>}`` (journalled by :class:`SourceDelivery`).
4. Only after that transaction committed is the slot advanced to that LSN
   (``pg_replication_slot_advance``). A run that dies before the advance leaves the slot behind
   the offset: the next run advances it first, and skips every transaction whose commit ends at
   or before the offset's LSN. Nothing twice, nothing lost.

The first run with ``snapshot.mode=initial`` creates the slot over the replication protocol with
``EXPORT_SNAPSHOT`` and reads the tables in a REPEATABLE READ transaction on that very snapshot
(``SET TRANSACTION SNAPSHOT``): the rows (op ``r``) are exactly the database at the slot's
consistent point, and the stream continues from it. The snapshot is one Kafka transaction (all or
nothing; a run that dies in it drops the slot it made and starts over).
"""

from __future__ import annotations

import json
import logging
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from airconnect.connectors.cdc.base import CdcResult, CdcSource, debezium_topic
from airconnect.connectors.cdc.events import (
    SNAPSHOT_SECONDS_MAX,
    Column,
    TableEvents,
    b64,
    bits_column,
    bool_column,
    bytes_column,
    date_column,
    decimal_column,
    dumps,
    float_column,
    int_column,
    logical,
    micros_of_naive,
    named,
    snapshot_too_long,
    source_schema,
    string_column,
    time_column,
    timestamp_column,
    with_default,
    zoned_timestamp_column,
)
from airconnect.connectors.cdc.spec import POSTGRES_CDC, included
from airconnect.core.config import ConnectorConfig
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import DataError, OffsetError, PermanentError, TransientError
from airconnect.core.failpoints import failpoint
from airconnect.core.offsets import KeyValueStore

log = logging.getLogger(__name__)

FETCH: Final = 10000
SOURCE_FIELDS: Final = (
    ("version", "string", False), ("connector", "string", False), ("name", "string", False),
    ("ts_ms", "int64", False), ("snapshot", "string", True), ("db", "string", False),
    ("sequence", "string", True), ("ts_us", "int64", True), ("ts_ns", "int64", True),
    ("schema", "string", False), ("table", "string", False), ("txId", "int64", True), ("lsn", "int64", True),
    ("xmin", "int64", True), ("origin", "string", True), ("origin_lsn", "int64", True),
)
SOURCE_SCHEMA: Final = source_schema("io.debezium.connector.postgresql.Source", SOURCE_FIELDS)
WAL2JSON_OPTIONS: Final = ("'format-version','2','include-timestamp','1','include-pk','1',"
                           "'include-transaction','1','include-types','1','include-lsn','1'")
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_PRECISION = re.compile(r"^(?:timestamp|time)\((\d)\)")
_BIT = re.compile(r"^bit( varying)?(?:\((\d+)\))?$")


def lsn_int(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(n: int) -> str:
    return f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"


_INTERVAL = re.compile(r"^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?$")
_TIMETZ = re.compile(r"^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d)(?::?(\d\d))?(?::?(\d\d))?$")


def interval_micros(v: Any) -> int:
    """io.debezium.time.MicroDuration: an interval (ISO 8601 text, the session's IntervalStyle) in
    microseconds, a month counted as 365.25 / 12 days, computed in doubles as Debezium does."""
    m = _INTERVAL.match(v)
    if m is None:
        raise ValueError(f"not an ISO 8601 interval: {v!r}")
    years, months, days, hours, minutes = (int(g or 0) for g in m.groups()[:5])
    seconds = float(m.group(6) or 0)
    number_of_days = (years * 12 + months) * (365.25 / 12) + days
    return int(((((number_of_days * 24 + hours) * 60) + minutes) * 60 + seconds) * 1e6)


def zoned_time(v: Any) -> str:
    """io.debezium.time.ZonedTime: a time with time zone in UTC, ISO 8601 (``03:34:56.789Z``: the
    fraction without trailing zeros, as Java's ISO_OFFSET_TIME writes it)."""
    m = _TIMETZ.match(v)
    if m is None:
        raise ValueError(f"not a time with time zone: {v!r}")
    hh, mm, ss, frac, oh, om, os_ = m.groups()
    sign = -1 if oh[0] == "-" else 1
    offset = sign * (abs(int(oh)) * 3600 + int(om or 0) * 60 + int(os_ or 0))
    t = (int(hh) * 3600 + int(mm) * 60 + int(ss) - offset) % 86400
    frac = (frac or "").rstrip("0")
    return f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}" + ("." + frac if frac else "") + "Z"


def point(v: Any) -> dict[str, Any]:
    """io.debezium.data.geometry.Point: ``(1.5,2)`` as x, y and its WKB (little-endian), no SRID."""
    x_text, _, y_text = str(v).strip("()").partition(",")
    x, y = float(x_text), float(y_text)
    return {"x": x, "y": y, "wkb": b64(struct.pack("<BIdd", 1, 1, x, y)), "srid": None}


def money_text(v: Any) -> str:
    """money's text (lc_monetary C, the session's: ``-$1,234.56``) as a plain decimal."""
    text = str(v)
    number = re.sub(r"[^0-9.]", "", text)
    return "-" + number if "-" in text or "(" in text else number


def pg_array(text: str) -> list[Any]:
    """A one-dimensional array's text (``{"a b",c,NULL}``) as its elements' texts (None for NULL);
    a nested array as nested lists."""
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"not an array: {text!r}")
    items, i = _array_items(text, 1)
    if i != len(text):
        raise ValueError(f"not an array: {text!r}")
    return items


def _array_items(text: str, i: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    if text[i] == "}":
        return items, i + 1
    while True:
        if text[i] == "{":
            nested, i = _array_items(text, i + 1)
            items.append(nested)
        elif text[i] == '"':
            i += 1
            buf = []
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                buf.append(text[i])
                i += 1
            items.append("".join(buf))
            i += 1
        else:
            j = i
            while text[j] not in ",}":
                j += 1
            token = text[i:j]
            items.append(None if token == "NULL" else token)
            i = j
        if text[i] == "}":
            return items, i + 1
        i += 1  # the comma


def array_column(name: str, optional: bool, element: Column) -> Column:
    """``type[]`` as Debezium maps it: a Connect array of the element type's values."""
    convert = element.convert

    def elements(v: Any) -> list[Any]:
        def each(items: list[Any]) -> list[Any]:
            return [None if x is None else each(x) if isinstance(x, list) else convert(x) for x in items]
        return each(pg_array(v) if isinstance(v, str) else list(v))
    items = {k: val for k, val in element.schema.items() if k != "default"}
    return named(Column("", {"type": "array", "items": {**items, "optional": True}, "optional": optional},
                        elements, []), name)


def pg_column(name: str, type_name: str, optional: bool, decimal_mode: str) -> Column:
    """A PostgreSQL column (``format_type``'s name, as wal2json reports it) as Debezium maps it."""
    t = type_name
    if t.endswith("[]"):
        return array_column(name, optional, pg_column(name, t[:-2], True, decimal_mode))
    if t == "tsvector":
        return string_column(name, optional, "io.debezium.data.Tsvector")
    if t == "point":
        return named(Column("", {"type": "struct", "fields": [
            {"type": "double", "optional": False, "field": "x"}, {"type": "double", "optional": False, "field": "y"},
            {"type": "bytes", "optional": True, "field": "wkb"}, {"type": "int32", "optional": True, "field": "srid"}],
            "optional": optional, "name": "io.debezium.data.geometry.Point", "version": 1, "doc": "Geometry (POINT)"},
            point, None), name)
    if t == "interval":
        return named(logical("io.debezium.time.MicroDuration", "int64", optional, interval_micros, 0), name)
    if t == "money":
        column = decimal_column(name, optional, None, 2, decimal_mode)
        return Column(name, column.schema, lambda v: column.convert(money_text(v)), column.missing, column.null)
    if t.startswith("time") and t.endswith("with time zone") and not t.startswith("timestamp"):
        return named(logical("io.debezium.time.ZonedTime", "string", optional, zoned_time, ""), name)
    if t == "smallint":
        return int_column(name, "int16", optional)
    if t == "integer":
        return int_column(name, "int32", optional)
    if t == "bigint":
        return int_column(name, "int64", optional)
    if t == "real":
        return float_column(name, "float", optional)
    if t == "double precision":
        return float_column(name, "double", optional)
    if t == "boolean":
        return bool_column(name, optional)
    if t.startswith("numeric"):
        m = _NUMERIC.match(t)
        return decimal_column(name, optional, int(m.group(1)) if m else None, int(m.group(2)) if m else None,
                              decimal_mode)
    if t.startswith("timestamp"):
        m = _PRECISION.match(t)
        if t.endswith("with time zone") and "without" not in t:
            return zoned_timestamp_column(name, optional, int(m.group(1)) if m else 6)
        return timestamp_column(name, optional, int(m.group(1)) if m else 6)
    if t.startswith("time") and "with time zone" not in t:
        m = _PRECISION.match(t)
        return time_column(name, optional, int(m.group(1)) if m else 6)
    if t == "date":
        return date_column(name, optional)
    if t in ("json", "jsonb"):
        return string_column(name, optional, "io.debezium.data.Json")
    if t == "uuid":
        return string_column(name, optional, "io.debezium.data.Uuid")
    if t == "xml":
        return string_column(name, optional, "io.debezium.data.Xml")
    if t == "bytea":
        return bytes_column(name, optional)
    m = _BIT.match(t)
    if m:  # bit(1) is a boolean; bit(n) and bit varying(n): Bits (bit varying unbounded: length 2^31-1, as JDBC says)
        length = int(m.group(2) or (2**31 - 1 if m.group(1) else 1))
        return bool_column(name, optional) if length == 1 and not m.group(1) else bits_column(name, optional, length, padded=False)
    return string_column(name, optional)  # text, varchar, char and any other type: its text form


@dataclass
class TableInfo:
    schema: str
    table: str
    columns: list[tuple[str, str, bool]]  # name, type, NOT NULL
    defaults: dict[str, Any]  # column -> its constant default (its text form)
    key: list[str]
    full_identity: bool
    enums: dict[str, str] = field(default_factory=dict)  # column -> its enum type's labels, comma-separated


def replication_params(conn: Any, db_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where to open a replication-protocol connection: ``db_params`` (from the Airflow
    Connection), else what the DB-API connection says about itself (psycopg 2 and 3 both tell)."""
    if db_params:
        p = dict(db_params)
        return {"host": p.get("host") or "127.0.0.1", "port": int(p.get("port") or 5432), "user": p.get("user"),
                "password": p.get("password"), "dbname": p.get("database") or p.get("dbname")}
    info = conn.info
    return {"host": info.host, "port": int(info.port), "user": info.user, "password": info.password,
            "dbname": info.dbname}


class PostgresCdcSource(CdcSource):
    """One bounded pass: the snapshot on the first run (snapshot.mode=initial), then the changes."""

    connector_class = POSTGRES_CDC
    database = "PostgreSQL"

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
                 connect: Callable[[], Any] | None = None, db_params: Mapping[str, Any] | None = None):
        super().__init__(config, store, kafka, connect, db_params)
        self.slot: str = config["slot.name"]
        self._info: dict[tuple[str, str], TableInfo | None] = {}
        self._events: dict[tuple[Any, ...], TableEvents] = {}
        self.db = ""

    # -- the run

    def _prepare(self, conn: Any) -> None:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; "
                    "SET IntervalStyle = 'iso_8601'; SET lc_monetary = 'C'")
        cur.execute("SELECT current_database()")
        self.db = cur.fetchone()[0]
        cur.close()

    def _pass(self, conn: Any, delivery: SourceDelivery, result: CdcResult) -> dict[str, Any]:
        stored = delivery.stored(self.partition)
        problem = POSTGRES_CDC.check_offset(self.config, self.partition, stored) if stored is not None \
            and POSTGRES_CDC.check_offset is not None else None
        if problem:
            raise OffsetError(f"{self._what()}: the stored offset {problem}")
        offset = delivery.resume(self.partition, stored)
        slot = self._slot(conn)
        if offset is None:
            if self.config["snapshot.mode"] == "initial":
                if slot is not None:
                    log.warning("%s: replication slot '%s' exists but there is no offset (the offsets "
                                "were reset, or a first run died); dropping it for a new snapshot", self._what(), self.slot)
                    self._sql(conn, "SELECT pg_drop_replication_slot(%s)", (self.slot,))
                offset = self._snapshot(conn, delivery, result)
            else:
                if slot is None:
                    lsn = self._sql(conn, "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, "
                                          "'wal2json')", (self.slot,))[0][0]
                    offset = {"lsn": lsn_int(lsn)}
                else:
                    offset = {"lsn": lsn_int(slot["confirmed"])}
                delivery.note(self.partition, offset)
            slot = self._slot(conn)
        self._check_slot(slot, offset)
        return self._stream(conn, delivery, offset, slot, result)

    def _sql(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def _slot(self, conn: Any) -> dict[str, Any] | None:
        rows = self._sql(conn, "SELECT plugin, database, confirmed_flush_lsn::text, slot_type FROM pg_replication_slots "
                               "WHERE slot_name = %s", (self.slot,))
        if not rows:
            return None
        plugin, database, confirmed, kind = rows[0]
        return {"plugin": plugin, "database": database, "confirmed": confirmed, "type": kind}

    def _check_slot(self, slot: dict[str, Any] | None, offset: Mapping[str, Any]) -> None:
        if slot is None:
            raise PermanentError(
                f"{self._what()}, key 'slot.name': the replication slot '{self.slot}' does not exist any more, but "
                f"the connector has delivered changes up to LSN {lsn_text(offset['lsn'])} from it: the changes made "
                "since then are lost to logical decoding (a dropped slot, or a database restored elsewhere). "
                f"Recover: reset the connector's offsets (airconnect reset {self.name}) and run it again: it creates "
                "the slot anew and, with snapshot.mode=initial, delivers a new snapshot of the tables (op 'r') "
                "before the changes")
        if slot["type"] != "logical" or slot["plugin"] != "wal2json":
            raise PermanentError(f"{self._what()}, key 'slot.name': the slot '{self.slot}' decodes with "
                                 f"{slot['plugin']!r}, not wal2json (another connector's slot?); name another slot")
        if slot["database"] != self.db:
            raise PermanentError(f"{self._what()}, key 'slot.name': the slot '{self.slot}' belongs to database "
                                 f"{slot['database']!r}, not {self.db!r}; name another slot")

    # -- tables

    def _table_info(self, conn: Any, schema: str, table: str) -> TableInfo | None:
        key = (schema, table)
        if key not in self._info:
            rows = self._sql(conn, "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON "
                                   "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, table))
            if not rows:
                self._info[key] = None
                return None
            oid, ident = rows[0]
            cols = self._sql(conn, "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                                   "pg_get_expr(d.adbin, d.adrelid), (SELECT string_agg(e.enumlabel, ',' ORDER BY "
                                   "e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = a.atttypid) "
                                   "FROM pg_attribute a LEFT JOIN pg_attrdef d ON "
                                   "d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = %s AND a.attnum > 0 "
                                   "AND NOT a.attisdropped ORDER BY a.attnum", (oid,))
            pk = self._sql(conn, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                                 "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
                                 "ORDER BY array_position(i.indkey::int2[], a.attnum)", (oid,))
            defaults = {n: v for n, _, _, expr, _ in cols if (v := constant(expr)) is not None}
            self._info[key] = TableInfo(schema, table, [(n, t, bool(nn)) for n, t, nn, _, _ in cols], defaults,
                                        [r[0] for r in pk], ident == "f",
                                        {n: labels for n, _, _, _, labels in cols if labels is not None})
        return self._info[key]

    def _events_for(self, info: TableInfo, columns: list[tuple[str, str]] | None = None) -> TableEvents:
        """The table's record encoder for the columns an event carries (a DDL change mid-stream
        gives another encoder), nullability from the catalog."""
        notnull = {n: nn for n, _, nn in info.columns}
        cols = columns if columns is not None else [(n, t) for n, t, _ in info.columns]
        ck = (info.schema, info.table, tuple(cols))
        enc = self._events.get(ck)
        if enc is None:
            record = f"{self.prefix}.{info.schema}.{info.table}"
            enc = TableEvents(
                topic=debezium_topic(record),
                record_name=record,
                columns=[self._column(info, n, t, not notnull.get(n, False)) for n, t in cols],
                key_columns=info.key, source=SOURCE_SCHEMA,
                key_schemas=self.key_schemas, value_schemas=self.value_schemas)
            self._events[ck] = enc
        return enc

    def _column(self, info: TableInfo, name: str, type_name: str, optional: bool) -> Column:
        if name in info.enums:  # an enum type: Debezium's Enum with the labels in their order
            column = string_column(name, optional, "io.debezium.data.Enum")
            column.schema["parameters"] = {"allowed": info.enums[name]}
        else:
            column = pg_column(name, type_name, optional, self.decimal_mode)
        return with_default(column, info.defaults[name]) if name in info.defaults else column

    def _source(self, info: TableInfo, *, ts_us: int, snapshot: str, tx: int | None, lsn: int | None,
                sequence: str | None) -> dict[str, Any]:
        return {"version": self.version, "connector": "postgresql", "name": self.prefix, "ts_ms": ts_us // 1000,
                "snapshot": snapshot, "db": self.db, "sequence": sequence, "ts_us": ts_us, "ts_ns": ts_us * 1000,
                "schema": info.schema, "table": info.table, "txId": tx, "lsn": lsn, "xmin": None, "origin": None,
                "origin_lsn": None}

    # -- the snapshot

    def _snapshot(self, conn: Any, delivery: SourceDelivery, result: CdcResult) -> dict[str, Any]:
        import psycopg2
        from psycopg2.extras import LogicalReplicationConnection

        params = replication_params(conn, self.db_params)
        try:
            rconn = psycopg2.connect(connection_factory=LogicalReplicationConnection, **params)
        except psycopg2.Error as exc:
            raise TransientError(f"{self._what()}: opening a replication connection to {params['host']}:"
                                 f"{params['port']}/{params['dbname']} for the snapshot: {exc}") from None
        try:
            rcur = rconn.cursor()
            try:
                rcur.execute(f'CREATE_REPLICATION_SLOT "{self.slot}" LOGICAL wal2json EXPORT_SNAPSHOT')
            except psycopg2.Error as exc:
                raise PermanentError(f"{self._what()}, key 'slot.name': creating the replication slot "
                                     f"'{self.slot}' failed: {str(exc).strip()} (wal_level must be logical, "
                                     "max_replication_slots high enough, wal2json installed)") from None
            _, consistent, snapshot_name, _ = rcur.fetchone()
            lsn = lsn_int(consistent)
            log.info("%s: slot '%s' created at %s; reading the tables on its snapshot", self._what(), self.slot,
                     consistent)
            started_us = time.time_ns() // 1000
            conn.autocommit = False
            try:
                cur = conn.cursor()
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                if not re.fullmatch(r"[0-9A-F-]+", snapshot_name):  # inlined: SET takes no bound parameter
                    raise PermanentError(f"{self._what()}: unexpected snapshot name {snapshot_name!r}")
                cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_name}'")
                cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                            "AND n.nspname NOT LIKE 'pg\\_toast%%' AND NOT c.relispartition ORDER BY 1, 2")
                tables = [(s, t) for s, t in cur.fetchall() if included(self.tables_re, f"{s}.{t}")]
                cur.close()
                infos = [i for i in (self._table_info(conn, s, t) for s, t in tables) if i is not None]
                sequence = json.dumps([None, str(lsn)], separators=(",", ":"))
                for ti, info in enumerate(infos):
                    self._snapshot_table(conn, delivery, info, ti == 0, ti == len(infos) - 1, started_us, lsn,
                                         sequence, result)
            finally:
                conn.rollback()  # (also after a failure: autocommit cannot change inside a transaction)
                conn.autocommit = True
            seconds = time.time_ns() // 1000 - started_us
            if seconds / 1e6 > SNAPSHOT_SECONDS_MAX:
                raise PermanentError(snapshot_too_long(self.name, seconds / 1e6, result.snapshot_records))
            offset = {"lsn": lsn, "ts_usec": started_us, "snapshot_completed": True}
            delivery.commit(self.partition, offset)
            result.batches += 1
            failpoint("cdc.snapshot_committed")
            return offset
        finally:
            rconn.close()

    def _snapshot_table(self, conn: Any, delivery: SourceDelivery, info: TableInfo, first_table: bool,
                        last_table: bool, ts_us: int, lsn: int, sequence: str, result: CdcResult) -> None:
        enc = self._events_for(info)
        names = [c[0] for c in info.columns]
        select = ", ".join(f'{_qi(n)}::text' for n in names)
        cur = conn.cursor(name=f"airconnect_snap_{abs(hash(enc.topic)) % 10**8}")
        cur.itersize = FETCH
        cur.execute(f"SELECT {select} FROM {_qi(info.schema)}.{_qi(info.table)}")
        self._snapshot_rows(delivery, enc, cur.fetchmany, FETCH, names, f"{info.schema}.{info.table}",
                            lambda marker: self._source(info, ts_us=ts_us, snapshot=marker, tx=None, lsn=lsn,
                                                        sequence=sequence),
                            first_table, last_table, result)
        cur.close()

    # -- the stream

    def _stream(self, conn: Any, delivery: SourceDelivery, offset: dict[str, Any], slot: dict[str, Any] | None,
                result: CdcResult) -> dict[str, Any]:
        end = self._sql(conn, "SELECT pg_current_wal_lsn()::text")[0][0]
        done = int(offset["lsn"])
        confirmed = lsn_int(slot["confirmed"]) if slot else 0
        if confirmed < done:
            log.info("%s: advancing slot '%s' to the delivered position %s (the last run died before it did)",
                     self._what(), self.slot, lsn_text(done))
            self._advance(conn, done)
        elif confirmed > done:
            raise PermanentError(
                f"{self._what()}, key 'slot.name': the slot '{self.slot}' is at {slot['confirmed'] if slot else ''}, "
                f"past the delivered position {lsn_text(done)}: the changes between were consumed by something else "
                f"(another reader of the slot, or offsets set back). Recover: reset the connector's offsets "
                f"(airconnect reset {self.name}) and drop the slot (SELECT pg_drop_replication_slot('{self.slot}')) "
                "for a new snapshot")
        while True:
            moved = self._stream_batch(conn, delivery, end, done, offset, result)
            if moved is None:
                return offset
            offset, done = moved, moved["lsn"]

    def _stream_batch(self, conn: Any, delivery: SourceDelivery, end: str, done: int, offset: dict[str, Any],
                      result: CdcResult) -> dict[str, Any] | None:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, %s, "
                        f"{WAL2JSON_OPTIONS}{self._add_tables()})", (self.slot, end, self.batch))
            rows = cur.fetchall()
        except Exception as exc:  # noqa: BLE001
            raise PermanentError(f"{self._what()}, key 'slot.name': reading slot '{self.slot}': "
                                 f"{str(exc).strip()}") from None
        finally:
            cur.close()
        if not rows:
            return None
        last: dict[str, Any] | None = None
        pending: list[tuple[str, bytes | None, bytes | None]] = []
        tx_ts_us = 0
        last_commit: int | None = done or None
        loads = _loads
        for lsn_s, xid_s, data in rows:
            doc = loads(data)
            action = doc["action"]
            if action == "B":
                pending = []
                tx_ts_us = _commit_micros(doc["timestamp"])
            elif action == "C":
                commit_end = lsn_int(lsn_s)
                if commit_end <= done:
                    result.skipped_transactions += 1
                else:
                    self._send(delivery, pending)
                    if pending:
                        result.transactions += 1
                    else:
                        result.other_transactions += 1
                    last = {"lsn": commit_end, "txId": int(xid_s), "ts_usec": tx_ts_us}
                    last_commit = lsn_int(doc["lsn"])
                pending = []
            elif action in ("I", "U", "D"):
                self._change(conn, doc, lsn_int(lsn_s), int(xid_s), tx_ts_us, last_commit, pending)
        if last is None:
            return None
        delivery.commit(self.partition, last)
        result.batches += 1
        failpoint("cdc.committed")
        self._advance(conn, last["lsn"])
        failpoint("cdc.advanced")
        return last

    def _add_tables(self) -> str:
        """wal2json's own table filter when ``table.include.list`` names tables literally
        (``public\\.sales``): other tables' changes are then not even written as JSON."""
        names = [p.pattern.replace("\\.", ".") for p in self.tables_re]
        if not names or not all(re.fullmatch(r"[A-Za-z0-9_]+\.[A-Za-z0-9_]+", n) for n in names):
            return ""
        return ",'add-tables','" + ",".join(names) + "'"

    def _change(self, conn: Any, doc: Mapping[str, Any], lsn: int, xid: int, ts_us: int, last_commit: int | None,
                out: list[tuple[str, bytes | None, bytes | None]]) -> None:
        schema, table = doc["schema"], doc["table"]
        if not included(self.tables_re, f"{schema}.{table}"):
            return
        info = self._table_info(conn, schema, table)
        if info is None:  # dropped since: its changes still decode, the catalog no longer has it
            info = TableInfo(schema, table, [], {}, [p["name"] for p in doc.get("pk", [])], False)
        action = doc["action"]
        cols = doc.get("columns")
        enc = self._events_for(info, [(c["name"], c["type"]) for c in cols] if cols else None)
        sequence = f'["{last_commit}","{lsn}"]' if last_commit else f'[null,"{lsn}"]'  # Debezium's [commit, change]
        source = dumps(self._source(info, ts_us=ts_us, snapshot="false", tx=xid, lsn=lsn, sequence=sequence))
        try:
            after = enc.row({c["name"]: c["value"] for c in cols}) if cols else None
            identity = doc.get("identity")
            old = enc.row({c["name"]: c["value"] for c in identity}, fill_missing=True) if identity else None
        except DataError as exc:
            raise DataError(f"{self._what()} ({schema}.{table}, LSN {lsn_text(lsn)}): {exc}") from None
        if action == "I":
            out.append((enc.topic, enc.key(after or {}), enc.value(None, after, source, "c")))
        elif action == "U":
            old_key = enc.key(old) if old else None
            new_key = enc.key(after or {})
            if old is not None and old_key is not None and old_key != new_key:
                # The key changed: Debezium's delete of the old key (and its tombstone), then a create.
                out.append((enc.topic, old_key, enc.value(old, None, source, "d")))
                if self.tombstones:
                    out.append((enc.topic, old_key, None))
                out.append((enc.topic, new_key, enc.value(None, after, source, "c")))
            else:
                out.append((enc.topic, new_key, enc.value(old if info.full_identity else None, after, source, "u")))
        else:
            key = enc.key(old or {})
            out.append((enc.topic, key, enc.value(old, None, source, "d")))
            if self.tombstones:
                out.append((enc.topic, key, None))

    def _advance(self, conn: Any, lsn: int) -> None:
        self._sql(conn, "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, lsn_text(lsn)))


_STRING_DEFAULT = re.compile(r"^'((?:[^']|'')*)'::(?:[a-z ]+|\"bit\")(?:\(\d+(?:,\d+)?\))?(?: with(?:out)? time zone)?$")
_NUMBER_DEFAULT = re.compile(r"^\(?(-?\d+(?:\.\d+)?)\)?(?:::[a-z ]+)?$")


def constant(expr: str | None) -> Any:
    """A column default that is a constant (``0``, ``'new'::character varying``, ``true``), as the
    text its type's converter reads; None for no default or an expression (``now()``, ``nextval``)."""
    if not expr:
        return None
    m = _STRING_DEFAULT.match(expr)
    if m:
        return m.group(1).replace("''", "'")
    m = _NUMBER_DEFAULT.match(expr)
    if m:
        return m.group(1)
    if expr in ("true", "false"):
        return expr
    return None


#: wal2json writes numeric values as JSON numbers; quoted first, they stay exact (orjson would
#: read them as doubles).
_NUMERIC_VALUE = re.compile(r'("type":"numeric[^"]*","value":)(-?[0-9][0-9.eE+-]*)')


def _loads(data: str) -> Any:
    if '"type":"numeric' in data:
        data = _NUMERIC_VALUE.sub(r'\1"\2"', data)
    return orjson.loads(data)


def _commit_micros(text: str) -> int:
    """wal2json's commit time (``2026-11-30 10:03:15.422106+00`` in a UTC session) in microseconds."""
    return micros_of_naive(text[:-3] if text.endswith("+00") else text)


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

