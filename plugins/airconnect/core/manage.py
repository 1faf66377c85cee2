"""Managing connectors the way Kafka Connect's REST API does (KIP-875 offsets): show and reset
offsets, delete a connector's topics. Airflow-free; the CLI and the REST plugin call it."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from airconnect.core.config import ConnectorConfig, KeptOffsets
from airconnect.core.errors import OffsetError, RedeliveryRefused
from airconnect.core.kafka_client import (
    OFFSETS_TOPIC,
    Admin,
    client_config,
    commit_group_offsets,
    journal_key,
    kafka_error,
    read_journal,
    sink_group_id,
    with_retries,
)
from airconnect.core.offsets import KeyValueStore, Offsets

log = logging.getLogger(__name__)


def sink_group(config: ConnectorConfig) -> str:
    return sink_group_id(config.name)


def connector_topics(config: ConnectorConfig, kafka: Mapping[str, Any] | None) -> list[str]:
    """The topics ``config`` reads or writes: its definition's, or for a pattern's (a sink's
    ``topics.regex``) the cluster's topics that match it now (none without ``kafka``)."""
    if config.cls.topics_in is None or config.topics or kafka is None:
        return config.topics
    return config.cls.topics_in(config, list(Admin(kafka).topics()))


def _kept(config: ConnectorConfig, resources: Mapping[str, Any] | None, doing: str) -> KeptOffsets | None:
    """The offsets ``config``'s class keeps outside the Variable (a JDBC sink's, in its database), or
    ``None`` if it keeps none. Changing them needs the class's resources: without, refused."""
    if config.cls.kept_offsets is None:
        return None
    if resources is None:
        raise OffsetError(f"connector '{config.name}': its offsets are kept by {config.cls.title or config.cls.name} "
                          f"outside the Variable too; {doing} them needs its resources "
                          f"({', '.join(config.cls.resources)}), which were not given")
    return config.cls.kept_offsets(config, **resources)


