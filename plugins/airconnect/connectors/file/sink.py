"""File sink: appends each record's payload as one line (Kafka Connect's FileStreamSinkConnector,
made exactly-once).

Offsets (one Variable, Connect's shapes): per topic-partition
``{"kafka_topic", "kafka_partition"}`` -> ``{"kafka_offset": next offset}``, and for the file
``{"filename": <path>}`` -> ``{"position": <length after the last checkpoint>}``.

How a crash never writes a line twice: a checkpoint (1) fsyncs the file, (2) saves the file
length together with the Kafka offsets in the Variable, (3) commits the offsets to the
consumer group ``connect-<name>`` (for Kafka's lag tools). A run that died after writing but
before (2) left bytes past the saved length: the next run truncates the file back to the
saved length and reads again from the saved offsets, so those lines are written once.
Only committed records are read (``isolation.level=read_committed``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from airconnect.connectors.file import check_file_offset
from airconnect.core.config import ConnectorClass, ConnectorConfig, Key, not_a_directory, one_task
from airconnect.core.converters import payload_text, plain_payload
from airconnect.core.deadletters import SinkDeadLetters, tolerates
from airconnect.core.delivery import SinkDelivery
from airconnect.core.errors import ConfigError, DataError
from airconnect.core.failpoints import failpoint
from airconnect.core.kafka_client import sink_group_id
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

WRITE_BUFFER: Final = 1 << 20

FILE_SINK = ConnectorClass(
    name="airconnect.FileSink",
    kind="sink",
    aliases=(
        "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "FileStreamSinkConnector",
        "FileStreamSink",
        "airconnect.core.file_sink.FileSink",
        "airconnect.connectors.file.sink.FileSink",
    ),
    keys=(
        Key("file", "path", doc="The file to append each record's payload to; relative paths are under $AIRCONNECT_DATA_DIR.",
            check=not_a_directory),
        Key("topics", "list", doc="Comma-separated topics to read."),
        Key("checkpoint.records", "int", 50000, "Records between checkpoints (fsync + offsets).", minimum=1),
    ),
    doc="Appends each record's payload to a file, one line per record.",
    check=one_task,
    runner=lambda config, store, kafka: FileSink(config, store, kafka),
    topics=lambda config: list(config["topics"]),
    check_offset=lambda config, partition, offset: _check_offset(partition, offset),
    offset_partition=("filename",),
    title="a file sink",
    holds=lambda config: _holds(config["file"]),
)


def _check_offset(partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> str | None:
    """Besides its Kafka partitions, the file's length: ``{"filename": path}`` -> ``{"position": n}``."""
    if "filename" not in partition:
        return f"has a partition {dict(partition)!r} that a file sink does not use"
    return check_file_offset(partition, offset, keys={"position"})


