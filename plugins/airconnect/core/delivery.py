"""The delivery protocols, each in one place: sources (Kafka Connect's
``ExactlyOnceWorkerSourceTask``) and sinks (its ``WorkerSinkTask``, see :class:`SinkDelivery`).

A source connector only reads and says where it got to; :class:`SourceDelivery` does the rest,
the same way for every source (the file source, the JDBC source, the retail scenario's forecast
publication):

* one transactional producer per run (``transactional.id`` = ``airconnect-<name>``: starting it
  fences an older one and aborts what that one left open); a source split into tasks
  (``writer_per_partition``) has one per source partition instead (``airconnect-<name>-<digest of
  the partition>``), so tasks never fence each other, and whichever task reads a partition next
  fences a zombie that read it, however the split changed;
* per source partition (a file, a table, a query), the offset to resume from: the Airflow
  Variable's, unless the journal (topic ``airconnect-offsets``) shows that the last run
  committed a batch after it and died before saving the Variable;
* :meth:`SourceDelivery.send` streams records and dead letters into the open batch (a Kafka
  transaction begun at its first record);
* :meth:`SourceDelivery.commit` ends the batch: the new offset goes into the journal inside the
  same transaction, the transaction commits, then the Variable is saved. A crash anywhere
  leaves either nothing of the batch visible (read_committed) or the batch and its journalled
  offset, which the next run resumes after;
* progress (records sent, rate) in the task log.

Offsets are Kafka Connect's shapes: ``partition`` and ``offset`` are plain JSON maps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Message

from airconnect.core.config import ConnectorConfig
from airconnect.core.deadletters import DeadLetter, SinkDeadLetters, ensure_dead_letter_topic
from airconnect.core.kafka_client import (
    Admin,
    GroupCommitter,
    PartitionProgress,
    SourceWriter,
    committed_group_offsets,
    journal_key,
    read_to_end,
    transactional_id,
)
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

#: The connector :func:`airconnect.core.runtime.run` is running: a delivery of that name applies
#: its single message transforms (``config.transforms``) without the connector passing its config.
RUNNING: ContextVar[ConnectorConfig | None] = ContextVar("airconnect_running", default=None)


def _transforms_of(name: str, config: ConnectorConfig | None) -> ConnectorConfig | None:
    """The definition whose transforms a delivery applies, if it has any."""
    if config is None:
        running = RUNNING.get()
        config = running if running is not None and running.name == name else None
    return config if config is not None and config.transforms is not None else None


@dataclass
class BatchCounts:
    """What one committed batch delivered."""

    records: int
    dead_letters: int


class SourceDelivery:
    """Delivers a source connector's batches exactly once; see the module's documentation.

    Use as a context manager (the producer is closed, and an open batch aborted, at the end)::

        with SourceDelivery(name, store, kafka, topics=[topic], progress=progress) as delivery:
            offset = delivery.resume(partition)
            delivery.send(topic, values)
            delivery.commit(partition, {"position": 160})
    """

    def __init__(self, name: str, store: KeyValueStore, kafka: Mapping[str, Any], *,
                 topics: Sequence[str] = (), progress: Progress | None = None,
                 new_topics: Mapping[str, int] | None = None, writer_per_partition: bool = False, config: ConnectorConfig | None = None):
        self.name = name
        self.kafka = dict(kafka)
        self.offsets = Offsets(store, name)
        self.progress = progress
        self.admin = Admin(self.kafka)
        self.new_topics = dict(new_topics or {})  # KIP-158: partitions, replication_factor
        for topic in topics:
            self.ensure_topic(topic)
        self.admin.ensure_offsets_topic()
        self.per_partition = writer_per_partition
        # Per partition: the writer of the partition last resumed (made by resume() before it
        # reads the journal, so a zombie is fenced before its last commits are looked for).
        self.writer: SourceWriter = None if writer_per_partition else SourceWriter(self.kafka, name)  # type: ignore[assignment]
        self._writer_of: str | None = None
        self._previous: dict[str, dict[str, Any] | None] = {}
        self._open = False
        self._records = 0  # in the open batch
        self._dead = 0
        self._topics = set(topics)
        # Single message transforms (airconnect.transforms.runtime), if the definition has any.
        with_transforms = _transforms_of(name, config)
        self._transforms = None
        if with_transforms is not None:
            from airconnect.transforms.runtime import SourceTransforms

            self._transforms = SourceTransforms(with_transforms)

    def __enter__(self) -> SourceDelivery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # aborts an open batch: none of it becomes visible

    def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` if it is missing (for topics known only as the run goes, a table's say)."""
        self.admin.ensure_topic(topic, partitions=self.new_topics.get("partitions", 1),
                                replication_factor=self.new_topics.get("replication_factor", -1))

    def _use_writer(self, partition: dict[str, Any]) -> None:
        """Per partition: the writer of ``partition`` (its own transactional id) becomes the current one."""
        key = _pkey(partition)
        if self._writer_of == key:
            return
        if self._open:
            raise AssertionError(f"connector '{self.name}': a batch is open while switching to {key}")
        if self.writer is not None:
            self.writer.close()
            self.writer = None  # type: ignore[assignment]
        self.writer = SourceWriter(self.kafka, self.name, transactional_id=transactional_id(self.name, partition))
        self._writer_of = key

    # -- offsets

    def stored(self, partition: Mapping[str, Any]) -> dict[str, Any] | None:
        """The partition's offset in the Variable, as saved (the connector checks its shape)."""
        return self.offsets.get(dict(partition))

    def resume(self, partition: Mapping[str, Any], stored: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The offset to resume ``partition`` from: ``stored`` (the Variable's, checked by the
        connector; read here when not given), or the journal's if the last run committed a batch
        after it and died before saving the Variable (then the Variable is repaired)."""
        partition = dict(partition)
        if self.per_partition:
            self._use_writer(partition)
        if stored is None:
            stored = self.stored(partition)
        offset = self.writer.recover(journal_key(self.name, partition), stored)
        if offset != stored:
            log.warning("connector '%s' (%s): the previous run committed a batch but died before saving its offset; "
                        "resuming after it (nothing is sent twice)", self.name, _describe(partition))
            self._save(partition, offset)
        self._previous[_pkey(partition)] = offset
        return offset

    def note(self, partition: Mapping[str, Any], offset: Mapping[str, Any]) -> None:
        """Record in the Variable what ``offset`` refers to when no record moved (a file that was
        read again from its start and had nothing new, a Connect-shaped offset completed)."""
        self._save(dict(partition), dict(offset))
        self._previous[_pkey(partition)] = dict(offset)

    # -- batches

    @property
    def open_records(self) -> int:
        """Records and dead letters sent into the open batch so far."""
        return self._records + self._dead

    def _begin(self) -> None:
        if not self._open:
            self.writer.begin()
            self._open = True

    def send(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None) -> None:
        """Stream records into the open batch (it begins with its first record)."""
        if not values:
            return
        self._begin()
        if self._transforms is not None:
            self._send_transformed(topic, values, keys)
        else:
            self.writer.produce_many(topic, values, keys)
            self._records += len(values)
        if self.progress is not None:
            self.progress.add(len(values))  # records streamed; a batch is visible once it commits

    def _send_transformed(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None) -> None:
        """Kafka Connect's order: the connector's records -> transforms -> converter -> producer. A
        record routed elsewhere goes to that topic (created if missing); a dropped one is not sent."""
        assert self._transforms is not None
        dead: list[DeadLetter] = []

        def on_dead(original: str, letter: DeadLetter) -> None:
            if letter.topic not in self._topics:
                ensure_dead_letter_topic(self._transforms.config, self.admin, letter.topic)  # type: ignore[union-attr]
                self._topics.add(letter.topic)
            dead.append(letter)

        for out_topic, key, value, headers in self._transforms.records(topic, values, keys, on_dead):
            if out_topic not in self._topics:
                self.ensure_topic(out_topic)  # with topic.creation.* (KIP-158) like the others
                self._topics.add(out_topic)
            self.writer.produce(out_topic, value, key, headers=cast("list[tuple[str, bytes]]", headers))
            self._records += 1
        self.send_dead(dead)

    def send_dead(self, letters: Sequence[DeadLetter]) -> None:
        """Dead letters ride in the batch of the records around them: delivered once, with it."""
        if not letters:
            return
        self._begin()
        for letter in letters:
            self.writer.produce(letter.topic, letter.value, headers=letter.headers)
        self._dead += len(letters)

    def commit(self, partition: Mapping[str, Any], offset: Mapping[str, Any]) -> BatchCounts:
        """End the batch at ``offset``: journal it in the batch's transaction, commit, save the
        Variable. A batch with no record (an offset that moved on its own) is a transaction too."""
        partition, offset = dict(partition), dict(offset)
        pkey = _pkey(partition)
        self._begin()
        self.writer.commit({journal_key(self.name, partition): (offset, self._previous.get(pkey))})
        self._open = False
        self._save(partition, offset)
        self._previous[pkey] = offset
        counts = BatchCounts(self._records, self._dead)
        self._records = self._dead = 0
        return counts

    def commit_snapshot(self) -> BatchCounts:
        """End a batch that has no offset: a snapshot (the JDBC source's bulk mode reads every row
        again each run), all of it visible at once or none of it."""
        self._begin()
        self.writer.commit({})
        self._open = False
        counts = BatchCounts(self._records, self._dead)
        self._records = self._dead = 0
        return counts

    def _save(self, partition: dict[str, Any], offset: dict[str, Any] | None) -> None:
        if offset is None:
            return
        self.offsets.put(partition, offset)
        self.offsets.save()


def _pkey(partition: Mapping[str, Any]) -> str:
    return json.dumps(partition, sort_keys=True, ensure_ascii=False)


def _describe(partition: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in partition.items())


class SinkDelivery:
    """The sink delivery protocol, in one place (Kafka Connect's ``WorkerSinkTask``).

    * Where each topic-partition starts: the offset in the Airflow Variable (Kafka Connect's
      ``{"kafka_topic", "kafka_partition"} -> {"kafka_offset"}``), else the consumer group's
      commit, else the partition's beginning.
    * :meth:`records`: the committed records from there to the end of each partition as of the
      run's start (a bounded micro-batch); :attr:`positions` says how far each partition got.
    * :meth:`checkpoint`, once the connector has made its output durable (a file fsynced, an
      object uploaded): dead letters are acknowledged, then the offsets (with the connector's own,
      a file's length say) are saved in the Variable, then the consumer group commits them, through
      one consumer per run, so Kafka's tools show the sink's lag.
    * progress (records done, rate) in the task log.

    A crash before a checkpoint leaves the Variable at the previous one: the records after it are
    read again, and the connector makes writing them again harmless (a file truncated back to its
    saved length, an S3 object overwritten with the same bytes).
    """

    def __init__(self, name: str, store: KeyValueStore, kafka: Mapping[str, Any], topics: Sequence[str], *,
                 group: str, dead_letters: SinkDeadLetters | None = None, progress: Progress | None = None,
                 partitions: Sequence[Sequence[Any]] | None = None,
                 config: ConnectorConfig | None = None):
        self.name = name
        self.kafka = dict(kafka)
        self.topics = list(topics)
        self.group = group
        self.offsets = Offsets(store, name)
        self.dead = dead_letters
        self.progress = progress
        self.positions: dict[tuple[str, int], PartitionProgress] = {}
        #: A task's share of the topics' partitions (``None``: all of them). Its checkpoints save
        #: only these partitions' offsets, into the Variable the connector's tasks share.
        self.only: set[tuple[str, int]] | None = (
            None if partitions is None else {(str(t), int(p)) for t, p in partitions})
        self._committer = GroupCommitter(self.kafka, group)
        # Single message transforms (airconnect.transforms.runtime), if the definition has any.
        with_transforms = _transforms_of(name, config)
        self._transforms = None
        if with_transforms is not None:
            from airconnect.transforms.runtime import SinkTransforms

            self._transforms = SinkTransforms(with_transforms)

    def __enter__(self) -> SinkDelivery:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self._transforms is not None:
            self._transforms.failure = None  # an error already on its way wins
        self.close()

    def close(self) -> None:
        """Closes the group's committer; then, if a transform failed on a record (errors.tolerance=none),
        raises that :class:`DataError`: the connector has checkpointed what came before it."""
        self._committer.close()
        if self._transforms is not None:
            self._transforms.raise_failure()

    def starts(self) -> dict[str, dict[int, int]]:
        """Each topic's ``{partition: offset}`` to start from (see the class's documentation)."""
        starts: dict[str, dict[int, int]] = {t: {} for t in self.topics}
        for partition, _ in self.offsets.items():
            topic, p = partition.get("kafka_topic"), partition.get("kafka_partition")
            if topic not in starts:
                continue
            if self.only is not None and (topic, p) not in self.only:
                continue
            if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                raise self.offsets._fail(f"partition {partition} has no whole-number 'kafka_partition'")
            offset = self.offsets.get_int(partition, "kafka_offset")
            if offset is not None:
                starts[topic][p] = offset
        for topic, parts in starts.items():  # no Variable entry yet: the consumer group's commits
            if not parts:
                parts.update({p: o for p, o in committed_group_offsets(self.kafka, self.group, topic).items()
                              if self.only is None or (topic, p) in self.only})
        return starts

    def records(self, starts: Mapping[str, Mapping[int, int] | None] | None = None,
                on_batch_end: Callable[[], None] | None = None) -> Iterator[Message]:
        """The committed records to read this run, from ``starts`` (default :meth:`starts`); with
        transforms, as they come out of them (see :mod:`airconnect.transforms.runtime`)."""
        messages = read_to_end(self.kafka, self.starts() if starts is None else starts, group_id=self.group,
                               progress=self.positions, on_batch_end=on_batch_end, only=self.only)
        if self._transforms is None:
            return messages
        return self._transforms.records(messages, self.positions, self.dead)

    @property
    def moved(self) -> bool:
        """Whether any partition got past where it started."""
        return any(pp.next_offset != pp.start for pp in self.positions.values())

    def stay_before(self, msg: Message) -> None:
        """The next checkpoint keeps ``msg``'s partition at ``msg`` (a record that stops the run)."""
        self.positions[(msg.topic(), msg.partition())].next_offset = msg.offset()

    def checkpoint(self, positions: Mapping[tuple[str, int], int] | None = None,
                   own: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]] = ()) -> None:
        """Dead letters acknowledged, then ``positions`` (default: how far each partition got) and the
        connector's ``own`` (partition, offset) pairs saved in the Variable, then the group commits.
        Call it only once the output up to ``positions`` is durable."""
        if self.dead is not None:
            self.dead.flush()  # dead letters are acknowledged before the offsets move past them
        if positions is None:
            positions = {k: pp.next_offset for k, pp in self.positions.items()}
        for (topic, p), next_offset in positions.items():
            self.offsets.put({"kafka_topic": topic, "kafka_partition": p}, {"kafka_offset": next_offset})
        for partition, offset in own:
            self.offsets.put(partition, offset)
        self.offsets.save()
        self._committer.commit(positions)
