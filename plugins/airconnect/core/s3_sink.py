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

import gzip
import hashlib
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from airconnect.core import jsonexact
from airconnect.core.config import JSON_CONVERTER, ConnectorClass, ConnectorConfig, Key, check_timezone, register
from airconnect.core.deadletters import SinkDeadLetters, tolerates
from airconnect.core.errors import ConfigError, DataError, KafkaUnavailableError, TransientError
from airconnect.core.failpoints import failpoint
from airconnect.core.kafka_client import (
    PartitionProgress,
    client_config,
    commit_group_offsets,
    kafka_error,
    read_to_end,
    sink_group_id,
)
from airconnect.core.offsets import KeyValueStore, Offsets
from airconnect.core.parquet_format import CODECS, ParquetRows, ParquetSchema, schema_key
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

MiB: Final = 1024 * 1024
#: S3's smallest multipart part (except the last).
MIN_PART_SIZE: Final = 5 * MiB
#: S3 copies objects of up to 5 GiB in one request; setting an object's metadata after a
#: multipart upload is such a copy, so objects are rotated well below that.
MAX_OBJECT_BYTES: Final = 4 * 1024 * MiB

JSON_FORMAT: Final = "io.confluent.connect.s3.format.json.JsonFormat"
PARQUET_FORMAT: Final = "io.confluent.connect.s3.format.parquet.ParquetFormat"
_OTHER_FORMATS: Final = (
    "io.confluent.connect.s3.format.avro.AvroFormat",
    "io.confluent.connect.s3.format.bytearray.ByteArrayFormat",
)
_GZIP_WBITS: Final = 31  # zlib's gzip wrapper: mtime 0, no file name, so output is reproducible
_READ_CHUNK: Final = MiB
#: The object metadata naming the life of the topic an object was written from (Kafka's topic id).
TOPIC_ID_METADATA: Final = "kafka-topic-id"


def _check_format(value: str) -> str | None:
    if value in (JSON_FORMAT, PARQUET_FORMAT):
        return None
    if value in _OTHER_FORMATS:
        short = value.rsplit(".", 1)[-1]
        return f"{JSON_FORMAT!r} or {PARQUET_FORMAT!r} ({short} is not supported by airconnect yet)"
    return f"{JSON_FORMAT!r} or {PARQUET_FORMAT!r}"


def _check_topics_dir(value: str) -> str | None:
    return None if value.strip("/") else "a folder name such as 'topics'"


def _check_flush_bytes(value: int) -> str | None:
    return None if value <= MAX_OBJECT_BYTES else f"an integer from 1 to {MAX_OBJECT_BYTES} (4 GiB)"


def _check_s3_sink(cfg: ConnectorConfig) -> None:
    """What the S3 sink cannot honour among the keys every connector accepts."""
    if cfg["format.class"] == PARQUET_FORMAT and cfg["s3.compression.type"] != "none":
        raise ConfigError("must be 'none' with ParquetFormat: Parquet compresses inside the file; choose its codec "
                          "with 'parquet.codec'", connector=cfg.name, key="s3.compression.type")
    if cfg["value.converter"] != JSON_CONVERTER:
        raise ConfigError(f"must be {JSON_CONVERTER!r}: the S3 sink reads JSON objects (with or without a schema envelope)",
                          connector=cfg.name, key="value.converter")


S3_SINK = register(ConnectorClass(
    name="airconnect.S3Sink",
    kind="sink",
    aliases=("io.confluent.connect.s3.S3SinkConnector", "S3SinkConnector"),
    keys=(
        Key("topics", "list", doc="Comma-separated topics to export."),
        Key("s3.bucket.name", "string", doc="The bucket to write to."),
        Key("topics.dir", "string", "topics", "Top folder of the objects: <topics.dir>/<topic>/year=YYYY/month=MM/.",
            check=_check_topics_dir),
        Key("aws.conn.id", "string", "aws_default", "airconnect: the Airflow AWS Connection (credentials, endpoint, region)."),
        Key("format.class", "string", JSON_FORMAT, "Object format: JSON lines, one record's payload per line.",
            check=_check_format),
        Key("s3.compression.type", "string", "none", "Compression of the objects.", choices=("none", "gzip")),
        Key("parquet.codec", "string", "snappy", "ParquetFormat: the compression inside the Parquet file.",
            choices=CODECS),
        Key("flush.size", "int", 10000, "Records per object: an object is uploaded when it holds this many.", minimum=1),
        Key("flush.size.bytes", "int", 64 * MiB,
            "airconnect: an object is also uploaded when its uncompressed lines reach this many bytes.",
            minimum=1, check=_check_flush_bytes),
        Key("s3.part.size", "int", 8 * MiB, "Multipart upload part size in bytes (at least 5 MiB).", minimum=MIN_PART_SIZE),
        Key("timestamp.field", "list",
            doc="Candidate payload fields giving a record's time (ISO-8601 text or epoch milliseconds); "
                "the first one present and not null wins."),
        Key("timezone", "string", "UTC", "The zone (IANA name) whose calendar month a record belongs to.",
            check=check_timezone),
        Key("behavior.on.null.values", "string", "fail", "A record without a value (tombstone): stop, or skip it.",
            choices=("fail", "ignore")),
        Key("checkpoint.records", "int", 200000,
            "Records of one partition between its checkpoints (its open objects uploaded, then its offset saved).",
            minimum=1),
    ),
    doc="Exports JSON records to S3 as JSON lines, one folder per calendar month of a timestamp field.",
    check=_check_s3_sink,
))



# --- S3 access with errors that say what failed -------------------------------------------------


def _named(message: str, connector: str | None, key: str | None) -> str:
    """``connector 'X', key 'Y': message``, as :class:`ConfigError` words it."""
    where = [f"connector '{connector}'"] if connector else []
    where += [f"key '{key}'"] if key else []
    return f"{', '.join(where)}: {message}" if where else message


class S3AccessError(ConfigError):
    """The bucket does not exist, or the credentials may not use it: a person has to fix that.
    Permanent; the message names the connector and the key to fix (``s3.bucket.name``, ``aws.conn.id``)."""


class S3UnavailableError(TransientError):
    """S3 could not be reached, timed out or asked to slow down; retrying may succeed."""

    def __init__(self, message: str, *, connector: str | None = None, key: str | None = None):
        self.connector = connector
        self.key = key
        super().__init__(_named(message, connector, key))


def _record_error(message: str, *, key: str, connector: str | None = None) -> DataError:
    """A :class:`DataError` about a record, with ``key``: the setting that decided it
    (``timestamp.field``, ``value.converter``, ``format.class``, ``behavior.on.null.values``).
    (A plain DataError, so dead letters keep naming ``DataError`` as the exception class.)"""
    error = DataError(message)
    error.connector, error.key = connector, key  # type: ignore[attr-defined]
    return error


_DENIED: Final = frozenset({
    "403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
})
_BUSY: Final = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "ServiceUnavailable", "InternalError",
})


def default_s3_client() -> Any:
    """An S3 client from boto3's default chain (environment, profile, instance role; endpoint from
    ``AWS_ENDPOINT_URL_S3``), for runs outside Airflow. Inside Airflow the operator passes the
    client of the definition's ``aws.conn.id``."""
    import boto3

    return boto3.client("s3")


class S3Bucket:
    """One bucket through a boto3 S3 client; every failure becomes an airconnect error naming
    the connector, the key to look at, the bucket and the endpoint (:class:`S3AccessError`,
    :class:`S3UnavailableError`)."""

    def __init__(self, client: Any, name: str, *, connector: str | None = None,
                 credentials: str = "the AWS credentials"):
        self.client = client
        self.name = name
        self.connector = connector
        self.credentials = credentials
        self.endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None) or "S3"

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.name, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped below, or re-raised unchanged
            mapped = self._error(exc, doing)
            if mapped is None:
                raise
            raise mapped from exc

    def _error(self, exc: Exception, doing: str) -> Exception | None:
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, NoCredentialsError

        where = f"bucket '{self.name}' at {self.endpoint}"
        bucket = {"connector": self.connector, "key": "s3.bucket.name"}
        connection = {"connector": self.connector, "key": "aws.conn.id"}  # credentials and endpoint
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            detail = f"{code}: {error.get('Message')}" if error.get("Message") else code
            if code == "NoSuchBucket" or (exc.operation_name == "HeadBucket" and code in ("404", "NotFound")):
                return S3AccessError(f"{doing}: the {where} does not exist; create it, or fix 's3.bucket.name'",
                                     **bucket)
            if code in _DENIED:
                return S3AccessError(f"{doing}: access to the {where} was denied ({detail}); "
                                     f"check {self.credentials} and the bucket's policy", **connection)
            if status >= 500 or code in _BUSY:
                return S3UnavailableError(f"{doing}: S3 at {self.endpoint} failed ({detail}); retrying may succeed",
                                          **connection)
            return S3AccessError(f"{doing}: S3 refused the request for the {where} ({detail})", **bucket)
        if isinstance(exc, NoCredentialsError):
            return S3AccessError(f"{doing}: no credentials for the {where}; check {self.credentials}", **connection)
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            return S3UnavailableError(f"{doing}: S3 at {self.endpoint} could not be reached ({exc}); is it running?",
                                      **connection)
        return None

    def check(self) -> None:
        self._call("checking the bucket", "head_bucket")

    def put(self, key: str, body: bytes, **kwargs: Any) -> None:
        self._call(f"writing {key}", "put_object", Key=key, Body=body, **kwargs)

    def create_multipart(self, key: str, **kwargs: Any) -> str:
        return self._call(f"starting the upload of {key}", "create_multipart_upload", Key=key, **kwargs)["UploadId"]

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        """Upload one part; return its entry for :meth:`complete_multipart` (ETag and any checksum)."""
        reply = self._call(f"uploading part {number} of {key}", "upload_part",
                           Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        part = {"PartNumber": number, "ETag": reply["ETag"]}
        part.update({k: v for k, v in reply.items() if k.startswith("Checksum") and k != "ChecksumType" and v})
        return part

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        self._call(f"completing the upload of {key}", "complete_multipart_upload",
                   Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._call(f"aborting the upload of {key}", "abort_multipart_upload", Key=key, UploadId=upload_id)

    def replace_metadata(self, key: str, metadata: Mapping[str, str], **kwargs: Any) -> None:
        """Set an object's metadata (S3 does this by copying the object onto itself)."""
        self._call(f"setting the metadata of {key}", "copy_object", Key=key,
                   CopySource={"Bucket": self.name, "Key": key}, Metadata=dict(metadata),
                   MetadataDirective="REPLACE", **kwargs)

    def list_keys(self, prefix: str) -> list[tuple[str, int]]:
        """``(key, size)`` of every object under ``prefix``, sorted by key."""
        found: list[tuple[str, int]] = []
        token: str | None = None
        while True:
            page = self._call(f"listing {prefix}", "list_objects_v2", Prefix=prefix,
                              **({"ContinuationToken": token} if token else {}))
            found.extend((o["Key"], int(o["Size"])) for o in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return sorted(found)
            token = page["NextContinuationToken"]

    def metadata(self, key: str) -> dict[str, str]:
        return dict(self._call(f"reading the metadata of {key}", "head_object", Key=key).get("Metadata") or {})

    def get_stream(self, key: str) -> Any:
        return self._call(f"reading {key}", "get_object", Key=key)["Body"]

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (a thousand per request, S3's limit); a key S3 refuses to delete is an error."""
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            reply = self._call(f"deleting {len(chunk)} object(s) under {chunk[0]}", "delete_objects",
                               Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            if reply.get("Errors"):
                failed = ", ".join(f"{e.get('Key')} ({e.get('Code')}: {e.get('Message')})" for e in reply["Errors"][:5])
                raise S3AccessError(f"S3 did not delete {len(reply['Errors'])} object(s) of the bucket "
                                    f"'{self.name}': {failed}", connector=self.connector, key="s3.bucket.name")


# --- the life of a topic: Kafka's topic id -------------------------------------------------------


def topic_ids(kafka: Mapping[str, Any], topics: Iterable[str], *, connector: str | None = None,
              timeout: float = 15.0) -> dict[str, str | None]:
    """Kafka's id of each topic, in one request: the UUID the controller gave the topic when it
    was created, written as ``kafka-topics.sh --describe`` writes it (URL-safe base64, no padding).
    ``None`` for a topic that does not exist (or a broker too old to have ids).
    Raises :class:`~airconnect.core.errors.KafkaUnavailableError` when Kafka does not answer."""
    import base64

    from confluent_kafka import KafkaError, KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    names = sorted(set(topics))
    if not names:
        return {}
    doing = _named(f"reading the ids of the topics {', '.join(names)}", connector, "kafka.conn.id")
    admin = AdminClient(client_config(kafka))  # kept referenced until every future is resolved
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout)
    except KafkaException as exc:
        raise kafka_error(exc, kafka, doing) from None
    ids: dict[str, str | None] = {}
    for name in names:
        try:
            uuid = futures[name].result().topic_id
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                ids[name] = None
                continue
            if err is not None and err.code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                                                  KafkaError._ALL_BROKERS_DOWN):
                raise KafkaUnavailableError(f"{doing}: Kafka at {kafka.get('bootstrap.servers')} did not answer within "
                                            f"{timeout:.0f} s ({err.str()}); is the broker running?") from None
            raise kafka_error(exc, kafka, doing) from None
        mask = (1 << 64) - 1  # the halves come as Java's signed longs
        value = ((uuid.get_most_significant_bits() & mask) << 64) | (uuid.get_least_significant_bits() & mask)
        ids[name] = base64.urlsafe_b64encode(value.to_bytes(16, "big")).rstrip(b"=").decode() if value else None
    return ids


def is_stale(metadata: Mapping[str, str], current_id: str | None) -> bool:
    """Whether an object (by its metadata) comes from another life of its topic than ``current_id``:
    it names another id, or none while the topic has one; or the topic no longer exists and the
    object names the id of the life that ended. An object without an id is not judged while the
    topic has none (a broker without topic ids, or a topic that is gone)."""
    written = metadata.get(TOPIC_ID_METADATA) or None
    if current_id is None:
        return written is not None
    return written != current_id


# --- one object being written --------------------------------------------------------------------


def object_key(topics_dir: str, topic: str, partition: int, year: int, month: int, start_offset: int, extension: str) -> str:
    """Kafka Connect's key: ``<dir>/<topic>/year=YYYY/month=MM/<topic>+<partition>+<offset:010d><ext>``."""
    return f"{month_prefix(topics_dir, topic, year, month)}{topic}+{partition}+{start_offset:010d}{extension}"


def month_prefix(topics_dir: str, topic: str, year: int, month: int) -> str:
    return f"{topics_dir.strip('/')}/{topic}/year={year:04d}/month={month:02d}/"


class ObjectUpload:
    """One object being written: lines stream into a buffer (gzip-compressed as they come when
    ``compress``), and each time the buffer reaches ``part_size`` it is uploaded as a part."""

    def __init__(self, bucket: S3Bucket, key: str, first_offset: int, *, compress: bool, part_size: int,
                 topic_id: str | None = None):
        self.bucket = bucket
        self.key = key
        self.topic_id = topic_id
        self.first_offset = first_offset
        self.last_offset = first_offset
        self.records = 0
        self.raw_bytes = 0  # uncompressed line bytes, what flush.size.bytes counts
        self.size = 0  # bytes as stored
        self.part_size = part_size
        self.content_type = "application/gzip" if compress else "application/x-ndjson"
        self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, _GZIP_WBITS) if compress else None
        self._sha256 = hashlib.sha256()
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def append(self, line: bytes, offset: int) -> None:
        self._store(self._compressor.compress(line) if self._compressor else line)
        self.records += 1
        self.raw_bytes += len(line)
        self.last_offset = offset
        if len(self._buffer) >= self.part_size:
            self._upload_part()

    def _store(self, data: bytes) -> None:
        self._buffer += data
        self._sha256.update(data)
        self.size += len(data)

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self.bucket.create_multipart(self.key, ContentType=self.content_type,
                                                           Metadata=self._life())
        self._parts.append(self.bucket.upload_part(self.key, self._upload_id, len(self._parts) + 1, bytes(self._buffer)))
        self._buffer.clear()
        failpoint("s3.part_uploaded")

    def _life(self) -> dict[str, str]:
        return {TOPIC_ID_METADATA: self.topic_id} if self.topic_id else {}

    def metadata(self) -> dict[str, str]:
        return {"records": str(self.records), "sha256": self._sha256.hexdigest(),
                "first-offset": str(self.first_offset), "last-offset": str(self.last_offset), **self._life()}

    def close(self) -> None:
        """Finish the object: one PUT if it never filled a part, else the last part, completion
        and the metadata (which a multipart upload only knows at its end)."""
        if self._compressor is not None:
            self._store(self._compressor.flush())
            self._compressor = None
        if self._upload_id is None:
            self.bucket.put(self.key, bytes(self._buffer), ContentType=self.content_type, Metadata=self.metadata())
        else:
            if self._buffer:
                self._upload_part()
            self.bucket.complete_multipart(self.key, self._upload_id, self._parts)
            self._upload_id = None
            self.bucket.replace_metadata(self.key, self.metadata(), ContentType=self.content_type)
        self._buffer = bytearray()

    def abort(self) -> None:
        """Drop a multipart upload in progress (nothing of it becomes visible); never raises."""
        if self._upload_id is None:
            return
        try:
            self.bucket.abort_multipart(self.key, self._upload_id)
        except Exception as exc:  # noqa: BLE001 - already failing; a lifecycle rule cleans up
            log.warning("could not abort the multipart upload of s3://%s/%s: %s", self.bucket.name, self.key, exc)
        self._upload_id = None


# --- the connector -------------------------------------------------------------------------------


class ParquetUpload(ObjectUpload):
    """One Parquet object: rows go to row groups, whose bytes stream into the upload's parts."""

    def __init__(self, bucket: S3Bucket, key: str, first_offset: int, schema: ParquetSchema, *, codec: str,
                 part_size: int, topic_id: str | None = None):
        super().__init__(bucket, key, first_offset, compress=False, part_size=part_size, topic_id=topic_id)
        self.content_type = "application/vnd.apache.parquet"
        self.schema_key = schema.key
        self._rows = ParquetRows(schema, _UploadStream(self), codec=codec)

    def append_row(self, row: dict[str, Any], raw_size: int, offset: int) -> None:
        self._rows.append(row)
        self.records += 1
        self.raw_bytes += raw_size
        self.last_offset = offset

    def close(self) -> None:
        self._rows.close()
        super().close()


class _UploadStream:
    """The file-like end pyarrow writes a Parquet file to: bytes go into the object's parts."""

    closed = False

    def __init__(self, upload: ObjectUpload):
        self.upload = upload

    def write(self, data: bytes) -> int:
        self.upload._store(bytes(data))
        if len(self.upload._buffer) >= self.upload.part_size:
            self.upload._upload_part()
        return len(data)

    def tell(self) -> int:
        return self.upload.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


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
        self.offsets = Offsets(store, config.name)
        self.kafka = dict(kafka)
        self.group = sink_group_id(config.name)
        self.s3_client = s3_client
        self._prefix: bytes | None = None  # see _envelope
        self._prefix_schema: Any = None

    def _start_offsets(self) -> dict[str, dict[int, int]]:
        """Saved offsets per topic; partitions without one start at the group's commit (read_to_end)."""
        starts: dict[str, dict[int, int]] = {t: {} for t in self.topics}
        for partition, _ in self.offsets.items():
            topic, p = partition.get("kafka_topic"), partition.get("kafka_partition")
            if topic not in starts:
                continue
            if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                raise self.offsets._fail(f"partition {partition} has no whole-number 'kafka_partition'")
            offset = self.offsets.get_int(partition, "kafka_offset")
            if offset is not None:
                starts[topic][p] = offset
        return starts

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
        starts = self._start_offsets()
        # Each object carries the id of its topic's life, asked once per run (again, once, for a
        # topic that did not exist yet when the run started and has records by the time it is read).
        ids = topic_ids(self.kafka, self.topics, connector=self.name)
        asked_again: set[str] = set()

        def topic_id(topic: str) -> str | None:
            if ids.get(topic) is None and topic not in asked_again:
                asked_again.add(topic)
                ids.update(topic_ids(self.kafka, [topic], connector=self.name))
            return ids.get(topic)
        dead = SinkDeadLetters(self.config, self.kafka, self.topics) if tolerates(self.config) else None
        partitions: dict[TopicAndPartition, PartitionProgress] = {}
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
            if dead is not None:
                dead.flush()  # dead letters are acknowledged before the offsets move past them
            for okey in sorted(k for k in open_objects if k[:2] in tps):
                close(okey)
            for tp in tps:
                self.offsets.put({"kafka_topic": tp[0], "kafka_partition": tp[1]},
                                 {"kafka_offset": partitions[tp].next_offset})
            self.offsets.save()
            commit_group_offsets(self.kafka, self.group, {tp: partitions[tp].next_offset for tp in tps})
            for tp in tps:
                saved[tp] = partitions[tp].next_offset
                since_checkpoint[tp] = 0

        try:
            for msg in read_to_end(self.kafka, starts, group_id=self.group, progress=partitions,
                                   on_batch_end=lambda: progress.add(result.records + result.skipped_null - progress.count)):
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


# --- monthly manifest ----------------------------------------------------------------------------


MANIFEST_PREFIX: Final = "manifests"
_MONTH_OBJECT = re.compile(r"year=\d{4}/month=\d{2}/[^/]+")


def manifest_key(connector: str, year: int, month: int, manifest_prefix: str = MANIFEST_PREFIX) -> str:
    """``<manifest_prefix>/<connector>/year=YYYY/month=MM/manifest.json``.

    A manifest belongs to its sink: two sinks may share a bucket (a JSON and a Parquet export of
    the same topics, in different ``topics.dir``), and each month's manifest of each must
    survive the other's. Connector names are unique among the definitions and made of letters,
    digits, ``.``, ``_`` and ``-`` (never ``/``), so the name is a folder of its own; a sink's
    manifests are listed under ``<manifest_prefix>/<connector>/``."""
    return f"{manifest_prefix.strip('/')}/{connector}/year={year:04d}/month={month:02d}/manifest.json"


def _sink_bucket(config: ConnectorConfig, client: Any, doing: str) -> S3Bucket:
    if config.cls is not S3_SINK:
        raise ConfigError(f"is {config.cls.name}; {doing} needs an S3 sink", connector=config.name, key="connector.class")
    return S3Bucket(client, config["s3.bucket.name"], connector=config.name,
                    credentials=f"the AWS connection '{config['aws.conn.id']}'")


def _stale_entry(key: str, size: int, topic: str, meta: Mapping[str, str]) -> dict[str, Any]:
    records = meta.get("records", "")
    return {"key": key, "size": size, "topic": topic, "topic_id": meta.get(TOPIC_ID_METADATA) or None,
            "records": int(records) if records.isdigit() else None}


def _warn_stale(connector: str, bucket: str, what: str, stale: list[dict[str, Any]], ids: Mapping[str, str | None]) -> None:
    now = ", ".join(f"{t} {ids.get(t) or '(does not exist)'}" for t in sorted({e["topic"] for e in stale}))
    log.warning("connector '%s': %d object(s) in s3://%s come from an earlier life of their topic (Kafka topic id now: "
                "%s) and %s: %s", connector, len(stale), bucket, now, what,
                ", ".join(f"{e['key']} (topic id {e['topic_id'] or 'none'})" for e in stale))


def write_month_manifest(config: ConnectorConfig, client: Any, kafka: Mapping[str, Any] | None, year: int, month: int,
                         *, manifest_prefix: str = MANIFEST_PREFIX) -> dict[str, Any]:
    """List a month's objects of the S3 sink ``config`` (its bucket, ``topics.dir`` and topics)
    and write them to :func:`manifest_key`.

    The manifest names its ``connector`` and holds, per topic, the topic's current id
    (``topic_id``), each object's key, size, records and sha256 (from the object's metadata;
    for an object written by something else, counted and hashed by reading it), and the totals.
    Objects of another life of their topic (their ``kafka-topic-id`` is not the topic's id now;
    or they have none while the topic has one) are *stale*: not counted, listed under ``stale``
    (key, size, topic, their topic id, records), and named in a WARNING. ``kafka`` None: the
    topics' ids are not asked and every object counts (``topic_id`` null, ``stale`` empty).
    Deterministic (sorted, no generation time): the same objects give a byte-identical manifest.
    Returns the manifest with its ``key``.
    """
    name = config.name
    if not 1 <= month <= 12 or not 1 <= year <= 9999:
        raise ValueError(_named(f"not a calendar month: {year}-{month}", name, None))
    store = _sink_bucket(config, client, "a month's manifest")
    store.check()
    topics_dir = config["topics.dir"].strip("/")
    topics = sorted(set(config["topics"]))
    ids = topic_ids(kafka, topics, connector=name) if kafka is not None else None
    doc_topics: dict[str, Any] = {}
    stale: list[dict[str, Any]] = []
    for topic in topics:
        current = ids.get(topic) if ids is not None else None
        objects = []
        for key, size in store.list_keys(month_prefix(topics_dir, topic, year, month)):
            meta = store.metadata(key)
            if ids is not None and is_stale(meta, current):
                stale.append(_stale_entry(key, size, topic, meta))
                continue
            count, sha256 = meta.get("records", ""), meta.get("sha256", "")
            records = int(count) if count.isdigit() and len(sha256) == 64 else None
            if records is None:
                records, sha256 = _count_and_hash(store, key)
            objects.append({"key": key, "size": size, "records": records, "sha256": sha256})
        doc_topics[topic] = {"objects": objects, "records": sum(o["records"] for o in objects), "topic_id": current}
    manifest = {
        "connector": name,
        "month": f"{year:04d}-{month:02d}",
        "topics": doc_topics,
        "records": sum(t["records"] for t in doc_topics.values()),
        "objects": sum(len(t["objects"]) for t in doc_topics.values()),
        "stale": stale,
    }
    key = manifest_key(name, year, month, manifest_prefix)
    if stale:
        _warn_stale(name, store.name, f"are left out of the manifest of {manifest['month']} (listed under 'stale' in "
                                      f"s3://{store.name}/{key})", stale, ids or {})
    body = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    store.put(key, body, ContentType="application/json")
    log.info("connector '%s': wrote s3://%s/%s: %d objects, %d records%s", name, store.name, key, manifest["objects"],
             manifest["records"], f" ({len(stale)} stale object(s) not counted)" if stale else "")
    return {"key": key, **manifest}


def remove_stale_objects(config: ConnectorConfig, client: Any, kafka: Mapping[str, Any]) -> list[str]:
    """Delete the stale objects of the S3 sink ``config``: those, in every month folder of its
    topics (``<topics.dir>/<topic>/year=YYYY/month=MM/``), that come from another life of their
    topic than the one Kafka has now (the rule of :func:`write_month_manifest`; a topic that no
    longer exists leaves every object naming its old id stale). Returns their keys, sorted, and
    names them in a WARNING. Meant for ``airconnect reset`` of a sink whose topics were deleted:
    objects of the old life at offsets the new life does not reach are never overwritten.
    """
    store = _sink_bucket(config, client, "removing stale objects")
    store.check()
    topics_dir = config["topics.dir"].strip("/")
    topics = sorted(set(config["topics"]))
    ids = topic_ids(kafka, topics, connector=config.name)
    stale: list[dict[str, Any]] = []
    for topic in topics:
        prefix = f"{topics_dir}/{topic}/"
        for key, size in store.list_keys(prefix):
            if not _MONTH_OBJECT.fullmatch(key[len(prefix):]):
                continue  # not in the sink's layout: not the sink's to judge
            meta = store.metadata(key)
            if is_stale(meta, ids.get(topic)):
                stale.append(_stale_entry(key, size, topic, meta))
    keys = sorted(e["key"] for e in stale)
    if keys:
        store.delete(keys)
        _warn_stale(config.name, store.name, "were deleted", sorted(stale, key=lambda e: e["key"]), ids)
    else:
        log.info("connector '%s': no stale objects under s3://%s/%s/", config.name, store.name, topics_dir)
    return keys


class _HashingReader:
    """A file-like view of a stream that hashes every byte read through it."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size) if size is not None and size >= 0 else self.stream.read()
        self.sha256.update(data)
        return data


def _count_and_hash(store: S3Bucket, key: str) -> tuple[int, str]:
    """Lines and sha256 of an object without airconnect's metadata, read in chunks (gunzipped
    when the key ends with ``.gz``)."""
    log.info("s3://%s/%s has no records/sha256 metadata; reading it to count its lines", store.name, key)
    stream = store.get_stream(key)
    raw: Any = _HashingReader(stream)
    reader: Any = gzip.GzipFile(fileobj=raw, mode="rb") if key.endswith(".gz") else raw
    lines, last = 0, b"\n"
    try:
        while chunk := reader.read(_READ_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        while raw.read(_READ_CHUNK):  # anything after the gzip stream still counts in the hash
            pass
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(_named(f"s3://{store.name}/{key} is named .gz but is not valid gzip ({exc})",
                               store.connector, "topics.dir")) from None
    finally:
        stream.close()
    return lines + (last != b"\n"), raw.sha256.hexdigest()


__all__ = [
    "JSON_FORMAT", "MANIFEST_PREFIX", "S3_SINK", "TOPIC_ID_METADATA", "ObjectUpload", "S3AccessError", "S3Bucket",
    "S3Sink", "S3SinkResult", "S3UnavailableError", "default_s3_client", "is_stale", "manifest_key", "object_key",
    "remove_stale_objects", "topic_ids", "write_month_manifest",
]
