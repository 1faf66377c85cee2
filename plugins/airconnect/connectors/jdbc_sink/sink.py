"""JDBC sink: writes struct records into database tables, like Confluent's ``JdbcSinkConnector``
(``insert.mode`` insert/upsert/update, ``pk.mode``, ``delete.enabled``, ``auto.create``,
``auto.evolve``, ``table.name.format``), exactly once.

Records
  Values are read as the converters wrote them (:func:`airconnect.core.data.to_connect`): a
  JsonConverter envelope holding a struct, whose fields are the columns (the JDBC source's
  records are such structs). A record without a schema, or whose value is not a struct, is
  refused as Confluent's sink refuses it (a :class:`DataError` naming the connector and the
  record, or a dead letter with ``errors.tolerance=all``). The key is read only when
  ``pk.mode=record_key`` needs it (a struct, or a primitive with one ``pk.fields`` name).

Tables
  A topic's table is ``table.name.format`` with ``${topic}`` replaced; names are quoted by the
  dialect's rules, so ``売上`` and ``Sales Table`` are tables like any other. A missing table is
  created from the record schema (``auto.create``; Connect types to SQL types per dialect:
  Decimal -> DECIMAL, Date -> DATE, Timestamp -> TIMESTAMP / DATETIME(6), strings -> TEXT, key
  strings on MariaDB -> VARCHAR(256)); a field the table lacks is added (``auto.evolve``, optional
  fields only, as in Confluent). Plain inserts into PostgreSQL go by ``COPY ... FROM STDIN``;
  other writes in multi-row statements of ``batch.size`` rows (``INSERT ... VALUES (...),(...)``,
  with ``ON CONFLICT ... DO UPDATE`` / ``ON DUPLICATE KEY UPDATE`` for upserts; ``UPDATE`` and
  ``DELETE`` statements batched by the driver). A topic's recurring envelope has only its payload
  parsed (:class:`FastPayload`), with the same rows as :func:`to_connect` gives.

Exactly once
  The sink's offsets live in the target database, in ``airconnect_sink_offsets(connector, topic,
  kafka_partition, next_offset)``, and are written in the same transaction as the rows (one
  transaction per ``checkpoint.records`` records and at the end of the run). At the start, the
  table's offsets are authoritative: a run killed after its commit and before the Airflow
  Variable was saved resumes after the committed rows, and a run killed before its commit left
  nothing (the transaction rolled back). After each commit the Variable and the consumer group
  ``connect-<name>`` are updated, so Kafka's tools and ``airconnect lag`` see the progress. Locks
  held by the run's database session, one per topic-partition it writes (see
  :meth:`JdbcSink._start_session`), keep a second run (a zombie task of an earlier split) from
  writing the same records at the same time. DDL (``auto.create``, ``auto.evolve``) runs in a
  transaction of its own, after the rows before it are committed with their offsets (MariaDB
  commits implicitly at DDL), under the table's DDL lock (:meth:`JdbcSink.ddl_lock`).

Tasks
  With ``tasks.max`` above 1 the topics' partitions are dealt among tasks (``core.split``); a
  task reads and writes its partitions and their rows of the offsets table only.

Records that cannot be written
  A value that does not fit its column (too long, out of range, NULL into NOT NULL, a duplicate
  key in insert mode) fails its batch; the batch is rolled back to a savepoint and written again
  row by row, each under its own savepoint, to find the record(s) at fault. With
  ``errors.tolerance=all`` those go to the dead-letter topic (acknowledged before the transaction
  that moves the offsets past them commits); with ``none`` the run commits everything before the
  first of them and stops with a :class:`DataError` naming it, its offset left at that record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import re
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from confluent_kafka import Message

from airconnect.connectors.jdbc.dialect import _db_error, _detail, dialect_of
from airconnect.connectors.jdbc_sink.spec import JDBC_SINK, KAFKA_PK_NAMES, OFFSETS_TABLE, regex_topics, table_name
from airconnect.connectors.jdbc_sink.sql import LOGICAL, PRIMITIVES, Column, SinkSql, record_error
from airconnect.core.config import ConnectorConfig
from airconnect.core.data import STRING, Schema, to_connect
from airconnect.core.deadletters import SinkDeadLetters, tolerates
from airconnect.core.delivery import SinkDelivery
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.failpoints import failpoint
from airconnect.core.jsonexact import parse_timestamp
from airconnect.core.kafka_client import Admin, sink_group_id
from airconnect.core.offsets import KeyValueStore
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

UTC: Final = dt.timezone.utc
#: Bound parameters per statement: PostgreSQL's protocol carries at most 65,535.
MAX_PARAMS: Final = 65535
#: Seconds a task waits for another's DDL on the same table (auto.create, auto.evolve).
DDL_WAIT: Final = 120.0
TopicPartition = tuple[str, int]


@dataclass
class JdbcSinkResult:
    connector: str
    records: int = 0  # records read and handled (written, deleted, skipped or dead-lettered)
    written: int = 0  # records written as rows (inserted, upserted or updated)
    deleted: int = 0  # tombstones applied as deletes
    dead_letters: int = 0
    transactions: int = 0
    tables_created: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)
    resumed_from_database: bool = False
    seconds: float = 0.0
    offsets: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "tables_created": list(self.tables_created),
                "columns_added": list(self.columns_added), "offsets": dict(self.offsets)}


class RecordError(Exception):
    """A record the sink cannot write; ``key`` names the configuration key it is about, if any."""

    def __init__(self, message: str, key: str | None = None, stage: str = "TASK_PUT", *, fatal: bool = False):
        super().__init__(message)
        self.key = key
        self.stage = stage
        #: The table or the configuration is at fault, not the record: the run stops even with
        #: errors.tolerance=all (every record after it would fail alike).
        self.fatal = fatal


@dataclass
class Layout:
    """How records of one schema (value, and key where it matters) become rows of one table."""

    columns: list[Column]
    extract: Callable[[Message, Any, Any], tuple[Any, ...]]  # (msg, key, value struct) -> row
    key_width: int  # how many of the row's leading values are the key
    statements: dict[tuple[str, int], str] = field(default_factory=dict)
    #: row -> its line in COPY's text format (PostgreSQL, insert mode), compiled when first needed.
    copy_line: Callable[[tuple[Any, ...]], str] | None = None

    @property
    def key_columns(self) -> list[Column]:
        return [c for c in self.columns if c.key]


class JdbcSink:
    """Writes every new committed record of its topics into tables; see the module's documentation."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any], connect: Any = None):
        if config.cls is not JDBC_SINK:
            raise ConfigError(f"is {config.cls.name}, not a JDBC sink", connector=config.name, key="connector.class")
        if connect is None:
            raise ConfigError("the JDBC sink needs a database connection factory (the Airflow Connection named by "
                              "db.conn.id)", connector=config.name, key="db.conn.id")
        self.config = config
        self.name = config.name
        self.store = store
        self.kafka = dict(kafka)
        self.connect = connect
        self.mode: str = config["insert.mode"]
        self.pk_mode: str = config["pk.mode"]
        self.pk_fields: list[str] = list(config["pk.fields"])
        self.whitelist: set[str] = set(config["fields.whitelist"])
        self.delete_enabled: bool = config["delete.enabled"]
        self.batch_size: int = config["batch.size"]
        self.checkpoint_records: int = config["checkpoint.records"]
        self.zone = zoneinfo.ZoneInfo(config["db.timezone"])
        self._utc = config["db.timezone"] in ("UTC", "Etc/UTC")
        self._postgres = True  # (set from the connection at the run's start)
        self.value_schemas: bool = config["value.converter.schemas.enable"]
        self.key_schemas: bool = config["key.converter.schemas.enable"]
        self.group = sink_group_id(config.name)
        self.result = JdbcSinkResult(self.name)
        self._tables: dict[str, Table] = {}
        self._fast: dict[str, FastPayload] = {}  # topic -> the envelope its last record had
        self.partitions: list[TopicPartition] | None = None  # the run's share (None: no partition yet)
        self._stopped: dict[TopicPartition, tuple[int, str]] = {}  # partition -> (offset, why) of the record that stops the run
        self._db_offsets: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}  # after the records handled so far
        self.dead: SinkDeadLetters | None = None

    # ------------------------------------------------------------------ the run

    def topics(self, counts: Mapping[str, int] | None = None) -> list[str]:
        if self.config["topics"]:
            return list(self.config["topics"])
        names = list(Admin(self.kafka).topics() if counts is None else counts)
        return regex_topics(self.config, names)  # never its own dead letters

    def _share(self, topics: list[str], counts: Mapping[str, int]) -> list[TopicPartition] | None:
        """The topic-partitions this run writes, in order: its task's share of a split, or every
        partition of its topics now (a connector of one task); ``None``: no partition yet."""
        task = self.config.task
        if task is not None and "partitions" in task:
            mine = {(str(t), int(p)) for t, p in task["partitions"]}
        else:
            mine = {(t, p) for t in topics for p in range(counts.get(t, 0))}
        return sorted(mine) or None

    def run(self) -> JdbcSinkResult:
        counts = Admin(self.kafka).topics()
        topics = self.topics(counts)
        self.partitions = self._share(topics, counts)
        progress = Progress(log, f"connector '{self.name}' ({', '.join(topics) or 'no topic yet'} -> database)")
        self.conn = self.connect()
        try:
            self.cur = self.conn.cursor()
            self.sql = SinkSql(dialect_of(self.conn))
            self._postgres = self.sql.postgres
            self._psycopg2 = type(self.conn).__module__.startswith("psycopg2")
            self._start_session()
            self.dead = SinkDeadLetters(self.config, self.kafka, topics) if tolerates(self.config) and topics else None
            with SinkDelivery(self.name, self.store, self.kafka, topics, group=self.group, dead_letters=self.dead,
                              progress=progress, config=self.config,
                              partitions=None if self.partitions is None else [list(tp) for tp in self.partitions],
                              ) as delivery:
                self.delivery = delivery
                self._run(topics, progress)
        finally:
            try:
                self.conn.rollback()  # whatever a failure left open; a committed transaction is kept
            except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
                pass
            self.conn.close()
        progress.count = self.result.records
        progress.done()
        self.result.seconds = round(progress.seconds, 3)
        return self.result

    def _run(self, topics: list[str], progress: Progress) -> None:
        starts = self.delivery.starts()
        stored = {(t, p): o for t, parts in starts.items() for p, o in parts.items()}
        for tp, offset in self._db_offsets.items():
            if tp[0] in starts:
                starts[tp[0]][tp[1]] = offset
        behind = {tp: o for tp, o in self._db_offsets.items() if tp[0] in starts and stored.get(tp) != o}
        if behind:
            log.warning("connector '%s': the database's offsets (%s) differ from the Variable's: the previous run "
                        "committed rows and died before saving it; resuming after the committed rows (nothing is "
                        "written twice) and repairing the Variable", self.name, _offsets_text(behind))
            self.result.resumed_from_database = True
            self.delivery.checkpoint(behind)
        positions = self._positions
        pending = 0
        handle, every = self._handle, self.checkpoint_records
        for msg in self.delivery.records(starts):
            try:
                handle(msg)
            except RecordError as exc:
                self._bad(msg, exc)
            positions[(msg.topic(), msg.partition())] = msg.offset() + 1
            pending += 1
            if self._stopped:
                break
            if pending >= every:
                self.result.records += pending
                self._checkpoint(positions)
                progress.add(pending)
                pending = 0
        self.result.records += pending
        if not self._stopped:
            positions = {k: pp.next_offset for k, pp in self.delivery.positions.items()}
        if self._stopped or any(self._db_offsets.get(tp) != o for tp, o in positions.items()) or self._buffered():
            self._checkpoint(positions)
        self.result.offsets = {f"{t}[{p}]": o for (t, p), o in sorted(self._db_offsets.items()) if t in topics}

    def _start_session(self) -> None:
        """Session settings, the run's locks, the offsets table and what it holds for its partitions.

        A run that writes topic-partitions shares the connector's lock with the connector's other
        runs (the tasks of a split) and takes each of its partitions' locks, in order: two runs
        never write one partition (a zombie task of an earlier split cannot write it twice). A run
        with no partition yet takes the connector's lock alone. A reset or an alter of the offsets
        takes the connector's lock too: it waits for every run, and they for it."""
        try:
            task = self.config.task
            self.sql.prepare_session(self.cur, self.config["db.timezone"],
                                     side_by_side=task is not None and "partitions" in task)
            if self.partitions is None:
                if not self.sql.try_lock(self.cur, self.name):
                    raise TransientError(f"connector '{self.name}': another run of this connector is writing into "
                                         "the database (it holds the connector's lock); try again when it has finished")
            else:
                if not self.sql.try_share(self.cur, self.name):
                    raise TransientError(f"connector '{self.name}': its offsets are being reset or altered, or a run "
                                         "of it with no topic yet is writing (either holds the connector's lock); "
                                         "try again when it has finished")
                for topic, p in self.partitions:
                    if not self.sql.try_lock_partition(self.cur, self.name, topic, p):
                        raise TransientError(f"connector '{self.name}': another run is writing partition "
                                             f"{topic}[{p}]; try again when it has finished")
            if self.sql.table_columns(self.cur, OFFSETS_TABLE) is None:  # (tasks starting at once take turns)
                with self.ddl_lock(OFFSETS_TABLE):
                    self.cur.execute(self.sql.create_offsets_table())
                    self.conn.commit()
            self.conn.commit()
            self.cur.execute(self.sql.select_offsets(), (self.name,))
            mine = None if self.partitions is None else set(self.partitions)
            self._db_offsets = {(t, int(p)): int(o) for t, p, o in self.cur.fetchall()
                                if mine is None or (t, int(p)) in mine}
            self.conn.commit()
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            if isinstance(exc, PermanentError):
                raise
            raise _db_error(exc, f"connector '{self.name}': preparing the database") from exc

    # ------------------------------------------------------------------ records

    def _decode_key(self, msg: Message) -> tuple[Any, Any]:
        try:
            return to_connect(msg.key(), schemas_enable=self.key_schemas)
        except DataError as exc:
            raise RecordError(f"its key cannot be read: {exc}", key="key.converter", stage="KEY_CONVERTER") from None

    def _handle(self, msg: Message) -> None:
        value = msg.value()
        record = getattr(msg, "record", None)  # after transforms: the record's topic is the routed one
        topic = msg.topic() if record is None else record.topic
        fast = self._fast.get(topic) if value is not None else None
        if fast is not None:
            payload = fast.payload(value)
            knode = None
            if payload is not None and fast.key is not None:  # pk.mode record_key: the key's envelope too
                raw_key = msg.key()
                knode = None if raw_key is None else fast.key.payload(raw_key)
                if knode is None:
                    payload = None
            if payload is not None:
                try:
                    row = fast.row(msg, knode, payload)
                except (ValueError, TypeError, ArithmeticError):
                    row = None  # the general path says what is wrong
                if row is not None:
                    t = fast.table
                    if t.batch_layout is fast.layout and t.batch_op == "write":
                        t.rows.append(row)
                        t.msgs.append(msg)
                        if len(t.rows) >= self.batch_size:
                            t.flush()
                    else:
                        t.add(fast.layout, "write", row, msg)
                    return
        table = self._table(topic)
        key_schema = key = None
        if self.pk_mode == "record_key":
            key_schema, key = self._decode_key(msg)
            if key is None:
                raise RecordError("has no key, and pk.mode 'record_key' takes the primary key from it", key="pk.mode")
        if value is None:
            if not self.delete_enabled:
                raise RecordError("has no value (a tombstone); the JDBC sink writes struct values, and deletes by "
                                  "key only with delete.enabled=true and pk.mode 'record_key'", key="delete.enabled")
            if table.columns() is None:
                return  # no table yet: nothing to delete
            layout = self._key_layout(table, key_schema)
            table.add(layout, "delete", layout.extract(msg, key, None), msg)
            return
        try:
            schema, struct = to_connect(value, schemas_enable=self.value_schemas)
        except DataError as exc:
            raise RecordError(f"its value cannot be read: {exc}", key="value.converter", stage="VALUE_CONVERTER") from None
        if schema is None or _type(schema) != "struct":
            what = "has no schema (a schemaless value)" if schema is None else f"has a {_type(schema)} value"
            raise RecordError(f"{what}; the JDBC sink, like Confluent's, writes only struct values with a schema "
                              "(JsonConverter with schemas.enable=true): each field is a column", key="value.converter")
        layout = table.layout(schema, key_schema)
        table.add(layout, "write", layout.extract(msg, key, struct), msg)
        known = self._fast.get(topic)
        raw_key = msg.key() if key_schema is not None else None
        if known is None or not known.knows(value, raw_key):
            # (a record of the known envelopes that took this path has a node the fast path leaves
            # to to_connect: nothing new to learn)
            learned = FastPayload.learn(value, raw_key, table, layout,
                                        self._fast_row(schema, layout.columns, key_schema))
            if learned is not None:
                self._fast[topic] = learned

    def _bad(self, msg: Message, exc: RecordError) -> None:
        """A record that cannot be written: to the dead-letter topic, or the run stops at it."""
        where = f"record {msg.topic()}[{msg.partition()}]@{msg.offset()}"
        if self.dead is not None and not exc.fatal:
            error = DataError(f"connector '{self.name}': {where}: {exc}")
            self.dead.send(msg, error, exc.stage)
            self.result.dead_letters += 1
            return
        tp = (msg.topic(), msg.partition())
        if tp not in self._stopped or msg.offset() < self._stopped[tp][0]:
            key = f", key '{exc.key}'" if exc.key else ""
            self._stopped[tp] = (msg.offset(), f"connector '{self.name}'{key}: {where}: {exc}")

    def _table(self, topic: str) -> Table:
        table = self._tables.get(topic)
        if table is None:
            name = table_name(self.config["table.name.format"], topic)
            table = next((t for t in self._tables.values() if t.name == name), None) or Table(self, name)
            self._tables[topic] = table
        return table

    def _buffered(self) -> bool:
        return any(t.rows for t in self._tables.values())

    # ------------------------------------------------------------------ layouts

    def _key_layout(self, table: Table, key_schema: Any) -> Layout:
        cache_key = ("delete", key_schema)
        layout = table.layouts.get(cache_key)
        if layout is None:
            columns, getters = self._key_columns(key_schema, None, table.name)
            layout = Layout(columns, _extractor(getters), len(columns))
            table.layouts[cache_key] = layout
        return layout

    def _key_columns(self, key_schema: Any, value_schema: Any, table: str) -> tuple[list[Column], list[Callable[..., Any]]]:
        """The key columns of ``pk.mode`` and how each takes its value from ``(msg, key, value)``."""
        columns: list[Column] = []
        getters: list[Callable[..., Any]] = []
        if self.pk_mode == "kafka":
            names = self.pk_fields or list(KAFKA_PK_NAMES)
            columns = [Column(names[0], "string", False, True), Column(names[1], "int32", False, True),
                       Column(names[2], "int64", False, True)]
            getters = [lambda m, k, v: m.topic(), lambda m, k, v: m.partition(), lambda m, k, v: m.offset()]
        elif self.pk_mode == "record_key":
            if key_schema is None:
                raise RecordError("its key has no schema; pk.mode 'record_key' takes the key columns' types from it "
                                  "(key.converter.schemas.enable=true)", key="pk.mode", fatal=True)
            if _type(key_schema) == "struct":
                fields = {f.name: f for f in key_schema.fields}
                names = self.pk_fields or list(fields)
                for n in names:
                    if n not in fields:
                        raise RecordError(f"its key struct has no field {n!r} (its fields: {', '.join(fields)}); "
                                          f"pk.fields names the key's fields for table {table!r}", key="pk.fields", fatal=True)
                    columns.append(self._column(n, fields[n].schema, key=True))
                    getters.append(self._converter(columns[-1], lambda m, k, v, n=n: k.get(n)))
            else:
                if len(self.pk_fields) != 1:
                    raise RecordError(f"its key is a {_type(key_schema)}, not a struct: pk.fields must name exactly one "
                                      f"column for it (got {len(self.pk_fields)})", key="pk.fields", fatal=True)
                columns.append(self._column(self.pk_fields[0], key_schema, key=True))
                getters.append(self._converter(columns[-1], lambda m, k, v: k))
        elif self.pk_mode == "record_value":
            fields = {f.name: f for f in value_schema.fields}
            names = self.pk_fields or list(fields)
            for n in names:
                if n not in fields:
                    raise RecordError(f"its value struct has no field {n!r} (its fields: {', '.join(fields)}); "
                                      f"pk.fields names the value's fields for table {table!r}", key="pk.fields", fatal=True)
                columns.append(self._column(n, fields[n].schema, key=True))
                getters.append(self._converter(columns[-1], _field_getter(n)))
        return columns, getters

    def _value_layout(self, table: Table, schema: Any, key_schema: Any) -> Layout:
        columns, getters = self._key_columns(key_schema, schema, table.name)
        keys = {c.name for c in columns}
        for f in schema.fields:
            if f.name in keys or (self.whitelist and f.name not in self.whitelist):
                continue
            columns.append(self._column(f.name, f.schema, key=False))
            getters.append(self._converter(columns[-1], _field_getter(f.name)))
        if not columns:
            raise RecordError(f"gives no column for table {table.name!r} (no key field, and no value field "
                              "fields.whitelist lets through)", key="fields.whitelist", fatal=True)
        return Layout(columns, _extractor(getters), len(keys))

    def _fast_row(self, schema: Schema, columns: Sequence[Column],
                  key_schema: Schema | None = None) -> Callable[[Message, Any, Any], Any] | None:
        """``(msg, key, payload) -> row``, or ``None`` for a payload the fast path leaves to
        :func:`to_connect`: every field of the schema checked (:func:`_node_check`), then the
        columns' values, converted where a column needs it. Compiled into one function, like the
        JDBC source's row writer: no loop, no call per field but the conversions. ``None`` if the
        schema has a field with no fast form."""
        env: dict[str, Any] = {"_Decimal": Decimal}
        lines: list[str] = []
        node: dict[tuple[bool, str], str] = {}  # (from the key?, field) -> its variable
        parts = [(False, "v", schema)]
        if self.pk_mode == "record_key":
            if key_schema is None or key_schema.type != "struct":
                return None  # (a primitive key: the general path)
            parts.append((True, "k", key_schema))
        for from_key, src, struct in parts:
            for i, f in enumerate(struct.fields):
                check = _node_check(f.schema)
                if check is None:
                    return None
                var = f"{src}{i}"
                # A missing optional field is null to to_connect too; a missing required one fails the check.
                lines += [f"    {var} = {src}.get({f.name!r})",
                          f"    if {f'{var} is not None and ' if f.schema.optional else ''}not {check.format(v=var)}:",
                          "        return None"]
                node[(from_key, f.name)] = var
        out: list[str] = []
        start = 3 if self.pk_mode == "kafka" else 0
        if start:
            out += ["m.topic()", "m.partition()", "m.offset()"]
        for i, c in enumerate(columns[start:], start):
            x = node[(self.pk_mode == "record_key" and c.key, c.name)]
            convert = self._fast_timestamp() if c.kind == "timestamp" else _CONVERTERS.get(c.kind)
            if convert is None:
                out.append(x)
            else:
                env[f"_c{i}"] = convert
                out.append(f"(None if {x} is None else _c{i}({x}))")
        src = (f"def _make({', '.join(env)}):\n  def row(m, k, v):\n" + "\n".join(lines)
               + f"\n    return ({', '.join(out)},)\n  return row\n")
        ns: dict[str, Any] = {}
        exec(compile(src, "<airconnect jdbc sink row>", "exec"), ns)  # noqa: S102 - code built above from repr()s
        row: Callable[[Message, Any, Any], Any] = ns["_make"](**env)
        return row

    def _column(self, name: str, schema: Any, *, key: bool) -> Column:
        kind = LOGICAL.get(getattr(schema, "name", None) or "") or _type(schema)
        if kind not in PRIMITIVES and kind not in LOGICAL.values():
            raise RecordError(f"field {name!r} is a {kind}; the JDBC sink writes primitive fields (and Decimal, "
                              "Date, Time, Timestamp) into columns, as Confluent's does", fatal=True)
        params = getattr(schema, "parameters", None) or {}
        scale = int(params.get("scale", 0)) if kind == "decimal" else 0
        return Column(name, kind, bool(getattr(schema, "optional", False)), key, scale)

    def _converter(self, column: Column, get: Callable[..., Any]) -> Callable[..., Any]:
        """``get`` with the value made what the driver writes into the column (timestamps in the
        session's zone, text forms of logical types parsed)."""
        convert = _CONVERTERS.get(column.kind)
        if column.kind == "timestamp":
            convert = self._timestamp
        if convert is None:
            return get
        name = column.name

        def converted(m: Message, k: Any, v: Any) -> Any:
            raw = get(m, k, v)
            if raw is None:
                return None
            try:
                return convert(raw)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise RecordError(f"field {name!r}: {raw!r} is not a {column.kind}: {exc}") from None
        return converted

    def _fast_timestamp(self) -> Callable[[Any], Any]:
        """:meth:`_timestamp`, with its commonest case first: UTC text ending in 'Z' into UTC."""
        slow = self._timestamp
        if not self._utc:
            return slow
        fromisoformat = dt.datetime.fromisoformat
        text = not self._postgres  # MariaDB: as text (see _timestamp)

        def timestamp(value: Any) -> Any:
            if value.__class__ is str and value[-1:] == "Z":
                try:
                    ts = fromisoformat(value[:-1])
                except ValueError:
                    return slow(value)
                if ts.tzinfo is None:
                    return ts.isoformat() if text else ts
            return slow(value)
        return timestamp

    def _timestamp(self, value: Any) -> dt.datetime | str:
        if value.__class__ is str:
            try:
                ts = dt.datetime.fromisoformat(value)  # ('Z' too, from Python 3.11)
            except ValueError:
                ts = parse_timestamp(value)
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
        elif isinstance(value, dt.datetime):
            ts = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # Connect's Timestamp is UTC
        else:
            ts = parse_timestamp(value)
        # The wall time in db.timezone, naive: what a TIMESTAMP/DATETIME column holds; a PostgreSQL
        # TIMESTAMPTZ column reads it in the session's TimeZone, which is db.timezone too.
        # MariaDB gets it as ISO text, which mysqlclient escapes in C (its datetime encoder is Python).
        wall = ts.replace(tzinfo=None) if self._utc and ts.tzinfo is UTC else ts.astimezone(self.zone).replace(tzinfo=None)
        return wall if self._postgres else wall.isoformat()

    # ------------------------------------------------------------------ writing

    def _execute(self, table: Table, layout: Layout, op: str, rows: list[tuple[Any, ...]]) -> None:
        cur, sql = self.cur, self.sql
        if op == "delete":
            self._many(sql.delete(table.name, layout.columns), rows)
        elif self.mode == "update":
            if len(layout.columns) == layout.key_width:
                return  # nothing but the key: nothing to update
            w = layout.key_width
            self._many(sql.update(table.name, layout.columns), [r[w:] + r[:w] for r in rows])
        elif self.mode == "insert" and sql.postgres:
            self._copy(table, layout, rows)
        else:
            upsert = self.mode == "upsert"
            if upsert and len(rows) > 1:  # one statement may not touch a row twice: the last version wins
                w = layout.key_width
                rows = list({r[:w]: r for r in rows}.values())
            if not sql.postgres:  # mysqlclient sends one multi-row INSERT per statement-length chunk
                statement = layout.statements.get((op, 1))
                if statement is None:
                    statement = layout.statements[(op, 1)] = sql.insert(table.name, layout.columns, 1, upsert)
                cur.executemany(statement, rows)
                return
            width = len(layout.columns)
            per = max(1, min(self.batch_size, MAX_PARAMS // width))
            for i in range(0, len(rows), per):
                chunk = rows[i:i + per]
                statement = layout.statements.get((op, len(chunk)))
                if statement is None:
                    statement = sql.insert(table.name, layout.columns, len(chunk), upsert)
                    if len(chunk) == per:
                        layout.statements[(op, len(chunk))] = statement
                cur.execute(statement, [v for r in chunk for v in r])

    def _copy(self, table: Table, layout: Layout, rows: list[tuple[Any, ...]]) -> None:
        """Plain inserts into PostgreSQL: ``COPY ... FROM STDIN`` in its text format, one line a row
        (the fastest way in; a row the table refuses fails the COPY, and the row-by-row retry finds it)."""
        if layout.copy_line is None:
            layout.copy_line = _copy_writer(layout.columns)
        line = layout.copy_line
        data = "".join([line(r) for r in rows])
        cols = ", ".join(self.sql.q(c.name, params=False) for c in layout.columns)
        statement = f"COPY {self.sql.table(table.name, params=False)} ({cols}) FROM STDIN"
        if self._psycopg2:
            self.cur.copy_expert(statement, io.StringIO(data), size=1 << 20)
        else:
            with self.cur.copy(statement) as copy:
                copy.write(data)

    def _many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if self._psycopg2:
            from psycopg2.extras import execute_batch

            execute_batch(self.cur, statement, rows, page_size=min(self.batch_size, 1000))
        else:
            self.cur.executemany(statement, rows)

    def write(self, table: Table, layout: Layout, op: str, rows: list[tuple[Any, ...]], msgs: list[Message]) -> None:
        """Write a batch under a savepoint; if a record is at fault, again row by row to find it."""
        cur = self.cur
        try:
            cur.execute("SAVEPOINT airconnect_batch")
            self._execute(table, layout, op, rows)
            cur.execute("RELEASE SAVEPOINT airconnect_batch")
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            if not record_error(exc):
                raise _db_error(exc, f"connector '{self.name}': writing into table {table.name!r}") from exc
            cur.execute("ROLLBACK TO SAVEPOINT airconnect_batch")
            self._row_by_row(table, layout, op, rows, msgs)
            return
        self._count(op, len(rows))

    def _row_by_row(self, table: Table, layout: Layout, op: str, rows: list[tuple[Any, ...]], msgs: list[Message]) -> None:
        cur = self.cur
        for row, msg in zip(rows, msgs):
            tp = (msg.topic(), msg.partition())
            if tp in self._stopped and msg.offset() >= self._stopped[tp][0]:
                continue  # after the record that stops the run: its partition stays before it
            try:
                cur.execute("SAVEPOINT airconnect_row")
                self._execute(table, layout, op, [row])
                cur.execute("RELEASE SAVEPOINT airconnect_row")
            except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
                if not record_error(exc):
                    raise _db_error(exc, f"connector '{self.name}': writing into table {table.name!r}") from exc
                cur.execute("ROLLBACK TO SAVEPOINT airconnect_row")
                self._bad(msg, RecordError(f"table {table.name!r} refused it: {_detail(exc)}"))
                continue
            self._count(op, 1)

    def _count(self, op: str, n: int) -> None:
        if op == "delete":
            self.result.deleted += n
        else:
            self.result.written += n

    @contextlib.contextmanager
    def ddl_lock(self, table: str) -> Iterator[None]:
        """A table's DDL lock, held by this session (waiting up to DDL_WAIT seconds): tasks of a split
        that find the same table missing (or lacking a column) take turns, and each looks again
        under the lock, so the table is created (the column added) once."""
        try:
            got = self.sql.lock_table(self.cur, table, DDL_WAIT)
            self.conn.commit()
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            raise _db_error(exc, f"connector '{self.name}': locking table {table!r} for DDL") from exc
        if not got:
            raise TransientError(f"connector '{self.name}': another session held table {table!r}'s DDL lock for "
                                 f"{DDL_WAIT:.0f} s; try again when it has finished")
        try:
            yield
        finally:
            try:
                self.sql.unlock_table(self.cur, table)
                self.conn.commit()
            except Exception:  # noqa: BLE001 - the session may be gone, and its lock with it
                pass

    def ddl(self, statement: str, positions_hint: str) -> None:
        """Run DDL in a transaction of its own, after committing what came before it."""
        self._checkpoint(dict(self._positions_so_far()))
        log.info("connector '%s': %s (%s)", self.name, statement.replace("\n", " "), positions_hint)
        try:
            self.cur.execute(statement)
            self.conn.commit()
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            self.conn.rollback()
            raise _db_error(exc, f"connector '{self.name}': {statement.splitlines()[0]}") from exc

    def _positions_so_far(self) -> dict[TopicPartition, int]:
        """Where each partition got, for records already handled (the one being handled is not)."""
        return dict(self._positions)

    def _checkpoint(self, positions: Mapping[TopicPartition, int]) -> None:
        """Flush every table's rows, write the offsets in the same transaction, commit; then the
        Variable and the consumer group (for visibility). Raises the stopping record's error last."""
        for table in self._tables.values():
            table.flush()
        positions = dict(positions)
        for tp, (offset, _) in self._stopped.items():
            positions[tp] = offset
        changed = sorted((tp, o) for tp, o in positions.items() if self._db_offsets.get(tp) != o)
        try:
            if changed:
                self.cur.execute(self.sql.upsert_offsets(len(changed)),
                                 [v for (t, p), o in changed for v in (self.name, t, p, o)])
            if self.dead is not None:
                self.dead.flush()  # dead letters are acknowledged before the offsets move past them
            failpoint("jdbc_sink.written")
            self.conn.commit()
        except (PermanentError, TransientError):
            raise
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            raise _db_error(exc, f"connector '{self.name}': committing the rows and offsets") from exc
        failpoint("jdbc_sink.committed")
        self.result.transactions += 1
        self._db_offsets.update(changed)
        self.delivery.checkpoint(positions)  # the Variable, then the consumer group
        if self._stopped:
            first = min(self._stopped.values())
            raise DataError(f"{first[1]}. Records before it were written; its partition's offset stays at "
                            f"{first[0]}.")


class Table:
    """One target table: its columns as the database has them, its layouts, its open batch."""

    def __init__(self, sink: JdbcSink, name: str):
        self.sink = sink
        self.name = name
        self.layouts: dict[Any, Layout] = {}
        self._columns: dict[str, bool] | None = None
        self._known = False
        self.rows: list[tuple[Any, ...]] = []
        self.msgs: list[Message] = []
        self.batch_layout: Layout | None = None
        self.batch_op = ""

    def columns(self) -> dict[str, bool] | None:
        if not self._known:
            try:
                self._columns = self.sink.sql.table_columns(self.sink.cur, self.name)
            except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
                raise _db_error(exc, f"connector '{self.sink.name}': reading the columns of {self.name!r}") from exc
            self._known = True
        return self._columns

    def layout(self, schema: Any, key_schema: Any) -> Layout:
        cache_key = (schema, key_schema)
        layout = self.layouts.get(cache_key)
        if layout is None:
            layout = self.sink._value_layout(self, schema, key_schema)
            self._fit(layout)
            self.layouts[cache_key] = layout
        return layout

    def _fit(self, layout: Layout, locked: bool = False) -> None:
        """The table has a column for each of the layout's, or gets one (auto.create, auto.evolve):
        the DDL under the table's DDL lock, decided again there (``locked``) from the columns the
        table has then (another task may have just created the table, or added the column)."""
        sink, sql = self.sink, self.sink.sql
        existing = self.columns()
        if existing is None or sink.config["auto.evolve"]:
            for name, what, key in [(p, "table", "table.name.format") for p in self.name.split(".")] + [
                    (c.name, "column", "fields.whitelist") for c in layout.columns]:
                problem = sql.name_problem(name)
                if problem:  # PostgreSQL would silently cut it, and the next run not find it
                    raise RecordError(f"the {what} name {name!r} is {problem}", key=key, fatal=True)
        if existing is None:
            if not sink.config["auto.create"]:
                raise RecordError(f"table {self.name!r} does not exist; create it, or set auto.create=true to have "
                                  "it created from the record schema", key="auto.create", fatal=True)
            self.flush()
            if not locked:
                self._under_lock(layout)
                return
            sink.ddl(sql.create_table(self.name, layout.columns), f"table {self.name!r} was missing")
            sink.result.tables_created.append(self.name)
            self._known = False
            return
        fold = (lambda s: s) if sql.postgres else str.lower  # MariaDB's column names ignore case
        have = {fold(c) for c in existing}
        missing = [c for c in layout.columns if fold(c.name) not in have]
        if not missing:
            return
        names = ", ".join(repr(c.name) for c in missing)
        if not sink.config["auto.evolve"]:
            raise RecordError(f"table {self.name!r} has no column for field(s) {names}; add them, or set "
                              "auto.evolve=true to have them added", key="auto.evolve", fatal=True)
        for c in missing:
            if c.key or not c.optional:
                raise RecordError(f"table {self.name!r} has no column {c.name!r}, and auto.evolve adds only optional "
                                  f"fields (this one is {'part of the key' if c.key else 'required'})",
                                  key="auto.evolve", fatal=True)
        self.flush()
        if not locked:
            self._under_lock(layout)
            return
        for c in missing:
            sink.ddl(sql.add_column(self.name, c), f"table {self.name!r} had no column {c.name!r}")
            sink.result.columns_added.append(f"{self.name}.{c.name}")
        self._known = False

    def _under_lock(self, layout: Layout) -> None:
        """:meth:`_fit` again under the table's DDL lock, what came before committed first (an open
        transaction holding rows of the table would keep another task's DDL waiting on it)."""
        self.sink._checkpoint(self.sink._positions_so_far())
        with self.sink.ddl_lock(self.name):
            self._known = False
            self._fit(layout, locked=True)

    def add(self, layout: Layout, op: str, row: tuple[Any, ...], msg: Message) -> None:
        if layout is not self.batch_layout or op != self.batch_op:
            self.flush()
            self.batch_layout, self.batch_op = layout, op
        self.rows.append(row)
        self.msgs.append(msg)
        if len(self.rows) >= self.sink.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows or self.batch_layout is None:
            return
        rows, msgs = self.rows, self.msgs
        self.rows, self.msgs = [], []
        self.sink.write(self, self.batch_layout, self.batch_op, rows, msgs)


def _type(schema: Any) -> str:
    t = schema.type
    return str(getattr(t, "value", t)).lower()


def _field_getter(name: str) -> Callable[..., Any]:
    return lambda m, k, v: v.get(name)


def _extractor(getters: Sequence[Callable[..., Any]]) -> Callable[[Message, Any, Any], tuple[Any, ...]]:
    getters = tuple(getters)
    return lambda m, k, v: tuple([g(m, k, v) for g in getters])


def _decimal(v: Any) -> Decimal:
    if isinstance(v, Decimal):
        if not v.is_finite():
            raise ValueError("not a finite number")
        return v
    if isinstance(v, (int, str)) and not isinstance(v, bool):
        return Decimal(v)
    raise TypeError(f"a {type(v).__name__}")


def _date(v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return dt.date(1970, 1, 1) + dt.timedelta(days=v)  # Connect's Date: days since the epoch
    return dt.date.fromisoformat(str(v))


def _time(v: Any) -> dt.time:
    if isinstance(v, dt.time):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=v)).time()  # Connect's Time: ms of the day
    return dt.time.fromisoformat(str(v).rstrip("Z"))


_CONVERTERS: Final[dict[str, Callable[[Any], Any]]] = {"decimal": _decimal, "date": _date, "time": _time,
                                                       "float64": float}


def _offsets_text(offsets: Mapping[TopicPartition, int]) -> str:
    return ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(offsets.items()))


