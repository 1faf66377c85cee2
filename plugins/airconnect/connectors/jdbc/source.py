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
transaction carrying the batch and its offset (see :mod:`airconnect.core.delivery`); bulk mode writes a whole
snapshot in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import zoneinfo
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from airconnect.connectors.jdbc.dialect import Dialect, _db_error, _detail, _missing_relation, dialect_of
from airconnect.connectors.jdbc.offset import UTC, from_micros, micros_of, ts_micros_from_offset, ts_offset
from airconnect.connectors.jdbc.pgcopy import CopyChunks, server_rows
from airconnect.connectors.jdbc.rows import Column, Fragments, describe_columns, fragments_for, values_writer
from airconnect.connectors.jdbc.spec import JDBC_SOURCE, topic_name
from airconnect.core.config import ConnectorConfig, new_topic_settings
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.jsonexact import iso_utc
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

FETCH_ROWS: Final = 10000  # rows a fetch from the server-side cursor brings at most


class _Chunks:
    """The cursor's rows, ``size`` at a time, the next chunk fetched on a thread of its own while
    the caller writes and sends this one: the database computes and sends the next rows (and the
    driver waits for them without the GIL) while the records of these are made and produced, so
    the run takes about the longer of the two rather than their sum. At most one chunk waits:
    memory stays a chunk or two, whatever the table's size. A fetch's error is raised by
    :meth:`next`, where the fetch would have raised it.

    ``ahead=False`` fetches in :meth:`next` itself: for MySQL/MariaDB's ``SSCursor``, whose rows
    stream anyway (the server sends ahead into the connection while the client works; and
    mysqlclient lets go of the GIL for every row, which a second thread would turn into a
    hand-over per row)."""

    def __init__(self, cur: Any, size: int, ahead: bool = True):
        self._cur, self._size = cur, size
        self._ready: queue.Queue[tuple[Sequence[Sequence[Any]] | None, BaseException | None]] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if ahead:
            self._thread = threading.Thread(target=self._fetch, name="airconnect-jdbc-fetch", daemon=True)
            self._thread.start()

    def _fetch(self) -> None:
        try:
            while not self._stop.is_set():
                rows = self._cur.fetchmany(self._size)
                self._put((rows, None))
                if not rows:
                    return
        except Exception as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._put((None, exc))

    def _put(self, item: tuple[Sequence[Sequence[Any]] | None, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Sequence[Sequence[Any]]:
        """The next chunk; empty at the end."""
        if self._thread is None:
            return cast(Sequence[Sequence[Any]], self._cur.fetchmany(self._size))
        rows, error = self._ready.get()
        if error is not None:
            raise error
        return rows or []

    def close(self) -> None:
        """Stops fetching (after a fetch under way) before the cursor may be closed."""
        self._stop.set()
        while self._thread is not None and self._thread.is_alive():
            try:
                self._ready.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)


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


def _each_chunk(chunks: _Chunks | CopyChunks, consume: Callable[[Sequence[Any]], None], what: str) -> None:
    """``consume(rows)`` for each chunk, in order; an error fetching them as the database's."""
    def db_error(exc: BaseException) -> Exception:
        return _db_error(exc, f"{what}: fetching rows")

    if isinstance(chunks, CopyChunks):
        chunks.run(consume, db_error)
        return
    while True:
        try:
            rows = chunks.next()
        except Exception as exc:  # noqa: BLE001
            raise db_error(exc) from None
        if not rows:
            return
        consume(rows)


def _same(row: Any) -> Any:
    return row


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
        # The records compressed (lz4) unless the Kafka connection says otherwise: a row's record is
        # mostly its schema, the same for every row, and the broker then has a third of the work
        # (measured: 1.4-1.6 s of broker CPU per 300,000 records against 3.5-4.2 s uncompressed).
        # Consumers read them as they are; the bytes of each record do not change.
        self.kafka = dict(kafka)
        if "compression.type" not in self.kafka:
            self.kafka.setdefault("producer.compression.type", "lz4")
        self.connect = connect
        self.store = store
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
        task = self.config.task  # one task of a split: its tables only (offsets stay keyed by table)
        tables = task["tables"] if task is not None and "tables" in task else self.config["table.whitelist"]
        return [({"table": t}, t, topic_name(prefix, t)) for t in tables]

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
            with SourceDelivery(self.name, self.store, self.kafka, progress=progress,
                                new_topics=new_topic_settings(self.config), writer_per_partition=True) as delivery:
                for partition, source, topic in self.sources():
                    delivery.ensure_topic(topic)
                    table = TableResult(source if "table" in partition else "query", topic)
                    result.tables.append(table)
                    self._read(conn, dialect, delivery, partition, source, topic, table)
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

    def _read(self, conn: Any, dialect: Dialect, delivery: SourceDelivery, partition: dict[str, str], source: str,
              topic: str, table: TableResult) -> None:
        what = f"connector '{self.name}' ({table.source})"
        stored = delivery.stored(partition)
        self._check_offset(partition, stored)
        offset = delivery.resume(partition, stored)
        table.recovered = offset != stored
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
        key_idx = [names.index(c) for c in key_cols]
        # PostgreSQL writes the rows' JSON itself where it writes it as the writers do (pgcopy);
        # otherwise the fetch's fast path (rows.Fragments): DECIMAL and timestamp values come as
        # their JSON text.
        server = server_rows(conn, description, columns, nullable, key_idx, self.zone, dialect.quote, record_name,
                             self.config["value.converter.schemas.enable"], f"{self.name}.Key",
                             self.config["key.converter.schemas.enable"]) if dialect.name == "postgres" else None
        frag = None if server is not None else fragments_for(dialect, conn, description, columns, self.zone)
        to_values = values_writer(columns, record_name, self.config["value.converter.schemas.enable"], fragments=frag)
        to_keys = self._key_writer([columns[i] for i in key_idx], key_idx, frag) if key_idx else None
        view: Callable[[Any], Sequence[Any]] = server.row if server is not None else _same

        def raw(i: int, v: Any) -> Any:
            """Column ``i``'s value as the driver gives it (the fast path's JSON text read back)."""
            return v if frag is None else frag.value(columns[i], v)

        sql, params, order = self._query(dialect, frm, offset, now, columns)
        ts_idx = names.index(self.config["timestamp.column.name"][0]) if "timestamp" in self.mode else None
        inc_idx = names.index(self.config["incrementing.column.name"]) if "incrementing" in self.mode else None
        ts_cols = [names.index(c) for c in self.config["timestamp.column.name"]] if "timestamp" in self.mode else []
        naive_ts = columns[ts_idx].naive_ts if ts_idx is not None else False
        # Counted: identical rows of a table without a key share one (timestamp, row) pair, and the
        # reconciliation needs how many rows were delivered inside the window.
        recent: Counter[tuple[int, str]] = Counter((int(m), str(k)) for m, k in (offset or {}).get("recent", []))
        log.info("%s: %s -> %s from %s%s", what, self.mode, topic, _public(offset) or "the beginning",
                 " (PostgreSQL writes the records' JSON: COPY)" if server is not None else "")

        def ident(line: Any) -> str:
            """What identifies a row inside the lookback window: its key (or incrementing id)."""
            row = view(line)
            if len(key_idx) == 1:
                return str(raw(key_idx[0], row[key_idx[0]]))
            if key_idx:
                return "|".join([str(raw(i, row[i])) for i in key_idx])
            if inc_idx is not None:
                return str(raw(inc_idx, row[inc_idx]))
            return (server.envelope(line) if server is not None else to_values([row])[0]).decode()

        fetch = min(self.batch, FETCH_ROWS)
        cur = dialect.server_cursor(conn, fetch) if server is None else conn.cursor()
        chunks: _Chunks | CopyChunks | None = None
        try:
            try:
                if server is not None:
                    chunks = CopyChunks(conn, server.copy_sql(cur.mogrify(sql, params).decode(), order), fetch,
                                         server.prepare)
                elif frag is None:
                    cur.execute(sql + order, params)
                else:
                    with frag.installed(conn, cur):
                        cur.execute(sql + order, params)
            except Exception as exc:  # noqa: BLE001
                raise _db_error(exc, f"{what}: querying") from None

            def records(rows: Sequence[Any]) -> tuple[list[bytes], list[bytes] | None]:
                """The rows' values and keys; a value that cannot be written names its row."""
                try:
                    if server is not None:
                        return server.records(rows)
                    return to_values(rows), to_keys(rows) if to_keys else None
                except DataError:
                    for row in rows:
                        try:
                            to_values([view(row)])
                        except DataError as exc:
                            raise DataError(f"{what}: row {ident(row)}: {exc}") from None
                    raise

            if chunks is None:
                chunks = _Chunks(cur, fetch, ahead=dialect.name == "postgres")
            if self.mode == "bulk":
                self._bulk(chunks, delivery, topic, records, table, what)
                return
            # A batch is one transaction, streamed: each fetched chunk's records go to Kafka at once
            # (memory holds a chunk, whatever batch.max.rows is), and the batch's end commits them
            # with the new offset. A crash or an error before the commit leaves none of them visible.
            values: list[bytes] = []
            keys: list[bytes] = []
            batch_rows: list[Sequence[Any]] = []  # with a lookback window: the batch's rows still inside it
            count = 0  # rows in the batch
            # Rows delivered at or below the offset (its "delivered_at_or_below"): every row a batch
            # delivers is at or below the offset that batch commits, so it grows by the batch's count.
            delivered_total = baseline or 0
            previous = offset
            last_row: Sequence[Any] | None = None  # the batch's last row: its timestamp and id make the offset
            lookback_us = int(self.lookback.total_seconds() * 1_000_000)

            ts_i = cast(int, ts_idx)  # row_micros is called in the timestamp modes only

            def row_micros(line: Any) -> int:
                row = view(line)
                at = ts_i if row[ts_i] is not None or len(ts_cols) == 1 else next(
                    (j for j in ts_cols if row[j] is not None), ts_i)
                return micros_of(self._aware(raw(at, row[at]), naive_ts))

            def send() -> None:
                nonlocal batch_rows
                if values:
                    delivery.send(topic, values, keys if to_keys else None)
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
                nonlocal count, batch_rows, delivered_total
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
                new = self._commit(delivery, partition, delivered, previous, last_ts,
                                   raw(inc_idx, view(last_row)[inc_idx]) if inc_idx is not None else None, stored_ts,
                                   recent, table, delivered_total)
                count, batch_rows = 0, []
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
            def consume(rows: Sequence[Any]) -> None:
                """One chunk. Its rows go in runs written at once (rows.values_writer); one row at a
                time only where a row may be one the stored offset remembers, or a batch may be cut."""
                nonlocal skip_until, previous, last_row, count, batch_rows
                i, n = 0, len(rows)
                while i < n:
                    if skip_until is not None or count >= batch:
                        row = rows[i]
                        if skip_until is not None:
                            row_ts = row_micros(row)
                            if row_ts > skip_until:
                                skip_until = None  # well past the remembered window: nothing later is in it
                            elif (row_ts, ident(row)) in skip:
                                table.skipped_already_delivered += 1
                                i += 1
                                continue
                        # A batch is cut before this row, except inside a group of equal timestamps
                        # in timestamp mode (the offset could not tell the group's rows apart).
                        if count >= batch and not (timestamp_only and row_micros(row) == row_micros(cast(Sequence[Any], last_row))):
                            previous = commit()
                        end = i + 1
                    else:
                        end = min(n, i + batch - count)
                    run = rows if i == 0 and end == n else rows[i:end]
                    run_values, run_keys = records(run)
                    values.extend(run_values)
                    if run_keys is not None:
                        keys.extend(run_keys)
                    if remember:
                        batch_rows += run
                    last_row = run[-1]
                    count += len(run)
                    i = end
                send()

            _each_chunk(chunks, consume, what)
            if count:
                previous = commit()
            elif (previous is offset and offset is not None and baseline is not None
                  and baseline != offset.get("delivered_at_or_below")):
                # No batch this run, but the count moved (rows deleted, a difference accepted with
                # reconcile.on.mismatch=warn, or an offset from before the count): journal the new
                # count in a transaction of its own, as a batch would.
                previous = {**offset, "delivered_at_or_below": baseline}
                delivery.commit(partition, previous)
            table.offset = previous
        finally:
            if chunks is not None:
                chunks.close()
            try:
                cur.close()
            except Exception:  # noqa: BLE001
                pass

    def _bulk(self, chunks: _Chunks | CopyChunks, delivery: SourceDelivery, topic: str,
              records: Callable[[Sequence[Sequence[Any]]], tuple[list[bytes], list[bytes] | None]],
              table: TableResult, what: str) -> None:
        """A whole snapshot in one transaction: a crash (or an error) mid-snapshot leaves none of it visible."""
        # (an error: the delivery aborts the batch)
        _each_chunk(chunks, lambda rows: delivery.send(topic, *records(rows)), what)
        table.records += delivery.commit_snapshot().records
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

    def _key_writer(self, key_columns: Sequence[Column], indexes: Sequence[int],
                    fragments: Fragments | None) -> Callable[[Sequence[Sequence[Any]]], list[bytes]]:
        return values_writer(key_columns, f"{self.name}.Key", self.config["key.converter.schemas.enable"], indexes,
                             fragments)

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

    def _commit(self, delivery: SourceDelivery, partition: dict[str, str],
                delivered: list[tuple[int, str]], previous: dict[str, Any] | None,
                batch_last_ts: int | None, batch_last_inc: Any, last_micros: int | None,
                recent: Counter[tuple[int, str]], table: TableResult,
                delivered_at_or_below: int) -> dict[str, Any] | None:
        """Ends the batch (its records were sent) at the new offset."""
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
        table.records += delivery.commit(partition, new).records
        table.batches += 1
        return new
