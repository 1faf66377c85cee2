"""The S3 sink's spec: its keys, formats and the checks across them."""

from __future__ import annotations

import logging
from typing import Any, Final

from airconnect.connectors.s3.parquet import CODECS
from airconnect.core.config import JSON_CONVERTER, ConnectorClass, ConnectorConfig, Key, check_timezone
from airconnect.core.errors import ConfigError

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
    for alias in str(cfg.raw.get("transforms") or "").split(","):
        type_key = f"transforms.{alias.strip()}.type"
        class_name = str(cfg.raw.get(type_key) or "")
        if class_name.rsplit(".", 1)[-1] in _ROUTERS:
            raise ConfigError(f"{class_name} routes records to other topics, which the S3 sink does not follow: its "
                              "folders, month manifests and offsets are those of the topic each record was read from "
                              "(route before the topic instead, in the source's transforms)", connector=cfg.name, key=type_key)


#: Transforms that change a record's topic (the S3 sink refuses them, see _check_s3_sink).
_ROUTERS: Final = ("RegexRouter", "TimestampRouter")


S3_SINK = ConnectorClass(
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
    runner=lambda config, store, kafka, s3_client=None: _sink()(config, store, kafka, s3_client),
    topics=lambda config: list(config["topics"]),
    resources=("s3_client",),
    splits_partitions=True,
)


def _sink() -> Any:
    from airconnect.connectors.s3.sink import S3Sink  # the runner's module imports this one

    return S3Sink
