"""Where the runtime applies a connector's transforms, the way Kafka Connect's worker does:

* a source's records after the connector made them and before they are produced
  (poll -> transforms -> converter -> produce): :class:`SourceTransforms`, used by
  :meth:`airconnect.core.delivery.SourceDelivery.send`;
* a sink's records after they were read and converted and before the connector writes them
  (consume -> converter -> transforms -> put): :class:`SinkTransforms`, used by
  :meth:`airconnect.core.delivery.SinkDelivery.records`.

airconnect's connectors hand over converted bytes, so the records are converted back into
Connect data (:class:`~airconnect.transforms.chain.RecordCodec`, the connector's converters),
transformed, and converted again: the bytes are those Kafka Connect would write.

A record a transform drops (Filter) is not produced or written, and its offset moves on as if it
had been. A record a transform fails on follows ``errors.tolerance``: ``all`` sends the original
record to the dead-letter topic (stage ``TRANSFORMATION``); ``none`` fails the run with a
:class:`DataError` naming the connector and the transform, and no offset moves past the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from airconnect.core.config import ConnectorConfig
from airconnect.core.data import ConnectRecord
from airconnect.core.deadletters import (
    DeadLetter,
    context_headers,
    dead_letter_topic,
    report,
    tolerates,
)
from airconnect.core.errors import DataError
from airconnect.transforms.chain import Chain, RecordCodec, TransformError


def _cause(exc: BaseException) -> BaseException:
    return exc.cause if isinstance(exc, TransformError) else exc


class SourceTransforms:
    """A source connector's chain, between its records and the producer."""

    def __init__(self, config: ConnectorConfig):
        assert config.transforms is not None
        self.config = config
        self.chain: Chain = config.transforms
        self.codec = RecordCodec.for_connector(config)
        self.tolerant = tolerates(config)
        self.dropped = 0

    def records(self, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None] | None,
                on_dead: Callable[[str, DeadLetter], None]) -> Iterator[tuple[str, bytes | None, bytes | None,
                                                                               list[tuple[str, bytes | None]]]]:
        """``(topic, key, value, headers)`` to produce for each record that is not dropped; a failed
        record is a dead letter (``on_dead(original topic, letter)``) or a :class:`DataError`."""
        for i, value in enumerate(values):
            key = keys[i] if keys is not None else None
            try:
                out = self.chain.apply(self.codec.decode(topic, key, value))
                if out is None:
                    self.dropped += 1
                    continue
                new_key, new_value, headers = self.codec.encode(out)
            except DataError as exc:
                if not self.tolerant:
                    raise DataError(f"connector '{self.config.name}': a record for {topic}: {exc}. None of this "
                                    "batch was delivered; the stored offset stays before it.") from None
                dlq = dead_letter_topic(self.config, topic)
                report(self.config, exc, f"a record for {topic}", dlq, value)
                on_dead(topic, DeadLetter(dlq, value, context_headers(self.config, _cause(exc), "TRANSFORMATION",
                                                                      topic=topic, transform=_alias(exc))))
                continue
            yield out.topic, new_key, new_value, headers


def _alias(exc: BaseException) -> str | None:
    return exc.alias if isinstance(exc, TransformError) else None


class TransformedMessage:
    """A sink's record after the transforms, shaped like a ``confluent_kafka.Message``: ``key()``,
    ``value()`` and ``headers()`` are the transformed record's bytes (the connector's converters);
    ``topic()``, ``partition()`` and ``offset()`` stay those it was read from (offsets are kept
    per Kafka partition read, as Connect keeps the original topic-partition); :attr:`record` is the
    transformed Connect record (its ``topic`` the routed one)."""

    __slots__ = ("_msg", "record", "_key", "_value", "_headers")

    def __init__(self, msg: Any, record: ConnectRecord, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes | None]]):
        self._msg = msg
        self.record = record
        self._key = key
        self._value = value
        self._headers = headers

    def topic(self) -> str:
        return str(self._msg.topic())

    def partition(self) -> int:
        return int(self._msg.partition())

    def offset(self) -> int:
        return int(self._msg.offset())

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers or None

    def timestamp(self) -> tuple[int, int]:
        if self.record.timestamp is None:
            return 0, -1
        kind, _ = self._msg.timestamp()
        return (kind or 1), self.record.timestamp

    def error(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._value or b"")


class SinkTransforms:
    """A sink connector's chain, between the consumer and the connector."""

    def __init__(self, config: ConnectorConfig):
        assert config.transforms is not None
        self.config = config
        self.chain: Chain = config.transforms
        self.codec = RecordCodec.for_connector(config)
        self.dropped = 0
        self.dead_letters = 0
        #: Per partition read, the offset of the record the run stopped at (errors.tolerance=none).
        self.failed: dict[tuple[str, int], int] = {}
        self.failure: DataError | None = None

    def records(self, messages: Iterable[Any], positions: dict[tuple[str, int], Any],
                dead: Any) -> Iterator[Any]:
        """The transformed records of ``messages``; see the module's documentation. ``positions``
        (the bounded read's) are held at a failed record; ``dead`` is the sink's dead-letter sender."""
        failed = self.failed
        for msg in messages:
            tp = (msg.topic(), msg.partition())
            if failed:
                for fp, offset in failed.items():
                    positions[fp].next_offset = offset
                if tp in failed:
                    continue  # this partition stops at its failed record; the others go on
            try:
                kind, ts = msg.timestamp()
                record = self.codec.decode(tp[0], msg.key(), msg.value(), msg.headers(), partition=tp[1],
                                           timestamp=ts if kind else None, offset=msg.offset(), origin=msg)
                out = self.chain.apply(record)
                if out is None:
                    self.dropped += 1
                    continue
                key, value, headers = self.codec.encode(out)
            except DataError as exc:
                if dead is not None:
                    dead.send(msg, _cause(exc) if isinstance(exc, TransformError) else exc, "TRANSFORMATION")
                    self.dead_letters += 1
                    continue
                failed[tp] = msg.offset()
                positions[tp].next_offset = msg.offset()
                if self.failure is None:
                    self.failure = DataError(
                        f"connector '{self.config.name}': record {tp[0]}[{tp[1]}]@{msg.offset()}: {exc}. Records "
                        f"before it were written; the offset stays at {msg.offset()}.")
                continue
            yield TransformedMessage(msg, out, key, value, headers)
        for fp, offset in failed.items():
            positions[fp].next_offset = offset

    def raise_failure(self) -> None:
        """After the connector's last checkpoint: the record a transform failed on, as the run's error."""
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure
