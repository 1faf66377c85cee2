"""Writing to S3: the bucket with errors that name the key, a topic's life (its id), one object being
(multipart-)uploaded, as JSON lines or Parquet."""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from airconnect.connectors.s3.parquet import ParquetRows, ParquetSchema
from airconnect.connectors.s3.spec import _GZIP_WBITS, TOPIC_ID_METADATA
from airconnect.core.errors import ConfigError, DataError, KafkaUnavailableError, TransientError
from airconnect.core.failpoints import failpoint
from airconnect.core.kafka_client import (
    client_config,
    kafka_error,
)

log = logging.getLogger(__name__)


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
