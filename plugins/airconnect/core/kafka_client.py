"""The Kafka side of every connector, on confluent-kafka (librdkafka).

- :class:`SourceWriter`: exactly-once delivery for sources. Each batch of records is produced
  in one Kafka transaction together with the batch's source offset, written to the offsets
  journal topic (``airconnect-offsets``, the same key shape as Kafka Connect's
  ``connect-offsets``: ``["<connector>", {partition}]``). Consumers reading with
  ``isolation.level=read_committed`` see a batch and its offset together, or neither.
  The journal is what makes the Airflow Variable safe to update *after* the commit: a run that
  dies between the two is repaired by the next run (see :meth:`SourceWriter.recover`).
- :func:`read_to_end`: the bounded micro-batch every sink consumes: from its start offsets to
  the end of each partition as of the run's start, committed records only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from airconnect.core.errors import DataError, KafkaUnavailableError, PermanentError
from airconnect.core.failpoints import failpoint

log = logging.getLogger(__name__)

OFFSETS_TOPIC: Final = "airconnect-offsets"
PREVIOUS_HEADER: Final = "airconnect.previous"
DEFAULT_TIMEOUT: Final = 30.0

# Keys of a Kafka connection's extra that apply to every client; the rest is ours to set.
_CLIENT_ONLY: Final = ("group.id", "transactional.id", "enable.auto.commit", "isolation.level")
#: Keys for the sources' producers only, as in Kafka Connect's worker config
#: (``producer.compression.type``): other clients never see them.
PRODUCER_PREFIX: Final = "producer."


_librdkafka_log = logging.getLogger("airconnect.librdkafka")

_RETRIABLE_CODES: Final = frozenset({
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._WAIT_COORD, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.OFFSET_NOT_AVAILABLE,  # "leader high watermark is not caught up": a leader just elected
})


def client_config(conn: Mapping[str, Any]) -> dict[str, Any]:
    """The common part of a Kafka connection's config (``bootstrap.servers``, security, ...)."""
    if not conn.get("bootstrap.servers"):
        raise PermanentError("the Kafka connection has no 'bootstrap.servers'")
    cfg = {k: v for k, v in conn.items() if k not in _CLIENT_ONLY and not k.startswith(PRODUCER_PREFIX)}
    cfg.setdefault("logger", _librdkafka_log)  # librdkafka's own lines go to the task log, not stderr
    # librdkafka connects to a broker it learns from the bootstrap metadata only after half of
    # reconnect.backoff.ms (100 ms by default): every new client waited 50 ms before its first
    # answer, and a run makes several (admin, transactional producer, journal reader). The
    # backoff still doubles up to reconnect.backoff.max.ms (10 s) while a broker is down.
    cfg.setdefault("reconnect.backoff.ms", 20)
    return cfg


