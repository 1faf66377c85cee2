"""What the PostgreSQL and MariaDB change-capture sources share: the keys both read, the run's
frame (one database connection and one ``SourceDelivery``, whose transactions and offsets are
the runtime's), Debezium's topic names, the snapshot's loop and the sending of a batch of events.

A source says how to open its session (``_prepare``) and what one pass does (``_pass``: the
snapshot on the first run, then the log).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from airconnect.connectors.cdc.events import TableEvents, airconnect_version, dumps
from airconnect.connectors.cdc.spec import include_list
from airconnect.core.config import ConnectorClass, ConnectorConfig
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.offsets import KeyValueStore
from airconnect.core.progress import Progress

#: Debezium's snapshot markers (``source.snapshot``), in the order a snapshot uses them.
SNAPSHOT_MARKERS: Final = ("first", "first_in_data_collection", "true", "last_in_data_collection", "last")


@dataclass
class CdcResult:
    connector: str
    records: int = 0
    snapshot_records: int = 0
    transactions: int = 0  # with changes of the included tables
    skipped_transactions: int = 0  # delivered already (a run that died before advancing the slot)
    other_transactions: int = 0  # no change of an included table
    batches: int = 0
    topics: list[str] = field(default_factory=list)
    offset: dict[str, Any] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def debezium_topic(record: str) -> str:
    """Debezium's topic naming: characters other than A-Z a-z 0-9 . _ - become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", record)


class CdcSource:
    """One bounded pass of a change-capture connector."""

    #: The connector class this source runs, and the database's name in messages.
    connector_class: ClassVar[ConnectorClass]
    database: ClassVar[str]

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
                 connect: Callable[[], Any] | None = None, db_params: Mapping[str, Any] | None = None):
        if config.cls is not self.connector_class:
            raise ConfigError(f"is {config.cls.name}, not a {self.database} CDC source", connector=config.name,
                              key="connector.class")
        if connect is None:
            raise PermanentError(f"connector '{config.name}': no database connection factory was given")
        self.config = config
        self.name = config.name
        self.store = store
        self.kafka = dict(kafka)
        self.connect = connect
        self.db_params = db_params
        self.prefix: str = config["topic.prefix"]
        self.tables_re = include_list(config["table.include.list"])
        self.batch: int = config["max.batch.size"]
        self.tombstones: bool = config["tombstones.on.delete"]
        self.decimal_mode: str = config["decimal.handling.mode"]
        self.key_schemas: bool = config["key.converter.schemas.enable"]
        self.value_schemas: bool = config["value.converter.schemas.enable"]
        self.version = airconnect_version()
        self.partition = {"server": self.prefix}
        self._topics: set[str] = set()
        self.log = logging.getLogger(type(self).__module__)

    def _what(self) -> str:
        return f"connector '{self.name}'"

    def run(self) -> CdcResult:
        result = CdcResult(self.name)
        progress = Progress(self.log, self._what(), unit="changes")
        try:
            conn = self.connect()
        except Exception as exc:  # noqa: BLE001 - DB-API modules share no base class
            raise TransientError(f"{self._what()}: connecting to the database of the Airflow Connection "
                                 f"'{self.config['db.conn.id']}': {exc}") from None
        try:
            self._prepare(conn)
            with SourceDelivery(self.name, self.store, self.kafka, progress=progress) as delivery:
                result.offset = self._pass(conn, delivery, result)
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        progress.done()
        result.records = progress.count
        result.topics = sorted(self._topics)
        result.seconds = round(progress.seconds, 3)
        return result

    def _prepare(self, conn: Any) -> None:
        """Set the session up and check the server can be read (before anything is sent)."""
        raise NotImplementedError

    def _pass(self, conn: Any, delivery: SourceDelivery, result: CdcResult) -> dict[str, Any]:
        """The snapshot (first run) and the log up to its end now; returns the offset reached."""
        raise NotImplementedError

    def _ensure(self, delivery: SourceDelivery, topic: str) -> None:
        if topic not in self._topics:
            delivery.ensure_topic(topic)
            self._topics.add(topic)

    def _send(self, delivery: SourceDelivery, events: list[tuple[str, bytes | None, bytes | None]]) -> None:
        """Send ``(topic, key, value)`` events in their order, a run of one topic at a time."""
        i = 0
        while i < len(events):
            topic = events[i][0]
            j = i
            while j < len(events) and events[j][0] == topic:
                j += 1
            self._ensure(delivery, topic)
            delivery.send(topic, [e[2] for e in events[i:j]], [e[1] for e in events[i:j]])  # type: ignore[misc]
            i = j

    def _snapshot_rows(self, delivery: SourceDelivery, enc: TableEvents, fetch: Callable[[int], Sequence[Any]],
                       fetch_size: int, names: Sequence[str], table: str, source: Callable[[str], dict[str, Any]],
                       first_table: bool, last_table: bool, result: CdcResult) -> None:
        """Send one table's rows as Debezium's snapshot reads (``op`` ``r``), ``fetch_size`` at a
        time: the first row of the first table is marked ``first``, the last of the last ``last``."""
        self._ensure(delivery, enc.topic)
        sources = {m: dumps(source(m)) for m in SNAPSHOT_MARKERS}
        values: list[bytes | None] = []
        keys: list[bytes | None] = []
        now = time.time_ns()

        def emit(row: Sequence[Any], marker: str) -> None:
            values_of = dict(zip(names, row))
            try:
                after = enc.row(values_of)
            except DataError as exc:
                raise DataError(f"{self._what()} ({table}, snapshot, row "
                                f"{ {c.name: values_of.get(c.name) for c in enc.key_columns} }): {exc}") from None
            values.append(enc.value(None, after, sources[marker], "r", now))
            keys.append(enc.key(after))

        pending: Sequence[Any] | None = None
        first = True
        while True:
            rows = fetch(fetch_size)
            if not rows:
                break
            now = time.time_ns()
            for row in rows:
                if pending is not None:
                    emit(pending, ("first" if first_table else "first_in_data_collection") if first else "true")
                    first = False
                pending = row
            delivery.send(enc.topic, values, keys)  # type: ignore[arg-type]
            result.snapshot_records += len(values)
            values.clear()
            keys.clear()
        if pending is not None:
            emit(pending, "last" if last_table else "last_in_data_collection")
            delivery.send(enc.topic, values, keys)  # type: ignore[arg-type]
            result.snapshot_records += len(values)
