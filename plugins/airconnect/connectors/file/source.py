"""File source: each complete line of a growing text file becomes one record (Kafka Connect's
FileStreamSourceConnector, made exactly-once and byte-accurate).

Offsets: partition ``{"filename": <path>}`` -> ``{"position": <bytes>, "inode": n, "mtime_ns": t,
"tail_sha1": h, "prefix_bytes": k, "prefix_sha1": p}``. ``position`` is a byte offset (Connect's own
source counts characters and drifts on non-ASCII text). The rest detects a file that was
replaced (``inode``) or rewritten in place: ``prefix_sha1`` is the SHA-1 of the first
``prefix_bytes`` bytes, ``min(position, rewrite.check.bytes)``, kept up to date as batches commit
and verified at the start of every run (the run re-reads that much of the file);
``tail_sha1`` covers the 64 bytes before the position, which a bounded prefix no longer reaches;
``mtime_ns`` lets the sensor see a same-length rewrite with one ``stat``. Only ``position`` is
required, so Connect's offsets load as they are.

Delivery: each batch is one Kafka transaction carrying its records and its new position (see
:class:`~airconnect.core.kafka_client.SourceWriter`); the Variable is set after the commit.
A last line without its newline waits for the next run. Lines end with ``\\n``; a ``\\r``
before it (CRLF) is dropped.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from airconnect.connectors.file import check_file_offset
from airconnect.core.config import ConnectorClass, ConnectorConfig, Key, not_a_directory, one_task
from airconnect.core.converters import StringValueWriter, plain_lines
from airconnect.core.deadletters import DeadLetter, context_headers, dead_letter_topic, ensure_dead_letter_topic, report, tolerates
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import ConfigError, DataError
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

TAIL_BYTES: Final = 64
READ_CHUNK: Final = 1 << 20

FILE_SOURCE = ConnectorClass(
    name="airconnect.FileSource",
    kind="source",
    aliases=(
        "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "FileStreamSourceConnector",
        "FileStreamSource",
        "airconnect.core.file_source.FileSource",
        "airconnect.connectors.file.source.FileSource",
    ),
    keys=(
        Key("file", "path", doc="The file to read; relative paths are under $AIRCONNECT_DATA_DIR.", check=not_a_directory),
        Key("topic", "topic", doc="The topic to write each line to."),
        Key("batch.size", "int", 100000, "Lines per Kafka transaction (one offset commit per batch); they are sent "
            "as they are read, so memory does not grow with it.", minimum=1),
        Key("csv.fields", "int", 0, "airconnect: lines must have this many comma-separated fields (0: any); "
            "others are malformed (see errors.tolerance).", minimum=0),
        Key("rewrite.check.bytes", "int", 256 << 20, "airconnect: how much of the file's start each run re-reads to "
            "notice a rewrite in place (SHA-1 of min(position, this) bytes); 0 checks only the 64 bytes before "
            "the position.", minimum=0),
    ),
    doc="Reads a growing text file, one record per line.",
    check=one_task,
    runner=lambda config, store, kafka: FileSource(config, store, kafka),
    topics=lambda config: [config["topic"]],
    check_offset=lambda config, partition, offset: _check_offset(partition, offset),
    offset_partition=("filename",),
    title="a file source",
)

_OFFSET_KEYS: Final = {"position", "inode", "mtime_ns", "tail_sha1", "prefix_bytes", "prefix_sha1"}


def _check_offset(partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> str | None:
    """``{"filename": path}`` -> ``{"position": n, ...}`` (the rest of the offset is optional)."""
    if "filename" not in partition:
        return f"has a partition {dict(partition)!r}; a file source's is {{'filename': path}}"
    return check_file_offset(partition, offset, keys=_OFFSET_KEYS, numbers=("inode", "mtime_ns", "prefix_bytes"),
                             texts=("tail_sha1", "prefix_sha1"))


@dataclass
class FileSourceResult:
    connector: str
    file: str
    topic: str
    records: int = 0
    bytes: int = 0
    batches: int = 0
    from_position: int = 0
    to_position: int = 0
    reset: str | None = None
    recovered: bool = False
    waiting_partial_line: bool = False
    dead_letters: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("extra")
        d.update(self.extra)
        return d


def _tail_sha1(f: Any, position: int) -> str:
    start = max(0, position - TAIL_BYTES)
    f.seek(start)
    return hashlib.sha1(f.read(position - start)).hexdigest()


class _Prefix:
    """The SHA-1 of the file's first ``size`` bytes (at most ``limit``), extended as the position moves."""

    def __init__(self, f: Any, limit: int):
        self.f = f
        self.limit = limit
        self.hash = hashlib.sha1()
        self.size = 0

    def extend(self, position: int) -> None:
        """Hash up to ``min(position, limit)``, re-reading from the file (the page cache, as a
        rule: these are the bytes just read); the file's read position is left where it was."""
        target = min(position, self.limit)
        if target <= self.size:
            return
        here = self.f.tell()
        self.f.seek(self.size)
        while self.size < target:
            chunk = self.f.read(min(READ_CHUNK, target - self.size))
            if not chunk:
                break
            self.hash.update(chunk)
            self.size += len(chunk)
        self.f.seek(here)

    def fields(self) -> dict[str, Any]:
        return {"prefix_bytes": self.size, "prefix_sha1": self.hash.hexdigest()}


