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
stored), ``first-offset`` and ``last-offset``.

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
checkpoint, so cuts stay where a re-run puts them). With ``none`` it stops its partition: the records before it are exported and checkpointed, the offset stays at the bad
record, the other partitions are exported to their end (so every cut stays at an offset a
re-run reproduces), and the run raises :class:`DataError` naming the record.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from airconnect.core import jsonexact
from airconnect.core.config import JSON_CONVERTER, ConnectorClass, ConnectorConfig, Key, check_timezone, register
from airconnect.core.deadletters import SinkDeadLetters, tolerates
from airconnect.core.failpoints import failpoint
from airconnect.core.parquet_format import CODECS, ParquetRows, ParquetSchema, schema_key
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.kafka_client import PartitionProgress, commit_group_offsets, read_to_end, sink_group_id
from airconnect.core.offsets import KeyValueStore, Offsets
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


class S3AccessError(PermanentError):
    """The bucket does not exist, or the credentials may not use it: a person has to fix that."""


class S3UnavailableError(TransientError):
    """S3 could not be reached, timed out or asked to slow down; retrying may succeed."""


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
    the bucket and the endpoint (:class:`S3AccessError`, :class:`S3UnavailableError`)."""

    def __init__(self, client: Any, name: str, *, credentials: str = "the AWS credentials"):
        self.client = client
        self.name = name
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
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            detail = f"{code}: {error.get('Message')}" if error.get("Message") else code
            if code == "NoSuchBucket" or (exc.operation_name == "HeadBucket" and code in ("404", "NotFound")):
                return S3AccessError(f"{doing}: the {where} does not exist; create it, or fix 's3.bucket.name'")
            if code in _DENIED:
                return S3AccessError(f"{doing}: access to the {where} was denied ({detail}); "
                                     f"check {self.credentials} and the bucket's policy")
            if status >= 500 or code in _BUSY:
                return S3UnavailableError(f"{doing}: S3 at {self.endpoint} failed ({detail}); retrying may succeed")
            return PermanentError(f"{doing}: S3 refused the request for the {where} ({detail})")
        if isinstance(exc, NoCredentialsError):
            return S3AccessError(f"{doing}: no credentials for the {where}; check {self.credentials}")
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            return S3UnavailableError(f"{doing}: S3 at {self.endpoint} could not be reached ({exc}); is it running?")
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


# --- one object being written --------------------------------------------------------------------


def object_key(topics_dir: str, topic: str, partition: int, year: int, month: int, start_offset: int, extension: str) -> str:
    """Kafka Connect's key: ``<dir>/<topic>/year=YYYY/month=MM/<topic>+<partition>+<offset:010d><ext>``."""
    return f"{month_prefix(topics_dir, topic, year, month)}{topic}+{partition}+{start_offset:010d}{extension}"


def month_prefix(topics_dir: str, topic: str, year: int, month: int) -> str:
    return f"{topics_dir.strip('/')}/{topic}/year={year:04d}/month={month:02d}/"