_COPY_SPECIAL: Final = re.compile(r"[\\\t\n\r]")


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _float_text(v: float) -> str:
    return repr(v) if v == v and v not in (float("inf"), float("-inf")) else {"nan": "NaN", "inf": "Infinity"}.get(
        repr(v), "-Infinity")


#: A column's value (not None) in COPY's text format, as a Python expression over ``{x}``.
_COPY_TEXT: Final = {
    "int8": "str({x})", "int16": "str({x})", "int32": "str({x})", "int64": "str({x})", "decimal": "str({x})",
    "float32": "_float({x})", "float64": "_float({x})", "boolean": "('t' if {x} else 'f')",
    "string": "(_escape({x}) if _special({x}) else {x})", "bytes": "('\\\\\\\\x' + bytes({x}).hex())",
    "date": "{x}.isoformat()", "time": "{x}.isoformat()", "timestamp": "{x}.isoformat()",
}


def _copy_writer(columns: Sequence[Column]) -> Callable[[tuple[Any, ...]], str]:
    """``row -> line`` in COPY's text format (tab-separated, ``\\N`` for NULL, backslash escapes),
    compiled into one function for the columns."""
    parts = []
    for i, c in enumerate(columns):
        text = _COPY_TEXT[c.kind].format(x=f"r[{i}]")
        parts.append(f"('\\\\N' if r[{i}] is None else {text})")
    src = "def line(r):\n    return '\\t'.join((" + ", ".join(parts) + ",)) + '\\n'\n"
    ns: dict[str, Any] = {"_escape": _copy_escape, "_special": _COPY_SPECIAL.search, "_float": _float_text}
    exec(compile(src, "<airconnect jdbc sink copy line>", "exec"), ns)  # noqa: S102 - code built above, no input text
    line: Callable[[tuple[Any, ...]], str] = ns["line"]
    return line


