"""MariaDB change data capture: the row-based binlog read from a GTID position (the
``mysql-replication`` library), as Debezium's MariaDbConnector / MySqlConnector change events,
exactly once.

One run is a bounded micro-batch: from the offset's GTID position to ``@@gtid_binlog_pos`` as of
the run's start (a transaction with a later GTID is left for the next run). Each batch of whole
transactions goes to Kafka in one Kafka transaction with the offset ``{"gtids": "0-1-812", ...}``;
the position is the offset itself (the server keeps no reader state), so once the Kafka
transaction committed, the next run starts after it, and a run that dies before never moved it.

The first run with ``snapshot.mode=initial`` reads the tables in a ``START TRANSACTION WITH
CONSISTENT SNAPSHOT`` and takes the binlog position of that very snapshot (MariaDB's
``binlog_snapshot_file``/``binlog_snapshot_position``, as a GTID position with
``BINLOG_GTID_POS``): no lock, and the stream continues exactly where the snapshot's rows stand.

Column names come from the binlog's row metadata (``binlog_row_metadata=FULL``) when the server
writes it, else from ``information_schema`` by position (right unless a table's columns changed
between the change and the run).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from airconnect.connectors.cdc.base import CdcResult, CdcSource, debezium_topic
from airconnect.connectors.cdc.events import (
    SNAPSHOT_SECONDS_MAX,
    Column,
    TableEvents,
    bits_column,
    bool_column,
    bytes_column,
    date_column,
    decimal_column,
    dumps,
    float_column,
    int_column,
    logical,
    named,
    snapshot_too_long,
    source_schema,
    string_column,
    time_column,
    timestamp_column,
    with_default,
    zoned_iso,
    zoned_timestamp_column,
)
from airconnect.connectors.cdc.spec import MARIADB_CDC, include_list, included
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
    ("table", "string", True), ("server_id", "int64", False), ("gtid", "string", True), ("file", "string", False),
    ("pos", "int64", False), ("row", "int32", False), ("thread", "int64", True), ("query", "string", True),
)
SYSTEM_DBS: Final = ("mysql", "information_schema", "performance_schema", "sys")
_UNKNOWN = re.compile(r"^UNKNOWN_COL(\d+)$")
_QUOTED = re.compile(r"'((?:[^'\\]|''|\\.)*)'")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_BITS = re.compile(r"^b'([01]+)'$")


def _unquote(text: str) -> str:
    return text.replace("''", "'").replace("\\'", "'").replace("\\\\", "\\")


def maria_default(text: str | None) -> str | int | None:
    """``information_schema.COLUMNS.COLUMN_DEFAULT`` as the value a column's converter reads when it
    is a constant (``0``, ``'new'``; ``b'101'`` as the number 5); None for none (``NULL``) or an
    expression (``current_timestamp()``), which Debezium leaves out of the schema too."""
    if text is None or text == "NULL":
        return None
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        return _unquote(text[1:-1])
    if _NUMBER.match(text):
        return text
    m = _BITS.match(text)
    return None if m is None else int(m.group(1), 2)


def _signed64(v: Any) -> int:
    """BIGINT UNSIGNED as Debezium's bigint.unsigned.handling.mode=long writes it: the 64 bits read
    as a signed long (values above 2^63-1 wrap to negative)."""
    n = v if type(v) is int else int(v)
    return n - (1 << 64) if n >= 1 << 63 else n


def _choices(column_type: str) -> list[str]:
    """The values of ``enum('a','b')`` / ``set('x','y')``."""
    return [_unquote(v) for v in _QUOTED.findall(column_type[column_type.index("("):])]


def maria_column(name: str, data_type: str, column_type: str, optional: bool, precision: int | None,
                 scale: int | None, dt_precision: int | None, decimal_mode: str) -> Column:
    """A MariaDB column as Debezium maps it (time.precision.mode=adaptive_time_microseconds)."""
    t = data_type.lower()
    unsigned = "unsigned" in column_type.lower()
    if t in ("tinyint", "smallint"):
        return int_column(name, "int32" if t == "smallint" and unsigned else "int16", optional)
    if t in ("mediumint", "int", "integer"):
        return int_column(name, "int64" if t != "mediumint" and unsigned else "int32", optional)
    if t == "bigint":
        column = int_column(name, "int64", optional)
        return dataclasses.replace(column, convert=_signed64) if unsigned else column
    if t == "float":
        return float_column(name, "float", optional)
    if t in ("double", "real"):
        return float_column(name, "double", optional)
    if t in ("decimal", "numeric"):
        return decimal_column(name, optional, precision, scale if scale is not None else 0, decimal_mode)
    if t == "bit":
        length = int(precision or 1)
        return bool_column(name, optional) if length == 1 else bits_column(name, optional, length, padded=True)
    if t == "year":
        return named(logical("io.debezium.time.Year", "int32", optional, int, 0), name)
    if t == "date":
        return date_column(name, optional)
    if t == "datetime":
        return timestamp_column(name, optional, dt_precision or 0)
    if t == "timestamp":
        return zoned_timestamp_column(name, optional, dt_precision or 0)
    if t == "time":
        return time_column(name, optional, 6)
    if t in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        return bytes_column(name, optional)
    if t == "json":
        return string_column(name, optional, "io.debezium.data.Json")
    if t in ("enum", "set"):
        allowed = _choices(column_type)
        schema = {"type": "string", "optional": optional, "name": "io.debezium.data.Enum" if t == "enum" else
                  "io.debezium.data.EnumSet", "version": 1, "parameters": {"allowed": ",".join(allowed)}}

        def choice(v: Any) -> str:
            if isinstance(v, (set, frozenset)):  # the binlog reader's SET value: the members in declared order
                return ",".join(a for a in allowed if a in v)
            return v if isinstance(v, str) else str(v)
        return Column(name, schema, choice, None if optional else "")
    return string_column(name, optional)  # char, varchar, text, ...: the text


@dataclass
class MariaTable:
    db: str
    table: str
    columns: list[Column]
    key: list[str]


def gtid_map(text: str) -> dict[tuple[int, int], int]:
    """``"0-1-12,1-2-5"`` -> {(domain, server): seq}; MariaDB's position keeps one GTID per domain."""
    out: dict[tuple[int, int], int] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if part:
            d, s, n = part.split("-")
            out[(int(d), int(s))] = int(n)
    return out


