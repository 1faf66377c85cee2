"""Managing connectors the way Kafka Connect's REST API does (KIP-875 offsets): show and reset
offsets, delete a connector's topics. Airflow-free; the CLI and the REST plugin call it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from airconnect.core.config import ConnectorConfig
from airconnect.core.kafka_client import OFFSETS_TOPIC, Admin, client_config, journal_key, kafka_error, read_journal
from airconnect.core.offsets import KeyValueStore, Offsets

log = logging.getLogger(__name__)


def sink_group(config: ConnectorConfig) -> str:
    return f"connect-{config.name}"


def topics_of(config: ConnectorConfig) -> list[str]:
    if config.kind == "sink":
        return list(config.values.get("topics") or [])
    topic = config.values.get("topic")
    return [topic] if topic else []


def get_offsets(config: ConnectorConfig, store: KeyValueStore) -> dict[str, Any]:
    """``GET /connectors/<name>/offsets``: ``{"offsets": [{"partition": ..., "offset": ...}]}``."""
    return Offsets(store, config.name).document()


def reset_offsets(config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any]) -> dict[str, Any]:
    """``DELETE /connectors/<name>/offsets``: the next run starts from the beginning.

    Sources: the Variable is removed and a tombstone is journalled for each partition, so
    crash recovery cannot bring the old position back. Sinks: the Variable is removed and
    the consumer group ``connect-<name>`` is deleted.
    """
    offsets = Offsets(store, config.name)
    partitions = [p for p, _ in offsets.items()]
    if config.kind == "source":
        if Admin(kafka).topics().get(OFFSETS_TOPIC):
            keys = {journal_key(config.name, p) for p in partitions} | set(read_journal(kafka, config.name))
            producer = Producer({**client_config(kafka), "enable.idempotence": True, "acks": "all"})
            for key in keys:
                producer.produce(OFFSETS_TOPIC, None, key)
            if producer.flush(30):
                raise kafka_error(KafkaException(), kafka, f"connector '{config.name}': journalling the reset")
    else:
        admin = AdminClient(client_config(kafka))
        try:
            admin.delete_consumer_groups([sink_group(config)], request_timeout=15)[sink_group(config)].result()
        except KafkaException as exc:
            if "GROUP_ID_NOT_FOUND" not in str(exc) and "not found" not in str(exc).lower():
                raise kafka_error(exc, kafka, f"connector '{config.name}': deleting group {sink_group(config)}") from None
    store.delete(offsets.key)
    log.info("connector '%s': offsets reset (%d partition(s))", config.name, len(partitions))
    return {"message": f"The offsets for connector '{config.name}' have been reset successfully"}


def delete_topics(topics: list[str], kafka: Mapping[str, Any]) -> list[str]:
    """Delete ``topics`` that exist; return the deleted names."""
    admin = Admin(kafka)
    existing = [t for t in topics if t in admin.topics()]
    if not existing:
        return []
    for topic, fut in admin.client.delete_topics(existing, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise kafka_error(exc, kafka, f"deleting topic {topic}") from None
    return existing