_MISSING: Final = object()
_ENVELOPE_START: Final = b'{"schema":'


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# As core.data reads JSON (exact decimals, no NaN/Infinity).
_payload_decoder: Final = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)
_raw_decode: Final = _payload_decoder.raw_decode
_INT_RANGES: Final = {"int8": 1 << 7, "int16": 1 << 15, "int32": 1 << 31, "int64": 1 << 63}


def _node_check(schema: Schema) -> str | None:
    """A Python condition over the node ``{v}``: the JSON node is one that :func:`to_connect` turns into itself
    (or, for a decimal or a float64 field, into what the column converter makes of it anyway);
    ``None``: the field's type has no fast form (bytes, float32, Connect's Date/Time/Timestamp, a
    default value, nested types)."""
    if schema.default is not None:
        return None
    kind = LOGICAL.get(schema.name or "") or schema.type
    if kind in _INT_RANGES and not schema.name:
        bound = _INT_RANGES[kind]
        return f"({{v}}.__class__ is int and {-bound} <= {{v}} < {bound})"
    if kind == "string" or (kind in ("timestamp", "date") and schema.type == STRING):  # text, or the JDBC source's ISO text
        return "{v}.__class__ is str"
    if kind == "boolean":
        return "{v}.__class__ is bool"
    if kind in ("decimal", "float64"):  # JSON numbers (NUMERIC decimals); a column converter makes them Decimal / float
        return "({v}.__class__ is _Decimal or {v}.__class__ is int)"
    return None