class ObjectUpload:
    """One object being written: lines stream into a buffer (gzip-compressed as they come when
    ``compress``), and each time the buffer reaches ``part_size`` it is uploaded as a part."""

    def __init__(self, bucket: S3Bucket, key: str, first_offset: int, *, compress: bool, part_size: int):
        self.bucket = bucket
        self.key = key
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
            self._upload_id = self.bucket.create_multipart(self.key, ContentType=self.content_type)
        self._parts.append(self.bucket.upload_part(self.key, self._upload_id, len(self._parts) + 1, bytes(self._buffer)))
        self._buffer.clear()
        failpoint("s3.part_uploaded")

    def metadata(self) -> dict[str, str]:
        return {"records": str(self.records), "sha256": self._sha256.hexdigest(),
                "first-offset": str(self.first_offset), "last-offset": str(self.last_offset)}

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
                 part_size: int):
        super().__init__(bucket, key, first_offset, compress=False, part_size=part_size)
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
            raise DataError(f"the value is not valid UTF-8 at byte {exc.start}") from None
        except ValueError as exc:
            raise DataError(f"the value is not JSON ({exc})") from None
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
            raise DataError("the record has no value (a tombstone); set behavior.on.null.values=ignore to skip such records")
        schema, doc = self._envelope(value)
        if schema is not None:  # a JsonConverter envelope
            if doc is None:
                if self.skip_null:
                    return None
                raise DataError("the envelope's payload is null; set behavior.on.null.values=ignore to skip such records")
        if not isinstance(doc, dict):
            raise DataError(f"the payload is a JSON {type(doc).__name__}, not an object: {jsonexact.dumps(doc)[:80]}")
        name = next((f for f in self.timestamp_fields if doc.get(f) is not None), None)
        if name is None:
            raise DataError(f"the payload has none of the timestamp.field fields {self.timestamp_fields} "
                            f"(its fields: {sorted(doc)[:20]})")
        try:
            when = jsonexact.parse_timestamp(doc[name]).astimezone(self.zone)
        except (ValueError, OverflowError) as exc:
            raise DataError(f"field {name!r} is not a timestamp ({exc})") from None
        line = (jsonexact.dumps(doc) + "\n").encode("utf-8")
        if not self.parquet:
            return line, (when.year, when.month), None, None
        if not isinstance(schema, dict):
            raise DataError("ParquetFormat needs each record's schema: the record is not a JsonConverter envelope "
                            "with a schema (set value.converter.schemas.enable=true where it is written)")
        key = schema_key(schema)
        pschema = self._schemas.get(key)
        if pschema is None:
            pschema = self._schemas[key] = ParquetSchema(schema)
        return line, (when.year, when.month), pschema.row(doc), pschema

    def run(self) -> S3SinkResult:
        client = self.s3_client if self.s3_client is not None else default_s3_client()
        bucket = S3Bucket(client, self.config["s3.bucket.name"],
                          credentials=f"the AWS connection '{self.config['aws.conn.id']}'")
        result = S3SinkResult(self.name, bucket.name)
        progress = Progress(log, f"connector '{self.name}' ({', '.join(self.topics)} -> s3://{bucket.name}/{self.topics_dir})")
        bucket.check()  # before consuming: a missing bucket or bad credentials touch no offset
        starts = self._start_offsets()
        dead = SinkDeadLetters(self.config, self.kafka, self.topics) if tolerates(self.config) else None
        partitions: dict[TopicAndPartition, PartitionProgress] = {}
        saved: dict[TopicAndPartition, int] = {}  # offsets as of the last checkpoint (else the run's start)
        since_checkpoint: Counter[TopicAndPartition] = Counter()
        open_objects: dict[tuple[str, int, int, int], ObjectUpload] = {}
        failures: dict[TopicAndPartition, tuple[int, str]] = {}  # partition -> (offset, what was wrong)
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
                    converted = self._line_and_month(msg.value())
                except DataError as exc:
                    if dead is None:
                        failures[tp] = (offset, str(exc))
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
                    obj = open_objects.get(okey)
                    if obj is not None and pschema is not None and obj.schema_key != pschema.key:
                        close(okey)  # the schema changed: a new object starts here (as Connect does)
                        obj = None
                    if obj is None:
                        key = object_key(self.topics_dir, topic, p, year, month, offset, self.extension)
                        obj = open_objects[okey] = (
                            ParquetUpload(bucket, key, offset, pschema, codec=self.codec, part_size=self.part_size)
                            if pschema is not None else
                            ObjectUpload(bucket, key, offset, compress=self.compress, part_size=self.part_size))
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
            for tp, (offset, _) in failures.items():
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
            raise DataError("; ".join(
                f"connector '{self.name}': record {t}[{p}]@{offset}: {what}. Records before it were exported; "
                f"the offset stays at {offset}"
                for (t, p), (offset, what) in sorted(failures.items())
            ) + ".")
        return result


# --- monthly manifest ----------------------------------------------------------------------------


def write_month_manifest(client: Any, bucket: str, topics_dir: str, topics: Iterable[str], year: int, month: int,
                         manifest_prefix: str = "manifests") -> dict[str, Any]:
    """List a month's objects of ``topics`` and write ``<manifest_prefix>/year=YYYY/month=MM/manifest.json``.

    The manifest holds, per topic, each object's key, size, records and sha256 (from the
    object's metadata; for an object written by something else, counted and hashed by reading
    it), and the totals. It is deterministic (sorted, no generation time): the same objects give
    a byte-identical manifest. Returns the manifest with its ``key``.
    """
    if not 1 <= month <= 12 or not 1 <= year <= 9999:
        raise ValueError(f"not a calendar month: {year}-{month}")
    store = S3Bucket(client, bucket)
    store.check()
    doc_topics: dict[str, Any] = {}
    for topic in sorted(set(topics)):
        objects = []
        for key, size in store.list_keys(month_prefix(topics_dir, topic, year, month)):
            meta = store.metadata(key)
            records, sha256 = meta.get("records", ""), meta.get("sha256", "")
            if not records.isdigit() or len(sha256) != 64:
                records, sha256 = _count_and_hash(store, key)
            objects.append({"key": key, "size": size, "records": int(records), "sha256": sha256})
        doc_topics[topic] = {"objects": objects, "records": sum(o["records"] for o in objects)}
    manifest = {
        "month": f"{year:04d}-{month:02d}",
        "topics": doc_topics,
        "records": sum(t["records"] for t in doc_topics.values()),
        "objects": sum(len(t["objects"]) for t in doc_topics.values()),
    }
    key = f"{manifest_prefix.strip('/')}/year={year:04d}/month={month:02d}/manifest.json"
    body = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    store.put(key, body, ContentType="application/json")
    log.info("wrote s3://%s/%s: %d objects, %d records", bucket, key, manifest["objects"], manifest["records"])
    return {"key": key, **manifest}


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
    raw = _HashingReader(stream)
    reader: Any = gzip.GzipFile(fileobj=raw, mode="rb") if key.endswith(".gz") else raw
    lines, last = 0, b"\n"
    try:
        while chunk := reader.read(_READ_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        while raw.read(_READ_CHUNK):  # anything after the gzip stream still counts in the hash
            pass
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"s3://{store.name}/{key} is named .gz but is not valid gzip ({exc})") from None
    finally:
        stream.close()
    return lines + (last != b"\n"), raw.sha256.hexdigest()


__all__ = [
    "JSON_FORMAT", "S3_SINK", "ObjectUpload", "S3AccessError", "S3Bucket", "S3Sink", "S3SinkResult",
    "S3UnavailableError", "default_s3_client", "object_key", "write_month_manifest",
]