def with_retries(fn: Callable[[], Any], conn: Mapping[str, Any], doing: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Call ``fn``, retrying Kafka's transient coordinator/leader errors for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return fn()
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            transient = err is not None and (err.code() in _RETRIABLE_CODES or err.retriable())
            if not transient or time.monotonic() + delay > deadline:
                raise kafka_error(exc, conn, doing) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _describe(conn: Mapping[str, Any]) -> str:
    return str(conn.get("bootstrap.servers"))


def kafka_error(exc: BaseException, conn: Mapping[str, Any], doing: str) -> Exception:
    """Map a librdkafka error to airconnect's hierarchy, with a message that says what failed."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        return DataError(f"{doing}: a record is larger than the broker accepts ({err.str()})")
    detail = err.str() if err is not None else str(exc)
    return KafkaUnavailableError(f"{doing}: Kafka at {_describe(conn)} failed: {detail}")


class Admin:
    """Topic checks and creation."""

    def __init__(self, conn: Mapping[str, Any]):
        self.conn = dict(conn)
        # Asking about one topic must not create it: librdkafka's admin client is a producer
        # underneath, whose metadata requests ask the broker to create a missing topic (with the
        # broker's default partitions) unless told not to.
        self.client = AdminClient({**client_config(conn), "allow.auto.create.topics": False})
        # Topics this client has seen exist (or made), with their partition counts: ensure_topic
        # asks the cluster about a topic once. A client lives as long as one run (a delivery's).
        self._known: dict[str, int] = {}

    def topics(self, timeout: float = 15.0) -> dict[str, int]:
        """Topic name -> partition count."""
        try:
            md = self.client.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"Kafka at {_describe(self.conn)} did not answer within {timeout:.0f} s ({exc.args[0].str() if exc.args else exc}); "
                "is the broker running? (scripts/stack.sh start kafka)"
            ) from None
        found = {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}
        self._known = dict(found)
        return found

    def broker_count(self) -> int:
        try:
            return len(self.client.list_topics(timeout=15).brokers)
        except KafkaException as exc:
            raise kafka_error(exc, self.conn, "listing brokers") from None

    def ensure_topic(self, topic: str, *, partitions: int = 1, config: Mapping[str, str] | None = None,
                     replication_factor: int = -1) -> int:
        """Create ``topic`` if it is missing (-1: the broker's default replication); return its partition count."""
        if topic in self._known:
            return self._known[topic]
        found = self.partitions(topic)
        if found is not None:
            return found
        futures = self.client.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor, config=dict(config or {}))],
            operation_timeout=15, request_timeout=15,
        )
        try:
            futures[topic].result()
            log.info("created topic %s (%d partition(s))", topic, partitions)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.INVALID_REPLICATION_FACTOR:  # more replicas than brokers: a retry cannot help
                raise PermanentError(f"creating topic {topic}: {exc.args[0].str()}") from None
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise kafka_error(exc, self.conn, f"creating topic {topic}") from None
        for _ in range(100):  # metadata propagates asynchronously
            found = self.partitions(topic)
            if found is not None:
                return found
            time.sleep(0.05)
        return partitions

    def partitions(self, topic: str, timeout: float = 15.0) -> int | None:
        """``topic``'s partition count, None if it does not exist (or not every partition has a
        leader yet): the cluster asked for this one topic (never created by asking), not for all
        of them (3 ms rather than 30-80 ms on a cluster of 3,000 topics)."""
        try:
            md = self.client.list_topics(topic=topic, timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"Kafka at {_describe(self.conn)} did not answer within {timeout:.0f} s ({exc.args[0].str() if exc.args else exc}); "
                "is the broker running? (scripts/stack.sh start kafka)"
            ) from None
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return None
        if any(p.error is not None or p.leader < 0 for p in t.partitions.values()):
            return None  # just created: a partition has no leader yet (nothing can be produced to it)
        self._known[topic] = len(t.partitions)
        return len(t.partitions)

    def ensure_offsets_topic(self) -> None:
        self.ensure_topic(
            OFFSETS_TOPIC, partitions=1,
            config={"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"},
        )

    def topic_config(self, topic: str) -> dict[str, str]:
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        try:
            found = self.client.describe_configs([res])[res].result(timeout=15)
        except KafkaException as exc:
            raise kafka_error(exc, self.conn, f"describing topic {topic}") from None
        return {k: v.value for k, v in found.items()}


def sink_group_id(connector: str) -> str:
    """Kafka Connect's consumer group for a sink connector: ``connect-<name>``."""
    return f"connect-{connector}"


def transactional_id(connector: str, partition: Mapping[str, Any]) -> str:
    """The ``transactional.id`` of one source partition's batches: ``airconnect-<connector>-<digest>``.
    Whichever task (of whatever split) reads the partition uses it, so a later task fences a
    zombie that read the same partition, however ``tasks.max`` changed in between."""
    digest = hashlib.sha256(journal_key(connector, partition)).hexdigest()[:16]
    return f"airconnect-{connector}-{digest}"