@dataclass
class Envelope:
    """A JsonConverter envelope seen before: its ``{"schema":...,"payload":`` prefix."""

    prefix: bytes

    @classmethod
    def of(cls, data: bytes) -> Envelope | None:
        if not data.startswith(_ENVELOPE_START):
            return None
        try:
            text = data.decode("utf-8")
            _, end = _payload_decoder.raw_decode(text, len(_ENVELOPE_START))
        except ValueError:
            return None
        if not text.startswith(',"payload":', end):
            return None
        return cls((text[:end] + ',"payload":').encode("utf-8"))

    def payload(self, data: bytes) -> dict[str, Any] | None:
        """The payload parsed, when ``data`` is this envelope holding a JSON object."""
        if not data.startswith(self.prefix) or not data.endswith(b"}"):
            return None
        try:
            text = data[len(self.prefix):-1].decode("utf-8")
            node, end = _raw_decode(text)
        except ValueError:  # (UnicodeDecodeError too) the general path says what is wrong
            return None
        if end != len(text) or node.__class__ is not dict:
            return None
        return node


@dataclass
class FastPayload:
    """A topic's records nearly always share one schema, written first in each envelope (and, with
    ``pk.mode=record_key``, one key schema): once a record has shown its ``{"schema":...,"payload":``
    prefix, a record that starts with the same bytes has only its payload parsed, and is written
    straight from the parsed JSON when every field's node is one that :func:`to_connect` would give
    unchanged (checked per record: an int in range, a string, a boolean, a number for a decimal,
    ``null`` for an optional field); anything else goes through :func:`to_connect`. The rows are the
    same either way (a property test holds it)."""

    value: Envelope
    key: Envelope | None  # pk.mode record_key: the key's envelope
    table: Table
    layout: Layout
    row: Callable[[Message, Any, Any], Any]  # (msg, key payload, value payload) -> the row, or None

    @classmethod
    def learn(cls, value: bytes, key: bytes | None, table: Table, layout: Layout,
              row: Callable[[Message, Any, Any], Any] | None) -> FastPayload | None:
        envelope = Envelope.of(value)
        key_envelope = Envelope.of(key) if key is not None else None
        if row is None or envelope is None or (key is not None and key_envelope is None):
            return None
        return cls(envelope, key_envelope, table, layout, row)

    def payload(self, value: bytes) -> dict[str, Any] | None:
        return self.value.payload(value)

    def knows(self, value: bytes, key: bytes | None) -> bool:
        """Whether ``value`` (and ``key``) have the envelopes this was learned from."""
        if not value.startswith(self.value.prefix):
            return False
        return self.key is None or (key is not None and key.startswith(self.key.prefix))