def _domains(text: str) -> dict[int, int]:
    return {d: n for (d, _), n in gtid_map(text).items()}


class MariaDbCdcSource(CdcSource):
    """One bounded pass: the snapshot on the first run (snapshot.mode=initial), then the binlog."""

    connector_class = MARIADB_CDC
    database = "MariaDB"

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
                 connect: Callable[[], Any] | None = None, db_params: Mapping[str, Any] | None = None):
        super().__init__(config, store, kafka, connect, db_params)
        if not db_params:
            raise PermanentError(f"connector '{config.name}': the binlog reader needs the database's address and "
                                 "credentials (db_params from the Airflow Connection of 'db.conn.id')")
        self.params = dict(db_params)
        self.dbs_re = include_list(config["database.include.list"])
        self.flavour = "mysql" if "mysql" in str(config.raw.get("connector.class", "")).lower() else "mariadb"
        self.source_schema = source_schema(f"io.debezium.connector.{self.flavour}.Source", SOURCE_FIELDS)
        self._tables: dict[tuple[str, str], MariaTable | None] = {}
        self._events: dict[tuple[str, str], TableEvents] = {}
        self.default_db = str(self.params.get("database") or "")
        self._end = ""  # the binlog's GTID position when the run began

    def _included(self, db: str, table: str) -> bool:
        if db in SYSTEM_DBS:
            return False
        if self.dbs_re:
            if not included(self.dbs_re, db):
                return False
        elif not self.tables_re and db != self.default_db:
            return False
        return included(self.tables_re, f"{db}.{table}")

    def _prepare(self, conn: Any) -> None:
        cur = conn.cursor()
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT @@gtid_binlog_pos, @@log_bin, @@binlog_format")
        self._end, log_bin, fmt = cur.fetchone()
        cur.close()
        if not log_bin or str(fmt).upper() != "ROW":
            raise PermanentError(f"{self._what()}: MariaDB's binlog must be on and row-based (--log-bin "
                                 f"--binlog-format=ROW --binlog-row-image=FULL); it is log_bin={log_bin}, "
                                 f"binlog_format={fmt}")

    def _pass(self, conn: Any, delivery: SourceDelivery, result: CdcResult) -> dict[str, Any]:
        stored = delivery.stored(self.partition)
        if stored is not None and not isinstance(stored.get("gtids"), str):
            raise OffsetError(f"{self._what()}: the stored offset {stored!r} has no 'gtids' string")
        offset = delivery.resume(self.partition, stored)
        if offset is None:
            if self.config["snapshot.mode"] == "initial":
                offset = self._snapshot(conn, delivery, result)
            else:
                offset = {"gtids": self._end}
                delivery.note(self.partition, offset)
        return self._stream(delivery, offset, self._end, result)

    # -- tables

    def _table(self, conn: Any, db: str, table: str) -> MariaTable | None:
        k = (db, table)
        if k not in self._tables:
            cur = conn.cursor()
            cur.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, "
                        "DATETIME_PRECISION, COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                        "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (db, table))
            cols = cur.fetchall()
            cur.execute("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
                        "TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (db, table))
            key = [r[0] for r in cur.fetchall()]
            cur.close()
            columns = []
            for n, dt_, ct, nullable, p, s, dp, default in cols:
                column = maria_column(n, dt_, ct, nullable == "YES", None if p is None else int(p),
                                      None if s is None else int(s), None if dp is None else int(dp), self.decimal_mode)
                raw = maria_default(default)
                if isinstance(raw, str) and raw.startswith("0000-00-00"):  # a zero date: the epoch, as Debezium
                    raw = "1970-01-01" + raw[10:]
                columns.append(column if raw is None else with_default(column, raw))
            self._tables[k] = None if not cols else MariaTable(db, table, columns, key)
        return self._tables[k]

    def _enc(self, info: MariaTable, snapshot: bool = False) -> TableEvents:
        """The table's encoder; ``snapshot``: the snapshot's, whose TIMESTAMP values lose their trailing
        zeros (Debezium's snapshot reads them through JDBC and writes them so: 01:01:01.5Z where its
        binlog reader writes 01:01:01.500000Z for a TIMESTAMP(6))."""
        k = (info.db, info.table)
        enc = None if snapshot else self._events.get(k)
        if enc is None:
            record = f"{self.prefix}.{info.db}.{info.table}"
            columns = [_trimmed(c) for c in info.columns] if snapshot else info.columns
            enc = TableEvents(topic=debezium_topic(record), record_name=record, columns=columns, key_columns=info.key,
                              source=self.source_schema, key_schemas=self.key_schemas, value_schemas=self.value_schemas)
            if not snapshot:
                self._events[k] = enc
        return enc

    def _source(self, info: MariaTable, *, ts_ms: int, snapshot: str, server_id: int, gtid: str | None, file: str,
                pos: int, row: int) -> dict[str, Any]:
        return {"version": self.version, "connector": self.flavour, "name": self.prefix, "ts_ms": ts_ms,
                "snapshot": snapshot, "db": info.db, "sequence": None, "ts_us": ts_ms * 1000,
                "ts_ns": ts_ms * 1_000_000, "table": info.table, "server_id": server_id, "gtid": gtid, "file": file,
                "pos": pos, "row": row, "thread": None, "query": None}

    # -- the snapshot

    def _snapshot(self, conn: Any, delivery: SourceDelivery, result: CdcResult) -> dict[str, Any]:
        cur = conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = dict(cur.fetchall())
        file, pos = status.get("Binlog_snapshot_file", ""), int(status.get("Binlog_snapshot_position") or 0)
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        gtids = cur.fetchone()[0] or ""
        cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
                    "ORDER BY 1, 2")
        tables = [(d, t) for d, t in cur.fetchall() if self._included(d, t)]
        cur.close()
        infos = [i for i in (self._table(conn, d, t) for d, t in tables) if i is not None]
        log.info("%s: snapshot of %d table(s) at binlog %s:%d (GTID %s)", self._what(), len(infos), file, pos, gtids)
        ts_ms = time.time_ns() // 1_000_000
        for ti, info in enumerate(infos):
            self._snapshot_table(conn, delivery, info, ti, len(infos), ts_ms, file, pos, result)
        conn.rollback()
        seconds = time.time_ns() / 1e9 - ts_ms / 1000
        if seconds > SNAPSHOT_SECONDS_MAX:
            raise PermanentError(snapshot_too_long(self.name, seconds, result.snapshot_records))
        offset = {"gtids": gtids, "file": file, "pos": pos, "snapshot_completed": True}
        delivery.commit(self.partition, offset)
        result.batches += 1
        failpoint("cdc.snapshot_committed")
        return offset

    def _snapshot_table(self, conn: Any, delivery: SourceDelivery, info: MariaTable, ti: int, count: int, ts_ms: int,
                        file: str, pos: int, result: CdcResult) -> None:
        import MySQLdb.cursors

        enc = self._enc(info, snapshot=True)
        names = [c.name for c in info.columns]
        scur = conn.cursor(MySQLdb.cursors.SSCursor)
        scur.execute("SELECT " + ", ".join(_q(n) for n in names) + f" FROM {_q(info.db)}.{_q(info.table)}")
        self._snapshot_rows(delivery, enc, scur.fetchmany, FETCH, names, f"{info.db}.{info.table}",
                            lambda marker: self._source(info, ts_ms=ts_ms, snapshot=marker, server_id=0, gtid=None,
                                                        file=file, pos=pos, row=0),
                            ti == 0, ti == count - 1, result)
        scur.close()

    # -- the binlog

    def _stream(self, delivery: SourceDelivery, offset: dict[str, Any], end: str, result: CdcResult) -> dict[str, Any]:
        start = str(offset.get("gtids") or "")
        end_domains = _domains(end)
        done = _domains(start)
        if all(done.get(d, -1) >= n for d, n in end_domains.items()):
            return offset  # nothing committed since
        from pymysql.err import OperationalError
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import HeartbeatLogEvent, MariadbGtidEvent, QueryEvent, XidEvent
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        settings = {"host": self.params.get("host") or "127.0.0.1", "port": int(self.params.get("port") or 3306),
                    "user": self.params.get("user"), "passwd": self.params.get("password") or ""}
        # A blocking dump, ended by us: at the run's end position, or at the server's first heartbeat
        # (nothing more to send). A non-blocking dump is closed by MariaDB at the binlog's end with a
        # TCP reset that can overtake the events still on their way, and the reader reconnects.
        stream = BinLogStreamReader(
            connection_settings=settings, server_id=self.config["database.server.id"], blocking=True,
            slave_heartbeat=1, is_mariadb=True, auto_position=start or None, resume_stream=True,
            enable_logging=False, only_events=[MariadbGtidEvent, XidEvent, QueryEvent, WriteRowsEvent,
                                               UpdateRowsEvent, DeleteRowsEvent, HeartbeatLogEvent])
        conn = self.connect()  # for information_schema look-ups
        position = dict(gtid_map(start))
        pending: list[tuple[str, bytes | None, bytes | None]] = []
        in_batch = 0
        gtid: str | None = None
        skip = False
        last: dict[str, Any] = offset
        try:
            for ev in stream:
                if isinstance(ev, HeartbeatLogEvent):
                    break  # the server is idle: everything up to now was read
                if isinstance(ev, MariadbGtidEvent):
                    gtid = ev.gtid
                    skip = ev.gtid_seq_no > end_domains.get(ev.domain_id, -1)  # after the run's start: next run
                    # Read already (the reader reconnects by itself after a lost connection): never twice.
                    skip = skip or ev.gtid_seq_no <= done.get(ev.domain_id, -1)
                    if skip and all(done.get(d, -1) >= n for d, n in end_domains.items()):
                        break
                    pending = []
                    continue
                if skip or gtid is None:
                    continue
                if isinstance(ev, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                    # Debezium's source.pos: where the rows event starts (the packet holds where it ends)
                    self._rows(conn, ev, gtid, stream.log_file, ev.packet.log_pos - ev.packet.event_size, pending)
                    continue
                if isinstance(ev, QueryEvent) and ev.query.strip().upper() not in ("COMMIT", "XA COMMIT"):
                    if ev.query.strip().upper() == "BEGIN":
                        continue
                    # DDL is its own transaction (no XID): the position moves past it.
                    self._tables.clear()
                    self._events.clear()
                # the transaction ended (an XID, a COMMIT, or a DDL statement)
                d, s, n = (int(p) for p in gtid.split("-"))
                position = {k: v for k, v in position.items() if k[0] != d}
                position[(d, s)] = n
                done[d] = n
                if pending:
                    self._send(delivery, pending)
                    result.transactions += 1
                    in_batch += len(pending)
                else:
                    result.other_transactions += 1
                pending = []
                gtid = None
                last = {"gtids": _gtid_text(position), "file": stream.log_file, "pos": stream.log_pos}
                stream.auto_position = last["gtids"]  # where a reconnect of the reader resumes
                if in_batch >= self.batch:
                    self._commit(delivery, last, result)
                    in_batch = 0
                if all(done.get(dd, -1) >= nn for dd, nn in end_domains.items()):
                    break
        except OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code == 1236:
                raise PermanentError(
                    f"{self._what()}: the binlog no longer holds the delivered position {start!r} ({exc.args[1]}): "
                    "the changes since then were purged. Recover: reset the connector's offsets (airconnect reset "
                    f"{self.name}) and run it again for a new snapshot (snapshot.mode=initial)") from None
            raise TransientError(f"{self._what()}: reading the binlog: {exc}") from None
        finally:
            stream.close()
            conn.close()
        if last is not offset:
            self._commit(delivery, last, result)
        return last

    def _commit(self, delivery: SourceDelivery, offset: dict[str, Any], result: CdcResult) -> None:
        delivery.commit(self.partition, offset)
        result.batches += 1
        failpoint("cdc.committed")

    def _named(self, info: MariaTable, values: Mapping[str, Any],
               none_sources: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A binlog row's values by column name (UNKNOWN_COL<i> without row metadata: by position);
        an empty SET, which the binlog reader hands out as None (``none_sources`` says so), as ''."""
        out: dict[str, Any] = {}
        for k, v in values.items():
            if v is None and none_sources and none_sources.get(k) == "empty set":
                v = ""
            m = _UNKNOWN.match(k)
            if m is None:
                out[k] = v
                continue
            i = int(m.group(1))
            if i >= len(info.columns):
                raise DataError(f"{self._what()} ({info.db}.{info.table}): the binlog row has more columns than the "
                                "table has now (its columns changed since); set binlog_row_metadata=FULL")
            out[info.columns[i].name] = v
        return out

    def _rows(self, conn: Any, ev: Any, gtid: str, file: str, pos: int,
              out: list[tuple[str, bytes | None, bytes | None]]) -> None:
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent

        db, table = ev.schema, ev.table
        if not self._included(db, table):
            return
        info = self._table(conn, db, table)
        if info is None:
            return
        enc = self._enc(info)
        ts_ms = int(ev.timestamp) * 1000
        for i, row in enumerate(ev.rows):
            source = dumps(self._source(info, ts_ms=ts_ms, snapshot="false", server_id=ev.packet.server_id,
                                        gtid=gtid, file=file, pos=pos, row=i))
            try:
                if isinstance(ev, UpdateRowsEvent):
                    before = enc.row(self._named(info, row["before_values"], row.get("before_none_sources")))
                    after = enc.row(self._named(info, row["after_values"], row.get("after_none_sources")))
                    old_key, new_key = enc.key(before), enc.key(after)
                    if old_key != new_key:
                        out.append((enc.topic, old_key, enc.value(before, None, source, "d")))
                        if self.tombstones:
                            out.append((enc.topic, old_key, None))
                        out.append((enc.topic, new_key, enc.value(None, after, source, "c")))
                    else:
                        out.append((enc.topic, new_key, enc.value(before, after, source, "u")))
                elif isinstance(ev, DeleteRowsEvent):
                    before = enc.row(self._named(info, row["values"], row.get("none_sources")))
                    key = enc.key(before)
                    out.append((enc.topic, key, enc.value(before, None, source, "d")))
                    if self.tombstones:
                        out.append((enc.topic, key, None))
                else:
                    after = enc.row(self._named(info, row["values"], row.get("none_sources")))
                    out.append((enc.topic, enc.key(after), enc.value(None, after, source, "c")))
            except DataError as exc:
                raise DataError(f"{self._what()} ({db}.{table}, GTID {gtid}): {exc}") from None


def _trimmed(column: Column) -> Column:
    if column.schema.get("name") != "io.debezium.time.ZonedTimestamp":
        return column
    return dataclasses.replace(column, convert=lambda v: zoned_iso(v, 0))


def _gtid_text(position: Mapping[tuple[int, int], int]) -> str:
    return ",".join(f"{d}-{s}-{n}" for (d, s), n in sorted(position.items()))


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