def journal_key(connector: str, partition: Mapping[str, Any]) -> bytes:
    """Kafka Connect's offset key: ``["<connector>",{partition}]``."""
    return json.dumps([connector, dict(partition)], separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def read_journal(conn: Mapping[str, Any], connector: str,
                 timeout: float = DEFAULT_TIMEOUT) -> dict[bytes, tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """The newest committed journal entry per partition key of ``connector``: key -> (offset, previous)."""
    return {key: (chain[-1][0], chain[-1][1]) for key, chain in journal_chains(conn, connector, timeout).items()}


def journal_chains(conn: Mapping[str, Any], connector: str, timeout: float = DEFAULT_TIMEOUT,
                   ) -> dict[bytes, list[tuple[dict[str, Any] | None, dict[str, Any] | None]]]:
    """Per partition key of ``connector``: its committed journal entries ``(offset, previous)`` in
    commit order since its last tombstone (a tombstone alone: ``[(None, None)]``). The topic is
    compacted, so older entries may be gone; the newest is always there."""
    prefix = json.dumps([connector], separators=(",", ":"), ensure_ascii=False)[:-1].encode() + b","
    found: dict[bytes, list[tuple[dict[str, Any] | None, dict[str, Any] | None]]] = {}
    for msg in read_to_end(conn, {OFFSETS_TOPIC: None}, group_id=None, timeout=timeout):
        key = msg.key()
        if not key or not key.startswith(prefix):
            continue
        value = json.loads(msg.value()) if msg.value() is not None else None
        previous = None
        for name, raw in msg.headers() or ():
            if name == PREVIOUS_HEADER and raw is not None:
                previous = json.loads(raw)
        if value is None or key not in found or found[key][-1][0] is None:
            found[key] = [(value, previous)]
        else:
            found[key].append((value, previous))
    return found


class SourceWriter:
    """Produces a source's batches transactionally, each with its offset in the journal.

    ``transactional.id`` is ``airconnect-<connector>`` (or ``transactional_id``: a source split
    into tasks has one per source partition, see :func:`transactional_id`): starting a new writer
    fences any older one with the same id (a zombie from a run, or a task on a lost worker, that
    was thought dead) and aborts its open transaction, so records of a batch whose offset was
    never committed are never read by read_committed consumers.

    Keyed records go to the partition Kafka's Java clients choose (murmur2 of the key), so a
    topic with several partitions holds each key where Kafka Connect would put it.
    """

    def __init__(self, conn: Mapping[str, Any], connector: str, *, timeout: float = DEFAULT_TIMEOUT,
                 extra: Mapping[str, Any] | None = None, transactional_id: str | None = None):
        self.conn = dict(conn)
        self.connector = connector
        self.timeout = timeout
        self.transactional_id = transactional_id or f"airconnect-{connector}"
        cfg = client_config(conn)
        cfg.update({k[len(PRODUCER_PREFIX):]: v for k, v in conn.items() if k.startswith(PRODUCER_PREFIX)})
        cfg.update({
            "transactional.id": self.transactional_id,
            "partitioner": "murmur2_random",  # the Java producer's partitioner (null keys: any partition)
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 50000,
            # What waits in librdkafka for the broker: enough to keep the connection busy, and a
            # bound on memory now that a batch streams (records are sent as they are read).
            "queue.buffering.max.kbytes": 16384,
            "message.max.bytes": 16 * 1024 * 1024,
            "transaction.timeout.ms": 120000,
            # No delivery reports: a commit fails if any record did, and its error is the
            # transaction's first (a record too large for the topic: MSG_SIZE_TOO_LARGE). Without
            # a callback, produce costs 0.78 µs of the source's thread per record instead of 1.15.
            "delivery.report.only.error": True,
        })
        cfg.update(extra or {})
        self._in_txn = False
        self.producer = Producer(cfg)
        try:
            # A metadata round trip first: init_transactions looks for the transaction coordinator
            # at once, and when no connection is up yet (librdkafka has just swapped the bootstrap
            # connection for the broker it learned), it tries again only 500 ms later. Measured
            # here: 4 slow starts in 260 without this line, none in 260 with it (7 ms more each).
            self.producer.list_topics(timeout=timeout)
            self.producer.init_transactions(timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"connector '{connector}': could not start a Kafka transaction at {_describe(conn)} within "
                f"{timeout:.0f} s ({exc.args[0].str() if exc.args else exc}); is the broker running?"
            ) from None

    def begin(self) -> None:
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise kafka_error(exc, self.conn, f"connector '{self.connector}': beginning a transaction") from None
        self._in_txn = True

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None,
                headers: Sequence[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise kafka_error(exc, self.conn, f"connector '{self.connector}': producing to {topic}") from None

    def produce_many(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None) -> None:
        """``produce`` for each value (and key): one call into librdkafka per record and nothing
        else in the loop; a full local queue waits for deliveries to drain, then goes on."""
        produce = self.producer.produce
        try:
            if keys is None:
                for value in values:
                    try:
                        produce(topic, value)
                    except BufferError:
                        self._produce_when_room(topic, value, None)
            else:
                for value, key in zip(values, keys):
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        self._produce_when_room(topic, value, key)
        except KafkaException as exc:
            raise kafka_error(exc, self.conn, f"connector '{self.connector}': producing to {topic}") from None

    def _produce_when_room(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        while True:
            self.producer.poll(0.05)  # local queue full: let deliveries drain
            try:
                self.producer.produce(topic, value, key)
                return
            except BufferError:
                continue

    def commit(self, offsets: Mapping[bytes, tuple[Mapping[str, Any], Mapping[str, Any] | None]]) -> None:
        """Write each ``journal key -> (offset, previous offset)`` and commit the transaction."""
        failpoint("kafka.produced")
        for key, (offset, previous) in offsets.items():
            self.produce(
                OFFSETS_TOPIC, json.dumps(offset, sort_keys=True, separators=(",", ":")).encode(), key,
                headers=[(PREVIOUS_HEADER, json.dumps(previous, sort_keys=True, separators=(",", ":")).encode())],
            )
        failpoint("kafka.before_commit")
        try:
            self.producer.commit_transaction(self.timeout)
        except KafkaException as exc:
            self.abort()
            first = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if first is not None and first.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise DataError(f"connector '{self.connector}': a record is larger than the broker accepts ({first.str()})") from None
            raise kafka_error(exc, self.conn, f"connector '{self.connector}': committing a batch (nothing of it was delivered)") from None
        self._in_txn = False
        failpoint("kafka.after_commit")

    def abort(self) -> None:
        if not self._in_txn:
            return
        self._in_txn = False
        try:
            self.producer.abort_transaction(self.timeout)
        except KafkaException as exc:  # the next writer's init_transactions aborts it anyway
            log.warning("connector '%s': aborting the transaction failed: %s", self.connector, exc)

    def close(self) -> None:
        self.abort()
        self.producer.flush(5)

    def recover(self, key: bytes, stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The offset to resume from, given the Airflow Variable's ``stored`` offset.

        If the journal's newest committed entry for ``key`` was written by a batch that started
        at ``stored``, that batch reached Kafka but the run died before the Variable was set:
        resume after it. Otherwise the Variable is right (this also honours a Variable that a
        person edited on purpose).
        """
        chain = journal_chains(self.conn, self.connector, self.timeout).get(key)
        if not chain:
            return dict(stored) if stored is not None else None
        offset, previous = chain[-1]
        if offset is not None and offset != stored and _same(previous, stored):
            return dict(offset)
        # The Variable further behind, at an offset the journal committed earlier in this chain: the
        # tasks of a split share the Variable, and a save of one can overwrite another's newest
        # entry (each re-reads and merges, but not atomically); if that task then died after its
        # next commit, the Variable is two or more batches behind what Kafka holds. An offset
        # changed on purpose (PATCH .../offsets, a reset) starts a new chain with a tombstone.
        if offset is not None and stored is not None and offset != stored and any(
                _same(o, stored) or _same(p, stored) for o, p in chain[:-1]):
            return dict(offset)
        return dict(stored) if stored is not None else None


def _same(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return (a or None) == (b or None)


@dataclass
class PartitionProgress:
    """How far a bounded read got in one partition."""

    topic: str
    partition: int
    start: int
    end: int  # the high watermark at the run's start
    next_offset: int  # where the next run starts


def read_to_end(
    conn: Mapping[str, Any],
    topics: Mapping[str, Mapping[int, int] | None],
    *,
    group_id: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    batch_size: int = 10000,
    progress: dict[tuple[str, int], PartitionProgress] | None = None,
    on_batch_end: Callable[[], None] | None = None,
    only: Collection[tuple[str, int]] | None = None,
) -> Iterator[Message]:
    """Yield the committed records of ``topics`` from the given start offsets up to the end of
    each partition as of the call (a bounded micro-batch).

    ``topics`` maps a topic to ``{partition: start offset}``; a missing partition (or ``None``
    for the whole topic) starts at the group's committed offset, else at the beginning.
    ``progress`` (if given) is filled with each partition's start, end and next offset.
    ``only`` (if given): just these ``(topic, partition)`` (a sink task's share).
    """
    cfg = client_config(conn)
    cfg.update({
        "group.id": group_id or "airconnect-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    })
    # A bounded read learns a partition's end from a fetch that finds nothing more; the broker
    # holds such a fetch for fetch.wait.max.ms (librdkafka: 500 ms), which at the end of every
    # partition (always, for a short journal) is pure latency. Fetches with data return at once
    # either way. (A connection's extra may still set it.)
    cfg.setdefault("fetch.wait.max.ms", 10)
    # Once queued.min.messages (100,000) records wait in its queue, librdkafka stops fetching and
    # looks again after fetch.queue.backoff.ms, 1000 ms by default: a reader that keeps up stalled
    # a second after every 100,000 records (150,000 records/s at most, whatever it did with them).
    # 10 ms keeps the same bound on memory without the stall.
    cfg.setdefault("fetch.queue.backoff.ms", 10)
    # librdkafka pre-fetches up to 64 MB (and 100,000 records) per partition by default: a sink task
    # reading four partitions held several hundred MB of records it had not parsed yet. 8 MB a
    # partition keeps a reader that keeps up just as fast.
    cfg.setdefault("queued.max.messages.kbytes", 8192)
    consumer = Consumer(cfg)
    try:
        try:
            # A few topics: their own metadata (a list of every topic takes 40-80 ms on a cluster
            # of 3,000; a consumer's request never creates a topic, allow.auto.create.topics is off).
            if len(topics) <= 8:
                metas = {t: consumer.list_topics(topic=t, timeout=timeout).topics.get(t) for t in topics}
            else:
                metas = dict(consumer.list_topics(timeout=timeout).topics)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"Kafka at {_describe(conn)} did not answer within {timeout:.0f} s "
                f"({exc.args[0].str() if exc.args else exc}); is the broker running?"
            ) from None
        wanted: list[TopicPartition] = []
        for topic in topics:
            meta = metas.get(topic)
            if meta is None or meta.error is not None:
                log.info("topic %s does not exist (yet): nothing to read", topic)
                continue
            for p in sorted(meta.partitions):
                if only is None or (topic, p) in only:
                    wanted.append(TopicPartition(topic, p))
        if group_id and wanted:
            found = with_retries(lambda: consumer.committed(wanted, timeout=timeout), conn,
                                 f"reading the committed offsets of group {group_id}", timeout)
            committed = {(tp.topic, tp.partition): tp.offset for tp in found}
        else:
            committed = {}
        assign: list[TopicPartition] = []
        remaining: set[tuple[str, int]] = set()
        prog = progress if progress is not None else {}
        for tp in wanted:
            # Right after a leader election (a broker restarted) the end offset is briefly unknown.
            low, high = with_retries(functools.partial(consumer.get_watermark_offsets, tp, timeout=timeout), conn,
                                     f"reading the end offsets of {tp.topic}[{tp.partition}]", timeout)
            starts = topics.get(tp.topic) or {}
            start = starts.get(tp.partition)
            if start is None:
                c = committed.get((tp.topic, tp.partition), -1001)
                start = c if c is not None and c >= 0 else low
            start = max(start, low)  # records below the low watermark were deleted by retention
            prog[(tp.topic, tp.partition)] = PartitionProgress(tp.topic, tp.partition, start, high, start)
            if start < high:
                assign.append(TopicPartition(tp.topic, tp.partition, start))
                remaining.add((tp.topic, tp.partition))
        if not assign:
            return
        consumer.assign(assign)
        idle_since = time.monotonic()
        while remaining:
            # consume() waits out its whole timeout unless batch_size records are queued; librdkafka
            # fetches in the background, so a short wait still returns full batches under load and
            # does not add 100 ms per call to a small read (the journal, a few new records).
            msgs = consumer.consume(batch_size, timeout=0.01)
            if not msgs:
                if time.monotonic() - idle_since > timeout:
                    raise KafkaUnavailableError(
                        f"no records arrived from Kafka at {_describe(conn)} for {timeout:.0f} s while reading "
                        + ", ".join(f"{t}[{p}]" for t, p in sorted(remaining))
                    )
                continue
            idle_since = time.monotonic()
            for msg in msgs:
                tp_key = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if tp_key in remaining:
                            remaining.discard(tp_key)
                            pp = prog[tp_key]
                            pp.next_offset = max(pp.next_offset, msg.offset())
                        continue
                    raise kafka_error(KafkaException(err), conn, f"reading {msg.topic()}[{msg.partition()}]")
                if tp_key not in remaining:
                    continue
                pp = prog[tp_key]
                if msg.offset() >= pp.end:
                    remaining.discard(tp_key)
                    continue
                pp.next_offset = msg.offset() + 1
                yield msg
                if msg.offset() >= pp.end - 1:
                    remaining.discard(tp_key)
            if on_batch_end is not None:
                on_batch_end()
    finally:
        consumer.close()


class GroupCommitter:
    """Commits a consumer group's offsets through one consumer, kept for a run's checkpoints
    (a new consumer per commit first has to find the group's coordinator)."""

    def __init__(self, conn: Mapping[str, Any], group_id: str, timeout: float = DEFAULT_TIMEOUT):
        self.conn = conn
        self.group_id = group_id
        self.timeout = timeout
        self._consumer: Consumer | None = None

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``offsets`` for the group (so Kafka's tools show the sink's lag)."""
        if not offsets:
            return
        if self._consumer is None:
            cfg = client_config(self.conn)
            cfg.update({"group.id": self.group_id, "enable.auto.commit": False})
            self._consumer = Consumer(cfg)
        consumer = self._consumer
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        with_retries(lambda: consumer.commit(offsets=tps, asynchronous=False), self.conn,
                     f"committing the offsets of group {self.group_id}", self.timeout)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def commit_group_offsets(conn: Mapping[str, Any], group_id: str, offsets: Mapping[tuple[str, int], int],
                         timeout: float = DEFAULT_TIMEOUT) -> None:
    """Commit ``offsets`` for ``group_id`` (so Kafka's tools show the sink's lag)."""
    committer = GroupCommitter(conn, group_id, timeout)
    try:
        committer.commit(offsets)
    finally:
        committer.close()


def committed_group_offsets(conn: Mapping[str, Any], group_id: str, topic: str, timeout: float = DEFAULT_TIMEOUT) -> dict[int, int]:
    cfg = client_config(conn)
    cfg.update({"group.id": group_id, "enable.auto.commit": False})
    consumer = Consumer(cfg)
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        tps = [TopicPartition(topic, p) for p in meta.partitions]
        found = with_retries(lambda: consumer.committed(tps, timeout=timeout), conn,
                             f"reading the committed offsets of group {group_id}", timeout)
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
    except KafkaException as exc:
        raise kafka_error(exc, conn, f"reading offsets of group {group_id}") from None
    finally:
        consumer.close()


__all__ = [
    "OFFSETS_TOPIC", "OFFSET_BEGINNING", "Admin", "GroupCommitter", "PartitionProgress", "SourceWriter",
    "commit_group_offsets", "committed_group_offsets", "journal_key", "journal_chains", "transactional_id", "kafka_error",
    "read_journal", "read_to_end",
]