def change_reason(path: str, offset: Mapping[str, Any] | None) -> str | None:
    """Why the file has something new to read compared with ``offset``, or ``None``.

    Used by the sensor and its trigger: cheap (one ``stat``), no reading.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    position = int((offset or {}).get("position", 0))
    inode = (offset or {}).get("inode")
    if inode is not None and st.st_ino != inode:
        return "replaced"
    if st.st_size < position:
        return "truncated"
    if st.st_size > position:
        return "grew"
    mtime = (offset or {}).get("mtime_ns")
    if mtime is not None and st.st_mtime_ns != mtime:
        return "modified"  # written since, at the same length: the run checks whether the bytes changed
    return None


class FileSource:
    """Reads new complete lines of ``file`` and delivers them to ``topic`` exactly once."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any]):
        if config.cls is not FILE_SOURCE:
            raise ConfigError(f"is {config.cls.name}, not a file source", connector=config.name, key="connector.class")
        self.config = config
        self.name = config.name
        self.path: str = config["file"]
        self.topic: str = config["topic"]
        self.batch_size: int = config["batch.size"]
        self.to_value = StringValueWriter(config["value.converter"], config["value.converter.schemas.enable"])
        self.store = store
        self.offsets = Offsets(store, config.name)
        self.kafka = dict(kafka)
        self.partition = {"filename": self.path}
        self.fields: int = config["csv.fields"]
        self.check_bytes: int = config["rewrite.check.bytes"]
        self.dead_topic = dead_letter_topic(config, self.topic) if tolerates(config) else None

    def _fields_fit(self, region: bytes) -> bool:
        """With ``csv.fields``: every line of a region of plain lines has that many fields. (Plain
        lines have no double quote, so no quoted comma: the fields are the commas plus one.)"""
        if not self.fields:
            return True
        return all(line.count(b",") == self.fields - 1 for line in region.split(b"\n"))

    def _text(self, line: bytes, pos: int) -> str | DataError:
        """The line's text, or what is wrong with it (not UTF-8, the wrong number of fields)."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return DataError(f"the line at byte {pos} of {self.path} is not valid UTF-8 "
                             f"(byte {pos + exc.start}: {exc.reason})")
        if self.fields:
            n = len(next(csv.reader([text]), []))
            if n != self.fields:
                return DataError(f"the line at byte {pos} of {self.path} has {n} comma-separated field(s); "
                                 f"csv.fields is {self.fields}")
        return text

    def stored_offset(self) -> dict[str, Any] | None:
        offset = self.offsets.get(self.partition)
        if offset is not None:
            self.offsets.get_int(self.partition, "position")  # validates the shape
            inode = offset.get("inode")
            if inode is not None and (isinstance(inode, bool) or not isinstance(inode, int)):
                raise self.offsets._fail(f"partition {{'filename': {self.path!r}}} has inode={inode!r}; expected an integer")
        return offset

    def run(self) -> FileSourceResult:
        result = FileSourceResult(self.name, self.path, self.topic)
        stored = self.stored_offset()
        if os.path.isdir(self.path):  # valid when checked, a folder now: nothing to read, nothing to create
            raise ConfigError(f"{self.path} is a directory; expected a file (a text file that grows line by line)",
                              connector=self.name, key="file")
        if not os.path.exists(self.path):
            log.warning("connector '%s': the file %s does not exist (yet); nothing to read", self.name, self.path)
            pos = int((stored or {}).get("position", 0))
            result.from_position = result.to_position = pos
            result.extra["missing_file"] = True
            return result
        progress = Progress(log, f"connector '{self.name}' ({self.path} -> {self.topic})", unit="lines")
        with SourceDelivery(self.name, self.store, self.kafka, topics=[self.topic], progress=progress,
                            config=self.config) as delivery:
            if self.dead_topic:
                ensure_dead_letter_topic(self.config, delivery.admin, self.dead_topic)
            offset = delivery.resume(self.partition, stored)
            result.recovered = offset != stored
            self._read(delivery, offset, result)
        progress.done()
        result.seconds = round(progress.seconds, 3)
        return result

    def _read(self, delivery: SourceDelivery, offset: dict[str, Any] | None, result: FileSourceResult) -> None:
        try:
            f = open(self.path, "rb")
        except OSError as exc:  # a folder or no permission: a person has to change something
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}", connector=self.name, key="file") from None
        with f:
            st = os.fstat(f.fileno())
            position = int((offset or {}).get("position", 0))
            prefix = _Prefix(f, self.check_bytes)
            reason = None
            if offset is not None:
                if offset.get("inode") is not None and offset["inode"] != st.st_ino:
                    reason = f"the file was replaced (inode {offset['inode']} -> {st.st_ino})"
                elif st.st_size < position:
                    reason = f"the file shrank below the stored position ({st.st_size} < {position} bytes)"
                elif offset.get("tail_sha1") and position > 0 and _tail_sha1(f, position) != offset["tail_sha1"]:
                    reason = f"the bytes before position {position} changed (the file was rewritten)"
                elif isinstance(offset.get("prefix_sha1"), str) and isinstance(offset.get("prefix_bytes"), int):
                    prefix.extend(min(offset["prefix_bytes"], position))
                    if prefix.hash.hexdigest() != offset["prefix_sha1"]:
                        reason = (f"the first {prefix.size} bytes changed since they were read "
                                  "(the file was rewritten at the same or a greater length)")
            if reason:
                log.warning("connector '%s': %s; reading %s again from its start", self.name, reason, self.path)
                result.reset = reason
                position = 0
                prefix = _Prefix(f, self.check_bytes)
            prefix.extend(position)  # an offset without a prefix hash (Connect's, an older one) starts one here
            result.from_position = result.to_position = position
            end = st.st_size  # bounded: lines appended during this run wait for the next one
            f.seek(position)
            # A batch is one transaction, streamed: records go to Kafka as each chunk of the file is
            # read (memory holds a chunk, whatever batch.size is), and the batch's end commits them
            # with the new position. A crash before the commit leaves none of them visible.
            txn = _Batch(delivery, self.topic)
            pending = b""
            pos = position  # byte position just after the last complete line seen

            def commit() -> None:
                self._commit(delivery, f, txn, pos, st, prefix, result)

            while pos + len(pending) < end:
                chunk = f.read(min(READ_CHUNK, end - pos - len(pending)))
                if not chunk:
                    break
                data = pending + chunk
                start = 0
                last_nl = data.rfind(b"\n")
                region = data[:last_nl] if last_nl >= 0 else b""
                if last_nl >= 0 and plain_lines(region) and self._fields_fit(region):
                    # The common case, a whole chunk of plain lines: split and convert them in bulk.
                    # Batches are cut at the same lines as below (dead letters of the batch so far
                    # included), so positions and offsets are the same.
                    lines = region.split(b"\n")
                    i = 0
                    while i < len(lines):
                        part = lines[i:i + self.batch_size - txn.count]
                        i += len(part)
                        txn.values.extend(self.to_value.plain_values(part))
                        txn.count += len(part)
                        size = sum(map(len, part)) + len(part)
                        result.bytes += size
                        pos += size
                        if txn.count >= self.batch_size:
                            commit()
                    start = last_nl + 1
                while True:
                    nl = data.find(b"\n", start)
                    if nl < 0:
                        break
                    line = data[start:nl]
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    text = self._text(line, pos)  # data[start] is at byte pos of the file
                    if isinstance(text, DataError):
                        error = text
                        if self.dead_topic is None:  # errors.tolerance=none: stop just before it
                            if txn.count:
                                commit()
                            raise DataError(
                                f"connector '{self.name}': {error}. The {result.records} lines before it were delivered; "
                                f"the stored position stays at byte {pos}."
                            ) from None
                        report(self.config, error, f"the line at byte {pos}", self.dead_topic, line)
                        txn.dead.append(DeadLetter(self.dead_topic, line, context_headers(
                            self.config, error, "SOURCE", file=self.path, position=pos)))
                    else:
                        txn.values.append(self.to_value(text))
                    txn.count += 1
                    result.bytes += nl + 1 - start
                    pos += nl + 1 - start
                    start = nl + 1
                    if txn.count >= self.batch_size:
                        commit()
                pending = data[start:]
                txn.send()  # this chunk's records, into the open transaction
            if txn.count:
                commit()
            elif offset is not None:
                # Nothing new, but record what the position refers to (after a reset, a Connect-shaped
                # offset, or a file written again with the same bytes), so the sensor waits again.
                here = _position_fields(f, pos, st, prefix)
                if any(offset.get(k) != v for k, v in here.items()):
                    delivery.note(self.partition, {"position": pos, **here})
            if pending:
                result.waiting_partial_line = True
                log.info("connector '%s': the last %d bytes have no newline yet; they wait for the next run",
                         self.name, len(pending))
            result.to_position = pos

    def _commit(self, delivery: SourceDelivery, f: Any, txn: _Batch, pos: int, st: os.stat_result,
                prefix: _Prefix, result: FileSourceResult) -> None:
        """Ends the batch: its last records and dead letters, and the new position."""
        here = f.tell()
        new = {"position": pos, **_position_fields(f, pos, st, prefix)}
        f.seek(here)
        txn.send()
        counts = delivery.commit(self.partition, new)
        result.records += counts.records
        result.dead_letters += counts.dead_letters
        result.batches += 1
        result.to_position = pos
        txn.count = 0


def _position_fields(f: Any, pos: int, st: os.stat_result, prefix: _Prefix) -> dict[str, Any]:
    """What an offset at ``pos`` records of the file, to notice later that it was replaced or rewritten."""
    prefix.extend(pos)
    return {"inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "tail_sha1": _tail_sha1(f, pos), **prefix.fields()}


class _Batch:
    """The records of the open batch not sent yet (one file chunk's), and the batch's line count."""

    def __init__(self, delivery: SourceDelivery, topic: str):
        self.delivery = delivery
        self.topic = topic
        self.values: list[bytes] = []
        self.dead: list[DeadLetter] = []
        self.count = 0  # lines of the batch: records and dead letters

    def send(self) -> None:
        """This chunk's records and dead letters, into the open batch."""
        self.delivery.send(self.topic, self.values)
        self.delivery.send_dead(self.dead)
        self.values.clear()
        self.dead.clear()
