"""Dead-letter topics: Kafka Connect's ``errors.tolerance=all``, for sources and sinks, exactly once.

With ``errors.tolerance=none`` (the default) a malformed record stops the run at that record
and the offset stays just before it. With ``all`` the record goes to the dead-letter topic
(``errors.deadletterqueue.topic.name``, default ``<topic>.dlq``) and the run goes on. The
value is the original bytes; the headers are Kafka Connect's error context
(``__connect.errors.topic``, ``.partition``, ``.offset``, ``.connector.name``, ``.stage``,
``.exception.class.name``, ``.exception.message``) and, for a file source,
``__connect.errors.file`` and ``__connect.errors.position`` (the line's byte position).

Exactly once: a source's dead letters are produced in the Kafka transaction of the batch
whose offset moves past them. A sink's are flushed before the checkpoint that moves its
offset past them; after a crash between the two, the next run reads what the connector
already dead-lettered (the newest original offset per topic-partition, from the headers) and
does not send those again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaException, Message, Producer

from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import ConfigError, KafkaUnavailableError, PermanentError
from airconnect.core.kafka_client import Admin, client_config, kafka_error, read_to_end

log = logging.getLogger(__name__)

PREFIX: Final = "__connect.errors."


def dead_letter_topic(config: ConnectorConfig, topic: str) -> str:
    return config["errors.deadletterqueue.topic.name"] or f"{topic}.dlq"


def tolerates(config: ConnectorConfig) -> bool:
    return config["errors.tolerance"] == "all"


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the dead-letter topic
    value: bytes | None
    headers: list[tuple[str, bytes]]


def context_headers(config: ConnectorConfig, error: BaseException, stage: str, **where: Any) -> list[tuple[str, bytes]]:
    """Connect's error-context headers; ``where``: topic/partition/offset of a record, or file/position of a line."""
    if not config["errors.deadletterqueue.context.headers.enable"]:
        return []
    fields = {"connector.name": config.name, "task.id": 0, "stage": stage,
              "exception.class.name": type(error).__name__, "exception.message": str(error), **where}
    return [(PREFIX + k, str(v).encode("utf-8")) for k, v in fields.items() if v is not None]


def report(config: ConnectorConfig, error: BaseException, what: str, dlq: str, record: bytes | None = None) -> None:
    """Log a tolerated error (``errors.log.enable``), with the record itself if
    ``errors.log.include.messages`` says so (off by default: records may hold personal data)."""
    if config["errors.log.enable"]:
        shown = f" (the record: {record!r})" if config["errors.log.include.messages"] else ""
        log.warning("connector '%s': %s: %s; sent to the dead-letter topic %s%s", config.name, what, error, dlq, shown)


def ensure_dead_letter_topic(config: ConnectorConfig, admin: Admin, topic: str) -> None:
    """Create a dead-letter topic with ``errors.deadletterqueue.topic.replication.factor`` (-1: the
    broker's default); a factor the cluster cannot give fails naming that key."""
    factor = config["errors.deadletterqueue.topic.replication.factor"]
    try:
        admin.ensure_topic(topic, replication_factor=factor)
    except PermanentError as exc:
        raise ConfigError(f"the dead-letter topic {topic} cannot have replication factor {factor}: {exc}",
                          connector=config.name, key="errors.deadletterqueue.topic.replication.factor") from None


class SinkDeadLetters:
    """A sink's dead-letter producer (idempotent), which knows what earlier runs already sent."""

    def __init__(self, config: ConnectorConfig, kafka: Mapping[str, Any], topics: list[str]):
        self.config = config
        self.kafka = dict(kafka)
        self.topics = {t: dead_letter_topic(config, t) for t in topics}
        self.sent = 0
        self._producer: Producer | None = None
        self._errors: list[Any] = []
        self._already: dict[tuple[str, int], int] = {}
        admin = Admin(kafka)
        for dlq in set(self.topics.values()):
            ensure_dead_letter_topic(config, admin, dlq)
        name = config.name.encode("utf-8")
        for msg in read_to_end(kafka, {dlq: None for dlq in set(self.topics.values())}, group_id=None):
            h = dict(msg.headers() or ())
            if h.get(PREFIX + "connector.name") != name or PREFIX + "offset" not in h:
                continue
            key = (h[PREFIX + "topic"].decode(), int(h[PREFIX + "partition"]))
            self._already[key] = max(self._already.get(key, -1), int(h[PREFIX + "offset"]))

    def send(self, msg: Message, error: BaseException, stage: str) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        dlq = self.topics[topic]
        report(self.config, error, f"record {topic}[{partition}]@{offset}", dlq, msg.value())
        if offset <= self._already.get((topic, partition), -1):
            return  # a run that died before its checkpoint sent it already
        if self._producer is None:
            self._producer = Producer({**client_config(self.kafka), "enable.idempotence": True, "acks": "all",
                                       "max.in.flight.requests.per.connection": 1})
        headers = context_headers(self.config, error, stage, topic=topic, partition=partition, offset=offset)
        try:
            self._producer.produce(dlq, msg.value(), msg.key(), headers=headers, on_delivery=self._delivered)
        except KafkaException as exc:
            raise kafka_error(exc, self.kafka, f"connector '{self.config.name}': sending to {dlq}") from None
        self.sent += 1

    def _delivered(self, err: Any, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err)

    def flush(self) -> None:
        """Before a checkpoint: every dead letter sent so far is acknowledged, or this raises."""
        if self._producer is None:
            return
        if self._producer.flush(30) or self._errors:
            what = self._errors[0].str() if self._errors else "not acknowledged within 30 s"
            raise KafkaUnavailableError(f"connector '{self.config.name}': dead letters were not delivered ({what}); "
                                        "the offsets stay before them")
