"""File source: each complete line of a growing text file becomes one record (Kafka Connect's
FileStreamSourceConnector, made exactly-once and byte-accurate).

Files: ``file`` names one file, as in Kafka Connect, or several: a comma-separated list of paths
and glob patterns (``*``, ``?``, ``[...]``, ``**`` for folders at any depth), expanded at the start
of every run (a file that matches later is read from then on), matches taken in sorted order. Each
file is its own source partition, so ``tasks.max`` deals the files into ``min(files, tasks.max)``
tasks (:func:`task_files`) and a change of split between runs loses and repeats nothing.

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
:class:`~airconnect.core.kafka_client.SourceWriter`); the Variable is set after the commit. One
file (a plain path) has the connector's transactional id, as ever; several files (a list or a
pattern) have one each (``writer_per_partition``), so tasks never fence each other and whichever
task reads a file next fences a zombie that read it.
A last line without its newline waits for the next run. Lines end with ``\\n``; a ``\\r``
before it (CRLF) is dropped.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from airconnect.connectors.file import check_file_offset
from airconnect.core.config import ConnectorClass, ConnectorConfig, Key, one_task
from airconnect.core.converters import StringValueWriter, plain_lines
from airconnect.core.deadletters import DeadLetter, context_headers, dead_letter_topic, ensure_dead_letter_topic, report, tolerates
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import ConfigError, DataError
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.progress import Progress
from airconnect.core.split import deal

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
        Key("file", "paths", doc="The file to read, or several: a comma-separated list of paths and glob patterns "
            "(*, ?, [...], ** for folders at any depth), expanded at each run; one task per file up to tasks.max. "
            "Relative paths are under $AIRCONNECT_DATA_DIR.", check=lambda value: _entries_problem(file_entries(value))),
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
    check=lambda config: _check(config),
    runner=lambda config, store, kafka: FilesSource(config, store, kafka) if several(config) else FileSource(
        config, store, kafka),
    topics=lambda config: [config["topic"]],
    check_offset=lambda config, partition, offset: _check_offset(partition, offset),
    offset_partition=("filename",),
    title="a file source",
    task_configs=lambda config, max_tasks: [{"files": files} for files in task_files(config, max_tasks)],
)

#: A glob pattern's special characters (an entry holding none is a plain path).
_MAGIC: Final = re.compile(r"[*?[]")


def file_entries(value: str) -> list[str]:
    """The entries of a file source's ``file`` (already resolved: absolute paths and patterns)."""
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def is_pattern(entry: str) -> bool:
    return _MAGIC.search(entry) is not None


def several(config: ConnectorConfig) -> bool:
    """Whether ``file`` names several files (a list, or a pattern), not one plain path."""
    entries = file_entries(config["file"])
    return len(entries) > 1 or is_pattern(entries[0])


def _pattern_problem(entry: str) -> str | None:
    """What is wrong with a glob pattern that Python's glob would quietly take otherwise."""
    i = 0
    while i < len(entry):
        if entry[i] == "[":
            j = i + 1 + (entry[i + 1:i + 2] == "!")
            j += entry[j:j + 1] == "]"  # a ']' first in a set is one of its characters
            end = entry.find("]", j)
            if end < 0:
                return f"{entry!r} opens a '[' set that is never closed (to match a '[' itself, write '[[]')"
            if "/" in entry[i:end]:
                return f"{entry!r} has a '/' inside a '[...]' set, which never matches (a set matches one character of a name)"
            i = end + 1
        else:
            i += 1
    odd = next((part for part in entry.split("/") if "**" in part and part != "**"), None)
    if odd is not None:
        return f"{entry!r} has '**' inside the name {odd!r}; '**' (folders at any depth) is a whole path part, as in 'logs/**/*.txt'"
    return None


def _entries_problem(entries: list[str]) -> str | None:
    """A Key check of ``file``'s entries: what was expected, or ``None``."""
    seen: set[str] = set()
    for entry in entries:
        if "\x00" in entry:
            return f"file paths, but {entry!r} holds a NUL byte"
        if entry in seen:
            return f"each file or pattern once, but {entry!r} is listed twice"
        seen.add(entry)
        if is_pattern(entry):
            problem = _pattern_problem(entry)
            if problem:
                return f"glob patterns that match file names, but {problem}"
        elif os.path.isdir(entry):
            return ("a file, but it is a directory" if len(entries) == 1 else
                    f"files, but {entry!r} is a directory (to read the files in it, write '{entry}/*')")
    return None


def _check(cfg: ConnectorConfig) -> None:
    """One plain path is one task (as in Kafka Connect); a list or a pattern splits into one task per file."""
    if not several(cfg):
        one_task(cfg)


def matched_files(config: ConnectorConfig) -> list[str]:
    """The files ``file`` names now (see :func:`matching`)."""
    return matching(file_entries(config["file"]))


def matching(entries: Sequence[str]) -> list[str]:
    """The files ``entries`` name now, sorted, each once: the plain paths (whether they exist yet or
    not) and the files the patterns match (folders left out; as in a shell, ``*`` does not match a
    name starting with '.')."""
    found: set[str] = set()
    for entry in entries:
        if is_pattern(entry):
            found.update(p for p in glob.glob(entry, recursive=True) if not os.path.isdir(p))
        else:
            found.add(entry)
    return sorted(found)


def task_files(config: ConnectorConfig, max_tasks: int) -> list[list[str]]:
    """Kafka Connect's ``taskConfigs`` for files: the files matched now dealt into
    ``min(files, max_tasks)`` disjoint groups (one empty group when none matches)."""
    return deal(matched_files(config), max_tasks)


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


def change_in(entries: Sequence[str], offsets: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """The first file ``entries`` name now with something new to read, and why (see
    :func:`change_reason`; ``offsets`` by path), or ``None``. A file new to the source counts as
    grown once it holds a byte."""
    for path in matching(entries):
        reason = change_reason(path, offsets.get(path))
        if reason:
            return path, reason
    return None


class FileSource:
    """Reads new complete lines of ``file`` and delivers them to ``topic`` exactly once (``path``:
    one of the files of a source of several, sharing their ``offsets``)."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any], *,
                 path: str | None = None, offsets: Offsets | None = None):
        if config.cls is not FILE_SOURCE:
            raise ConfigError(f"is {config.cls.name}, not a file source", connector=config.name, key="connector.class")
        self.config = config
        self.name = config.name
        self.path: str = path if path is not None else config["file"]
        self.topic: str = config["topic"]
        self.batch_size: int = config["batch.size"]
        self.to_value = StringValueWriter(config["value.converter"], config["value.converter.schemas.enable"])
        self.store = store
        self.offsets = offsets if offsets is not None else Offsets(store, config.name)
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

    def _missing(self, stored: Mapping[str, Any] | None, result: FileSourceResult) -> bool:
        """Whether there is no file to read (a file that does not exist yet waits for a later run)."""
        if os.path.isdir(self.path):  # valid when checked, a folder now: nothing to read, nothing to create
            raise ConfigError(f"{self.path} is a directory; expected a file (a text file that grows line by line)",
                              connector=self.name, key="file")
        if os.path.exists(self.path):
            return False
        log.warning("connector '%s': the file %s does not exist (yet); nothing to read", self.name, self.path)
        pos = int((stored or {}).get("position", 0))
        result.from_position = result.to_position = pos
        result.extra["missing_file"] = True
        return True

    def run(self) -> FileSourceResult:
        result = FileSourceResult(self.name, self.path, self.topic)
        stored = self.stored_offset()
        if self._missing(stored, result):
            return result
        progress = Progress(log, f"connector '{self.name}' ({self.path} -> {self.topic})", unit="lines")
        with SourceDelivery(self.name, self.store, self.kafka, topics=[self.topic], progress=progress,
                            config=self.config) as delivery:
            if self.dead_topic:
                ensure_dead_letter_topic(self.config, delivery.admin, self.dead_topic)
            self.run_in(delivery, stored, result)
        progress.done()
        result.seconds = round(progress.seconds, 3)
        return result

    def run_in(self, delivery: SourceDelivery, stored: Mapping[str, Any] | None, result: FileSourceResult) -> None:
        """Delivers the file's new lines through ``delivery`` (open, its topics made), from ``stored``."""
        offset = delivery.resume(self.partition, stored)
        result.recovered = offset != stored
        self._read(delivery, offset, result)

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


@dataclass
class FilesSourceResult:
    """A run (or one task's run) of a file source of several files: the totals, and each file's result."""

    connector: str
    topic: str
    task: int | None = None
    records: int = 0
    bytes: int = 0
    batches: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    #: No file matched (none was given to this task): nothing was read.
    no_file: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)

    def add(self, one: FileSourceResult) -> None:
        self.records += one.records
        self.bytes += one.bytes
        self.batches += one.batches
        self.dead_letters += one.dead_letters
        self.files.append({k: v for k, v in one.as_dict().items() if k not in ("connector", "topic", "seconds")})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FilesSource:
    """A file source of several files (a list, or patterns): each file matched now (or this task's
    share of them, ``config.task["files"]``) read as :class:`FileSource` reads one, through one
    delivery with a transactional id per file. A file whose line cannot be delivered
    (``errors.tolerance=none``) stops at that line; the task's other files are read, then the run fails."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any]):
        if config.cls is not FILE_SOURCE:
            raise ConfigError(f"is {config.cls.name}, not a file source", connector=config.name, key="connector.class")
        self.config = config
        self.name = config.name
        self.topic: str = config["topic"]
        self.store = store
        self.kafka = dict(kafka)

    def run(self) -> FilesSourceResult:
        task = self.config.task
        mine = task is not None and "files" in task  # this task's share of the files, from the split
        paths: list[str] = [str(p) for p in task["files"]] if task is not None and mine else matched_files(self.config)
        result = FilesSourceResult(self.name, self.topic, task=task.get("task") if task is not None else None)
        if not paths:
            log.warning("connector '%s': %s; nothing to read (a later run reads the files that appear)", self.name,
                        "this task has no file" if mine else f"no file matches {self.config['file']!r}")
            result.no_file = True
            return result
        offsets = Offsets(self.store, self.name)
        progress = Progress(log, f"connector '{self.name}' ({len(paths)} file(s) -> {self.topic})", unit="lines")
        failed: list[Exception] = []
        with SourceDelivery(self.name, self.store, self.kafka, topics=[self.topic], progress=progress,
                            writer_per_partition=True, config=self.config) as delivery:
            dead_topic = dead_letter_topic(self.config, self.topic) if tolerates(self.config) else None
            if dead_topic:
                ensure_dead_letter_topic(self.config, delivery.admin, dead_topic)
            for path in paths:
                one = FileSource(self.config, self.store, self.kafka, path=path, offsets=offsets)
                done = FileSourceResult(self.name, path, self.topic)
                try:
                    stored = one.stored_offset()
                    if not one._missing(stored, done):
                        one.run_in(delivery, stored, done)
                except (ConfigError, DataError) as exc:  # this file stops here; the others are read
                    log.error("%s", exc)
                    failed.append(exc)
                result.add(done)
        progress.done()
        result.seconds = round(progress.seconds, 3)
        if failed:
            if len(failed) > 1:
                log.error("connector '%s': %d of its %d files stopped at a line they could not deliver (see above)",
                          self.name, len(failed), len(paths))
            raise failed[0]
        return result


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