def _holds(path: str) -> list[str]:
    """The file, if it holds lines already: a reset would append them again."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return []
    return [f"the file {path} ({size} bytes)"] if size else []



@dataclass
class FileSinkResult:
    connector: str
    file: str
    records: int = 0
    bytes: int = 0
    skipped_null: int = 0
    truncated_bytes: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    offsets: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FileSink:
    """Appends the payload of every new committed record of ``topics`` to ``file``."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any]):
        if config.cls is not FILE_SINK:
            raise ConfigError(f"is {config.cls.name}, not a file sink", connector=config.name, key="connector.class")
        self.config = config
        self.name = config.name
        self.path: str = config["file"]
        self.topics: list[str] = config["topics"]
        self.checkpoint_records: int = config["checkpoint.records"]
        self.store = store
        self.offsets = Offsets(store, config.name)
        self.kafka = dict(kafka)
        self.group = sink_group_id(config.name)
        self.file_partition = {"filename": self.path}

    def _recover_file(self, result: FileSinkResult) -> int:
        """Bring the file back to the length of the last checkpoint; return that length."""
        saved = self.offsets.get_int(self.file_partition, "position")
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        if saved is None:
            return size
        if size > saved:
            log.warning(
                "connector '%s': %s has %d bytes past the last checkpoint, written by a run that did not finish; "
                "removing them (their records are read again, so each line is written once)",
                self.name, self.path, size - saved,
            )
            with open(self.path, "r+b") as f:
                f.truncate(saved)
                os.fsync(f.fileno())
            result.truncated_bytes = size - saved
            return saved
        if size < saved:
            log.warning(
                "connector '%s': %s is shorter than at the last checkpoint (%d < %d bytes): it was truncated or "
                "replaced outside airconnect. Appending new records to it; records already written are not written again.",
                self.name, self.path, size, saved,
            )
        return size

    def run(self) -> FileSinkResult:
        result = FileSinkResult(self.name, self.path)
        progress = Progress(log, f"connector '{self.name}' ({', '.join(self.topics)} -> {self.path})")
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        length = self._recover_file(result)
        if self.offsets.get(self.file_partition) is None:
            # The first run: save the file's length before writing anything, so that a run killed
            # before its first checkpoint is truncated back to it (not left with lines written twice).
            self.offsets.put(self.file_partition, {"position": length})
            self.offsets.save()
        dead = SinkDeadLetters(self.config, self.kafka, self.topics) if tolerates(self.config) else None
        buf = bytearray()
        since_checkpoint = 0
        with open(self.path, "ab") as f, SinkDelivery(self.name, self.store, self.kafka, self.topics, group=self.group,
                                                      dead_letters=dead, config=self.config) as delivery:
            def checkpoint() -> None:
                nonlocal since_checkpoint, length
                if buf:
                    f.write(buf)
                    buf.clear()
                f.flush()
                failpoint("file_sink.written")
                os.fsync(f.fileno())
                failpoint("file_sink.fsynced")
                length = f.tell()
                delivery.checkpoint(own=[(self.file_partition, {"position": length})])
                since_checkpoint = 0

            for msg in delivery.records():
                line = plain_payload(msg.value())  # the common case: a plain line in an envelope, no parsing
                if line is None:
                    try:
                        text = payload_text(msg.value())
                    except DataError as exc:
                        if dead is not None:  # errors.tolerance=all: to the dead-letter topic, and go on
                            dead.send(msg, exc, "VALUE_CONVERTER")
                            result.dead_letters += 1
                            since_checkpoint += 1
                            continue
                        delivery.stay_before(msg)
                        checkpoint()
                        raise DataError(
                            f"connector '{self.name}': record {msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}. "
                            f"Records before it were written; the offset stays at {msg.offset()}."
                        ) from None
                    if text is None:
                        result.skipped_null += 1
                    else:
                        line = text.encode("utf-8")
                if line is not None:
                    buf += line
                    buf += b"\n"
                    result.bytes += len(line) + 1
                    if len(buf) >= WRITE_BUFFER:
                        f.write(buf)
                        buf.clear()
                result.records += 1
                since_checkpoint += 1
                if since_checkpoint >= self.checkpoint_records:
                    checkpoint()
                    progress.add(self.checkpoint_records)
            if delivery.moved or buf or self.offsets.get(self.file_partition) is None or result.truncated_bytes:
                checkpoint()
            partitions = delivery.positions
        progress.count = result.records
        progress.done()
        result.seconds = round(progress.seconds, 3)
        result.offsets = {f"{t}[{p}]": pp.next_offset for (t, p), pp in partitions.items()}
        if result.skipped_null:
            log.info("connector '%s': %d records had no value (tombstones) and wrote no line", self.name, result.skipped_null)
        if result.dead_letters:
            log.warning("connector '%s': %d malformed record(s) went to the dead-letter topic(s) %s", self.name,
                        result.dead_letters, ", ".join(sorted(set(dead.topics.values()))) if dead else "")
        return result