def get_offsets(config: ConnectorConfig, store: KeyValueStore,
                resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``GET /connectors/<name>/offsets``: ``{"offsets": [{"partition": ..., "offset": ...}]}``.

    A class that keeps its offsets outside the Variable (a JDBC sink, in its database, where they
    win at its start) shows those, given its ``resources``; the Variable's otherwise."""
    if config.cls.kept_offsets is not None and resources is not None:
        kept = _kept(config, resources, "reading")
        assert kept is not None
        return {"offsets": [{"partition": p, "offset": o} for p, o in kept.read()]}
    return Offsets(store, config.name).document()


def redelivery_targets(config: ConnectorConfig, kafka: Mapping[str, Any], timeout: float = 15.0,
                       resources: Mapping[str, Any] | None = None) -> list[str]:
    """What already holds records a reset of ``config`` would deliver again: a source's topics
    that are not empty, a file sink's file that is not empty, a JDBC sink's tables that are not
    empty in insert mode (given its ``resources``). (An S3 sink writes the same objects again,
    under the same keys, and an upserting JDBC sink the same rows: nothing doubles.)"""
    held = config.cls.holds(config) if config.cls.holds is not None else []
    kept = _kept(config, resources, "checking") if config.cls.kept_offsets is not None and resources else None
    if kept is not None:
        held += kept.holds()
    if config.kind == "sink":
        return held
    cfg = client_config(kafka)
    cfg.update({"group.id": f"airconnect-reset-check-{config.name}", "enable.auto.commit": False})
    consumer = Consumer(cfg)
    try:
        md = with_retries(lambda: consumer.list_topics(timeout=timeout), kafka, f"connector '{config.name}': listing topics")
        for topic in connector_topics(config, kafka):
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            offsets = 0  # records and transaction markers alike: only "empty or not" matters here
            for p in meta.partitions:
                low, high = with_retries(functools.partial(consumer.get_watermark_offsets, TopicPartition(topic, p),
                                                           timeout=timeout),
                                         kafka, f"reading the offsets of {topic}[{p}]")
                offsets += high - low
            if offsets:
                held.append(f"topic {topic} (not empty: {offsets} offsets)")
    finally:
        consumer.close()
    return held


def reset_offsets(config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any], *,
                  redeliver: bool = False, resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``DELETE /connectors/<name>/offsets``: the next run starts from the beginning.

    Sources: the Variable is removed and a tombstone is journalled for each partition, so
    crash recovery cannot bring the old position back. Sinks: the Variable is removed and
    the consumer group ``connect-<name>`` is deleted.

    A reset whose next run would deliver again into a topic (or file) that still holds those
    records is refused with :class:`RedeliveryRefused` unless ``redeliver`` says it is meant
    (or the topics are deleted with it: the CLI's ``--delete-topics``).

    A class that keeps its offsets outside the Variable too (a JDBC sink: in its target database,
    committed with its rows, authoritative at its start) has those removed with its ``resources``,
    *last*: that is the reset's commit point. A reset that dies before it leaves the old offsets
    whole in the database, and the next run resumes from them (and writes them back into the
    Variable): the reset did not happen, and says so with its error. Had the database gone first,
    a death before the Variable would let the next run find no database offsets and resume from
    the Variable's old ones: neither reset nor consistent.
    """
    kept = _kept(config, resources, "resetting")  # refused before anything changed
    if not redeliver:
        held = redelivery_targets(config, kafka, resources=resources)
        if held:
            raise RedeliveryRefused(
                f"connector '{config.name}': a reset would deliver everything again into {', '.join(held)}, "
                "which already hold(s) it: every record would be there twice. Delete the topics too "
                "(airconnect reset --delete-topics; for a file sink, remove or move its file; for a JDBC sink, "
                "empty its tables), or say that "
                "redelivery is meant (airconnect reset --redeliver; REST: DELETE .../offsets?redeliver=true)")
    group = sink_group(config) if config.kind == "sink" else None
    if kept is not None:  # the Variable and the group under the connector's lock, then its database
        kept.reset(lambda: reset_named_offsets(config.name, store, kafka, group=group))
    else:
        reset_named_offsets(config.name, store, kafka, group=group)
    return {"message": f"The offsets for connector '{config.name}' have been reset successfully"}


def reset_named_offsets(name: str, store: KeyValueStore, kafka: Mapping[str, Any], *, group: str | None = None) -> int:
    """Reset the offsets kept under ``name``: those of a source-like writer (journalled in
    ``airconnect-offsets``; the forecast publication, say) or, with ``group``, of a sink-like
    reader (its consumer group is deleted; the inventory view, say). Returns the partitions reset."""
    offsets = Offsets(store, name)
    partitions = [p for p, _ in offsets.items()]
    if group is None:  # (a journal that does not exist yet reads as empty and gets no tombstone)
        keys = {journal_key(name, p) for p in partitions} | set(read_journal(kafka, name))
        journal_tombstones(name, kafka, sorted(keys))
    else:
        admin = AdminClient(client_config(kafka))

        def delete_group() -> None:
            try:
                admin.delete_consumer_groups([group], request_timeout=15)[group].result()
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    return  # nothing to delete
                raise

        # A coordinator that is not ready (a broker that just started) is transient: retried.
        with_retries(delete_group, kafka, f"connector '{name}': deleting group {group}")
    store.delete(offsets.key)
    log.info("connector '%s': offsets reset (%d partition(s))", name, len(partitions))
    return len(partitions)


def journal_tombstones(name: str, kafka: Mapping[str, Any], keys: list[bytes]) -> None:
    """A tombstone in ``airconnect-offsets`` for each journal key (a reset, or an offset altered)."""
    if not keys or not Admin(kafka).partitions(OFFSETS_TOPIC):
        return
    producer = Producer({**client_config(kafka), "enable.idempotence": True, "acks": "all"})
    for key in keys:
        producer.produce(OFFSETS_TOPIC, None, key)
    if producer.flush(30):
        raise kafka_error(KafkaException(), kafka, f"connector '{name}': journalling the change of offsets")


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


def group_offsets(config: ConnectorConfig, kafka: Mapping[str, Any], timeout: float = 15.0) -> list[dict[str, Any]]:
    """A sink's consumer group ``connect-<name>``: its committed offset per partition of its topics."""
    return [{"kafka_topic": r["topic"], "kafka_partition": r["partition"], "kafka_offset": r["group_offset"]}
            for r in _sink_positions(config, None, kafka, timeout) if r["group_offset"] is not None]


def sink_lag(config: ConnectorConfig, store: KeyValueStore | None, kafka: Mapping[str, Any],
             timeout: float = 15.0, resources: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A sink's consumer lag, per topic-partition of its topics.

    Each row: ``topic``, ``partition``, ``committed`` (where the next run starts: the offset in
    the Variable, else the group's commit, else ``None`` = nothing consumed yet), ``end`` (the
    partition's end offset, committed records only) and ``lag`` (``end`` minus ``committed``,
    or minus the partition's start when nothing was consumed). A class that keeps its offsets
    outside the Variable (a JDBC sink's database) counts from those, given its ``resources``.
    """
    if config.kind != "sink":
        raise OffsetError(f"connector '{config.name}' is a source: only sinks have a consumer lag")
    return [{k: r[k] for k in ("topic", "partition", "committed", "end", "lag")}
            for r in _sink_positions(config, store, kafka, timeout, resources)]


def _sink_positions(config: ConnectorConfig, store: KeyValueStore | None, kafka: Mapping[str, Any],
                    timeout: float, resources: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    saved: dict[tuple[str, int], int] = {}
    if store is not None:
        kept = _kept(config, resources, "reading") if resources is not None else None
        for partition, offset in kept.read() if kept is not None else Offsets(store, config.name).items():
            topic, part, value = partition.get("kafka_topic"), partition.get("kafka_partition"), offset.get("kafka_offset")
            if isinstance(topic, str) and isinstance(part, int) and isinstance(value, int):
                saved[(topic, part)] = value
    cfg = client_config(kafka)
    cfg.update({"group.id": sink_group(config), "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer = Consumer(cfg)
    rows: list[dict[str, Any]] = []
    try:
        try:
            md = consumer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise kafka_error(exc, kafka, f"connector '{config.name}': listing topics") from None
        tps = []
        for topic in connector_topics(config, kafka):
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            tps += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        if not tps:
            return []
        found = with_retries(lambda: consumer.committed(tps, timeout=timeout), kafka,
                             f"reading the committed offsets of group {sink_group(config)}", timeout)
        group = {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
        for tp in tps:
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            except KafkaException as exc:
                raise kafka_error(exc, kafka, f"reading the end offsets of {tp.topic}[{tp.partition}]") from None
            key = (tp.topic, tp.partition)
            committed = saved.get(key, group.get(key))
            lag = max(0, high - max(committed if committed is not None else low, low))
            rows.append({"topic": tp.topic, "partition": tp.partition, "committed": committed, "end": high,
                         "lag": lag, "group_offset": group.get(key)})
    finally:
        consumer.close()
    return rows


def _check_offset_entry(config: ConnectorConfig, i: int, partition: Any, offset: Any) -> None:
    def bad(what: str) -> OffsetError:
        return OffsetError(f"connector '{config.name}': offsets[{i}] {what}")

    if not isinstance(partition, dict) or not partition:
        raise bad("needs a non-empty 'partition' object")
    if offset is not None and not isinstance(offset, dict):
        raise bad(f"has an 'offset' that is neither an object nor null: {offset!r}")

    def whole(obj: Mapping[str, Any], key: str, *, required: bool = True, negative: bool = False) -> None:
        if key not in obj:
            if required:
                raise bad(f"needs {key!r}")
            return
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, int) or (v < 0 and not negative):
            raise bad(f"has {key}={v!r}; expected a whole number" + ("" if negative else " >= 0"))

    def only(obj: Mapping[str, Any], allowed: set[str], what: str) -> None:
        extra = sorted(set(obj) - allowed)
        if extra:
            raise bad(f"has unexpected {what} key(s) {extra}; expected {sorted(allowed)}")

    if "kafka_topic" in partition or "kafka_partition" in partition:  # a sink's Kafka partition
        if config.kind != "sink":
            raise bad("is a Kafka partition ('kafka_topic', 'kafka_partition'), but the connector is a source")
        only(partition, {"kafka_topic", "kafka_partition"}, "partition")
        if not isinstance(partition.get("kafka_topic"), str) or not partition["kafka_topic"]:
            raise bad("needs 'kafka_topic' (a topic name)")
        topic = partition["kafka_topic"]
        if config.topics and topic not in config.topics:
            raise bad(f"names topic {topic!r}, which the connector does not read "
                      f"(its topics: {', '.join(config.topics)})")
        if not config.topics and config.cls.topics_in is not None and not config.cls.topics_in(config, [topic]):
            raise bad(f"names topic {topic!r}, which the connector does not read (its pattern: "
                      f"{config['topics.regex']!r})")
        whole(partition, "kafka_partition")
        if offset is not None:
            only(offset, {"kafka_offset"}, "offset")
            whole(offset, "kafka_offset")
    else:  # the connector's own partitions (a file, a table): its spec knows their shape
        if not set(partition) & set(config.cls.offset_partition):
            from airconnect.core.registry import CONNECTORS  # (the registry imports the connectors)

            owner = next((c for c in CONNECTORS if set(partition) & set(c.offset_partition)), None)
            if owner is not None:
                keys = " or ".join(repr(k) for k in owner.offset_partition)
                raise bad(f"is a partition of {owner.title} ({keys}), but the connector is not {owner.title}")
        if config.cls.check_offset is None:
            raise bad(f"has a partition {partition!r} that {config.cls.name} does not use "
                      "(its offsets are per Kafka partition: 'kafka_topic', 'kafka_partition')")
        problem = config.cls.check_offset(config, partition, offset)
        if problem:
            raise bad(problem)


def check_offsets_document(config: ConnectorConfig, doc: Any) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Check a KIP-875 ``PATCH /connectors/<name>/offsets`` body; return its (partition, offset) pairs.

    ``{"offsets": [{"partition": {...}, "offset": {...} | null}, ...]}``; ``null`` removes that
    partition's offset. The partition and offset keys must be the connector's own.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("offsets"), list):
        raise OffsetError(f"connector '{config.name}': expected {{\"offsets\": [{{\"partition\": {{...}}, \"offset\": {{...}}}}]}}")
    extra = sorted(set(doc) - {"offsets"})
    if extra:
        raise OffsetError(f"connector '{config.name}': unexpected top-level key(s) {extra}; expected only 'offsets'")
    if not doc["offsets"]:
        raise OffsetError(f"connector '{config.name}': 'offsets' is empty; give at least one partition")
    pairs = []
    for i, entry in enumerate(doc["offsets"]):
        if not isinstance(entry, dict) or "partition" not in entry or "offset" not in entry:
            raise OffsetError(f"connector '{config.name}': offsets[{i}] needs both 'partition' and 'offset' (null to remove)")
        extra = sorted(set(entry) - {"partition", "offset"})
        if extra:
            raise OffsetError(f"connector '{config.name}': offsets[{i}] has unexpected key(s) {extra}")
        _check_offset_entry(config, i, entry["partition"], entry["offset"])
        pairs.append((entry["partition"], entry["offset"]))
    return pairs


def set_offsets(config: ConnectorConfig, store: KeyValueStore, doc: Any,
                kafka: Mapping[str, Any] | None = None, resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``PATCH /connectors/<name>/offsets`` (KIP-875): merge ``doc`` into the connector's offsets.

    Each listed partition gets the given offset (``null``: its offset is removed); partitions not
    listed keep theirs. Sinks: with ``kafka``, the new Kafka offsets are also committed for the
    consumer group ``connect-<name>``, so Kafka's tools show the same positions. A class that keeps
    its offsets outside the Variable too (a JDBC sink's database) has them altered with its
    ``resources``, last, as :func:`reset_offsets` does and for the same reason.
    """
    pairs = check_offsets_document(config, doc)
    kept = _kept(config, resources, "altering")
    if kept is not None:  # the Variable and the group under the connector's lock, then its database
        kept.alter(pairs, lambda: _set_variable_and_group(config, store, pairs, kafka))
    else:
        _set_variable_and_group(config, store, pairs, kafka)
    log.info("connector '%s': offsets altered (%d partition(s))", config.name, len(pairs))
    return {"message": f"The offsets for connector '{config.name}' have been altered successfully"}


def _set_variable_and_group(config: ConnectorConfig, store: KeyValueStore,
                            pairs: list[tuple[dict[str, Any], dict[str, Any] | None]],
                            kafka: Mapping[str, Any] | None) -> None:
    offsets = Offsets(store, config.name)
    entries = {json.dumps(p, sort_keys=True): (p, o) for p, o in offsets.items()}
    for partition, offset in pairs:
        key = json.dumps(partition, sort_keys=True)
        if offset is None:
            entries.pop(key, None)
        else:
            entries[key] = (partition, offset)
    offsets.clear()
    for partition, offset in entries.values():
        offsets.put(partition, offset)
    if kafka is not None and config.kind == "source":
        # A tombstone in the journal for each partition changed on purpose: crash recovery then
        # honours the new offset even when it equals one the journal committed before.
        journal_tombstones(config.name, kafka, [journal_key(config.name, p) for p, _ in pairs])
    offsets.save()
    if kafka is not None and config.kind == "sink":
        commits = {(p["kafka_topic"], p["kafka_partition"]): o["kafka_offset"]
                   for p, o in pairs if "kafka_topic" in p and o is not None}
        commit_group_offsets(kafka, sink_group(config), commits)
