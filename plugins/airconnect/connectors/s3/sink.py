"""S3 sink: exports JSON records to S3, one folder per calendar month (Kafka Connect's
S3SinkConnector with JsonFormat and a monthly TimeBasedPartitioner on a record field, made
exactly-once).

Layout, exactly Kafka Connect's::

    <topics.dir>/<topic>/year=YYYY/month=MM/<topic>+<partition>+<start offset, 10 digits>.json[.gz]

Each line is one record's payload (the ``payload`` of a JsonConverter envelope, or the plain
JSON object) written with :mod:`airconnect.core.jsonexact`, so decimals keep their digits. The
month is the calendar month, in ``timezone``, of the first ``timestamp.field`` the payload has.
One object is open per (topic, partition, month); it is streamed to S3 in parts of
``s3.part.size`` bytes (multipart upload; a single PUT when it is smaller than one part), so
memory is bounded by the part size times the open objects. An object is closed (uploaded) when
it holds ``flush.size`` records or ``flush.size.bytes`` uncompressed bytes, at a partition's
checkpoint and at the end of the run. Its metadata: ``records``, ``sha256`` (of the bytes as
stored), ``first-offset``, ``last-offset`` and ``kafka-topic-id``: the id Kafka gave the topic
when it was created (a UUID, printed as ``kafka-topics.sh --describe`` prints it), read once per
run and topic. A topic deleted and created again is a new life with a new id, and offsets that
start again at 0: objects of the earlier life whose keys the new one does not overwrite are
*stale*. The month's manifest (:func:`write_month_manifest`,
``manifests/<connector>/year=YYYY/month=MM/manifest.json``) counts only objects of the topic's
current life and lists the others under ``stale``; :func:`remove_stale_objects` deletes them.

Offsets (one Variable, Connect's shape): ``{"kafka_topic", "kafka_partition"}`` ->
``{"kafka_offset": next offset}``; without an entry, the consumer group ``connect-<name>``'s
committed offset, else the beginning. Only committed records are read (read_committed).

Why a crash never exports a record twice (the reasoning Kafka Connect's S3 sink uses):

1. An object's key depends only on (topic, partition, offset of its first record), and where
   objects start and end depends only on the records of that partition counted from the
   offset the run started at: rotation counts records and bytes per object, and checkpoints
   are counted *per partition* (``checkpoint.records`` records of that partition). So a run
   that starts again from the same saved offset cuts the partition at the same offsets, and
   its objects have the same keys and the same bytes (gzip is written with mtime 0 and no
   file name) as those of the run that died. Counting checkpoints across partitions would
   break this: how partitions interleave differs between runs.
2. A partition's offset is saved in the Variable (then committed to the group, for Kafka's
   lag tools) only after every open object of that partition has been uploaded. A run that
   dies before that leaves objects whose records are read again from the saved offset, and
   rewritten under the same keys with the same bytes: overwritten, not duplicated. A run that
   dies later in the partition than the previous attempt simply overwrites those keys with
   objects holding more records, from the same start offsets.
3. Uploads still in flight when a run fails are aborted (an incomplete multipart upload is
   never visible). A bucket lifecycle rule "AbortIncompleteMultipartUpload" cleans up after a
   process that was killed outright.

A record that cannot be exported (not JSON, not an object, no timestamp field) goes to the
dead-letter topic with ``errors.tolerance=all`` (it still counts towards the partition's
checkpoint, so cuts stay where a re-run puts them). With ``none`` it stops its partition: the
records before it are exported and checkpointed, the offset stays at the bad record, the other
partitions are exported to their end (so every cut stays at an offset a re-run reproduces), and
the run raises :class:`DataError` naming the record.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from airconnect.connectors.s3.parquet import ParquetSchema, schema_key
from airconnect.connectors.s3.spec import PARQUET_FORMAT, S3_SINK
from airconnect.connectors.s3.upload import (
    ObjectUpload,
    ParquetUpload,
    S3Bucket,
    _named,
    _record_error,
    default_s3_client,
    object_key,
    topic_ids,
)
from airconnect.core import jsonexact
from airconnect.core.config import ConnectorConfig
from airconnect.core.deadletters import SinkDeadLetters, tolerates
from airconnect.core.delivery import SinkDelivery
from airconnect.core.errors import ConfigError, DataError
from airconnect.core.failpoints import failpoint
from airconnect.core.kafka_client import (
    sink_group_id,
)
from airconnect.core.offsets import KeyValueStore
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class S3SinkResult:
    connector: str
    bucket: str
    records: int = 0
    objects: list[str] = field(default_factory=list)
    bytes: int = 0  # as stored
    months: list[str] = field(default_factory=list)
    skipped_null: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    offsets: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "objects": list(self.objects), "months": list(self.months), "offsets": dict(self.offsets)}


TopicAndPartition = tuple[str, int]
_DEAD_LETTER: Final = object()  # a record that went to the dead-letter topic
_ENVELOPE_START: Final = b'{"schema":'  # how JsonConverter (and airconnect's sources) write an envelope


class S3Sink:
    """Exports every new committed record of ``topics`` to monthly folders of a bucket."""

    def __init__(self, config: ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any], s3_client: Any = None):
        if config.cls is not S3_SINK:
            raise ConfigError(f"is {config.cls.name}, not an S3 sink", connector=config.name, key="connector.class")
        self.config = config
        self.name = config.name
        self.topics: list[str] = config["topics"]
        self.topics_dir: str = config["topics.dir"].strip("/")
        self.compress = config["s3.compression.type"] == "gzip"
        self.parquet = config["format.class"] == PARQUET_FORMAT
        self.codec: str = config["parquet.codec"]
        self.extension = ".parquet" if self.parquet else ".json.gz" if self.compress else ".json"
        self._schemas: dict[str, ParquetSchema] = {}  # Connect schema text -> its Parquet schema
        self.flush_records: int = config["flush.size"]
        self.flush_bytes: int = config["flush.size.bytes"]
        self.part_size: int = config["s3.part.size"]
        self.timestamp_fields: list[str] = config["timestamp.field"]
        self.zone = ZoneInfo(config["timezone"])
        self.skip_null = config["behavior.on.null.values"] == "ignore"
        self.checkpoint_records: int = config["checkpoint.records"]
        self.store = store
        self.kafka = dict(kafka)
        self.group = sink_group_id(config.name)
        self.s3_client = s3_client
        self._prefix: bytes | None = None  # see _envelope
        self._prefix_schema: Any = None

    def _envelope(self, value: bytes) -> tuple[Any, Any]:
        """``(schema, payload)`` of a JsonConverter envelope, else ``(None, the whole value)``.

        A topic's records nearly always share one schema, written first: once a record has
        shown its ``{"schema":...,"payload":`` prefix, a record that starts with the same bytes
        has only its payload parsed (the schema is most of the bytes). Anything else, or a
        payload that does not parse on its own, goes through the whole parse.
        """
        prefix = self._prefix
        if prefix is not None and value.startswith(prefix) and value.endswith(b"}"):
            try:
                return self._prefix_schema, jsonexact.loads(value[len(prefix):-1])
            except ValueError:  # (UnicodeDecodeError too) the whole parse says what is wrong
                pass
        try:
            doc = jsonexact.loads(value)
        except UnicodeDecodeError as exc:
            raise _record_error(f"the value is not valid UTF-8 at byte {exc.start}", key="value.converter") from None
        except ValueError as exc:
            raise _record_error(f"the value is not JSON ({exc})", key="value.converter") from None
        if not (isinstance(doc, dict) and set(doc) == {"schema", "payload"}):
            return None, doc
        if value.startswith(_ENVELOPE_START):
            text = value.decode("utf-8", "surrogatepass")
            schema, end = jsonexact.raw_decode(text, len(_ENVELOPE_START))
            if text.startswith(',"payload":', end) and schema == doc["schema"]:
                self._prefix = (text[:end] + ',"payload":').encode("utf-8", "surrogatepass")
                self._prefix_schema = doc["schema"]
        return doc["schema"], doc["payload"]

    def _line_and_month(self, value: bytes | None) -> tuple[bytes, tuple[int, int], Any, ParquetSchema | None] | None:
        """The line a record value becomes, its (year, month), and for ParquetFormat its row and
        schema; ``None`` for a skipped tombstone. Raises :class:`DataError` saying what is wrong."""
        if value is None:
            if self.skip_null:
                return None
            raise _record_error("the record has no value (a tombstone); set behavior.on.null.values=ignore to skip "
                                "such records", key="behavior.on.null.values")
        schema, doc = self._envelope(value)
        if schema is not None:  # a JsonConverter envelope
            if doc is None:
                if self.skip_null:
                    return None
                raise _record_error("the envelope's payload is null; set behavior.on.null.values=ignore to skip such "
                                    "records", key="behavior.on.null.values")
        if not isinstance(doc, dict):
            raise _record_error(f"the payload is a JSON {type(doc).__name__}, not an object: {jsonexact.dumps(doc)[:80]}",
                                key="value.converter")
        name = next((f for f in self.timestamp_fields if doc.get(f) is not None), None)
        if name is None:
            raise _record_error(f"the payload has none of the timestamp.field fields {self.timestamp_fields} "
                                f"(its fields: {sorted(doc)[:20]})", key="timestamp.field")
        try:
            when = jsonexact.parse_timestamp(doc[name]).astimezone(self.zone)
        except (ValueError, OverflowError) as exc:
            raise _record_error(f"field {name!r} is not a timestamp ({exc})", key="timestamp.field") from None
        line = (jsonexact.dumps(doc) + "\n").encode("utf-8")
        if not self.parquet:
            return line, (when.year, when.month), None, None
        if not isinstance(schema, dict):
            raise _record_error("ParquetFormat needs each record's schema: the record is not a JsonConverter envelope "
                                "with a schema (set value.converter.schemas.enable=true where it is written)",
                                key="format.class")
        key = schema_key(schema)
        try:
            pschema = self._schemas.get(key)
            if pschema is None:
                pschema = self._schemas[key] = ParquetSchema(schema)
            return line, (when.year, when.month), pschema.row(doc), pschema
        except DataError as exc:  # the record (or its schema) does not fit Parquet
            raise _record_error(str(exc), key="format.class") from None

    def run(self) -> S3SinkResult:
        client = self.s3_client if self.s3_client is not None else default_s3_client()
        bucket = S3Bucket(client, self.config["s3.bucket.name"], connector=self.name,
                          credentials=f"the AWS connection '{self.config['aws.conn.id']}'")
        result = S3SinkResult(self.name, bucket.name)
        progress = Progress(log, f"connector '{self.name}' ({', '.join(self.topics)} -> s3://{bucket.name}/{self.topics_dir})")
        bucket.check()  # before consuming: a missing bucket or bad credentials touch no offset
        dead = SinkDeadLetters(self.config, self.kafka, self.topics) if tolerates(self.config) else None
        task = self.config.task  # one task of a split: its topic-partitions only
        delivery = SinkDelivery(self.name, self.store, self.kafka, self.topics, group=self.group, dead_letters=dead,
                                partitions=task.get("partitions") if task is not None else None)
        starts = delivery.starts()
        # Each object carries the id of its topic's life, asked once per run (again, once, for a
        # topic that did not exist yet when the run started and has records by the time it is read).
        ids = topic_ids(self.kafka, self.topics, connector=self.name)
        asked_again: set[str] = set()

        def topic_id(topic: str) -> str | None:
            if ids.get(topic) is None and topic not in asked_again:
                asked_again.add(topic)
                ids.update(topic_ids(self.kafka, [topic], connector=self.name))
            return ids.get(topic)
        partitions = delivery.positions
        saved: dict[TopicAndPartition, int] = {}  # offsets as of the last checkpoint (else the run's start)
        since_checkpoint: Counter[TopicAndPartition] = Counter()
        open_objects: dict[tuple[str, int, int, int], Any] = {}  # ObjectUpload or ParquetUpload
        failures: dict[TopicAndPartition, tuple[int, str, str]] = {}  # partition -> (offset, what was wrong, key)
        months: set[tuple[int, int]] = set()

        def close(okey: tuple[str, int, int, int]) -> None:
            obj = open_objects[okey]
            obj.close()
            failpoint("s3.object_uploaded")
            del open_objects[okey]  # only now: a failed close is aborted with the other open objects
            result.objects.append(obj.key)
            result.bytes += obj.size
            log.info("connector '%s': wrote s3://%s/%s (%d records, offsets %d-%d, %d bytes)",
                     self.name, bucket.name, obj.key, obj.records, obj.first_offset, obj.last_offset, obj.size)

        def checkpoint(tps: Iterable[TopicAndPartition]) -> None:
            """Upload the partitions' open objects, then save their offsets, then commit them."""
            tps = sorted(tps)
            if not tps:
                return
            for okey in sorted(k for k in open_objects if k[:2] in tps):
                close(okey)
            delivery.checkpoint({tp: partitions[tp].next_offset for tp in tps})
            for tp in tps:
                saved[tp] = partitions[tp].next_offset
                since_checkpoint[tp] = 0

        try:
            for msg in delivery.records(starts, on_batch_end=lambda: progress.add(
                    result.records + result.skipped_null - progress.count)):
                topic, p, offset = msg.topic(), msg.partition(), msg.offset()
                tp = (topic, p)
                if tp in failures:
                    continue  # this partition stops at its bad record; the others go on
                try:
                    converted: Any = self._line_and_month(msg.value())
                except DataError as exc:
                    if dead is None:
                        failures[tp] = (offset, str(exc), getattr(exc, "key", None) or "value.converter")
                        continue
                    dead.send(msg, exc, "VALUE_CONVERTER")  # errors.tolerance=all: dead-letter it, go on
                    result.dead_letters += 1
                    converted = _DEAD_LETTER
                if converted is _DEAD_LETTER:
                    pass
                elif converted is None:
                    result.skipped_null += 1
                else:
                    line, (year, month), row, pschema = converted
                    okey = (topic, p, year, month)
                    obj: Any = open_objects.get(okey)
                    if obj is not None and pschema is not None and obj.schema_key != pschema.key:
                        close(okey)  # the schema changed: a new object starts here (as Connect does)
                        obj = None
                    if obj is None:
                        key = object_key(self.topics_dir, topic, p, year, month, offset, self.extension)
                        life = topic_id(topic)
                        obj = open_objects[okey] = (
                            ParquetUpload(bucket, key, offset, pschema, codec=self.codec, part_size=self.part_size,
                                          topic_id=life)
                            if pschema is not None else
                            ObjectUpload(bucket, key, offset, compress=self.compress, part_size=self.part_size,
                                         topic_id=life))
                    if pschema is not None:
                        obj.append_row(row, len(line), offset)
                    else:
                        obj.append(line, offset)
                    months.add((year, month))
                    result.records += 1
                    if obj.records >= self.flush_records or obj.raw_bytes >= self.flush_bytes:
                        close(okey)
                since_checkpoint[tp] += 1
                if since_checkpoint[tp] >= self.checkpoint_records:
                    checkpoint([tp])
            for tp, (offset, _, _) in failures.items():
                partitions[tp].next_offset = offset  # the next run starts at the bad record
            checkpoint(tp for tp, pp in partitions.items() if pp.next_offset != saved.get(tp, pp.start))
        except BaseException:
            for obj in open_objects.values():
                obj.abort()
            raise
        finally:
            delivery.close()
        progress.count = result.records + result.skipped_null
        progress.done()
        result.seconds = round(progress.seconds, 3)
        result.months = [f"{y:04d}-{m:02d}" for y, m in sorted(months)]
        result.offsets = {f"{t}[{p}]": pp.next_offset for (t, p), pp in sorted(partitions.items())}
        if result.skipped_null:
            log.info("connector '%s': %d records had no value (tombstones) and were skipped", self.name, result.skipped_null)
        if failures:
            raise _record_error("; ".join(
                _named(f"record {t}[{p}]@{offset}: {what}. Records before it were exported; the offset stays at {offset}",
                       self.name, key)
                for (t, p), (offset, what, key) in sorted(failures.items())
            ) + ".", key=min(failures.items())[1][2], connector=self.name)
        return result
