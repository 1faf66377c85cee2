"""Runs a connector by definition: the one entry point the Airflow glue, the CLI and the tests share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airconnect.core.config import ConnectorConfig, validate
from airconnect.core.file_sink import FILE_SINK, FileSink
from airconnect.core.file_source import FILE_SOURCE, FileSource
from airconnect.core.jdbc_source import JDBC_SOURCE, JdbcSource
from airconnect.core.offsets import KeyValueStore
from airconnect.core.s3_sink import S3_SINK, S3Sink

_RUNNERS = {FILE_SOURCE.name: FileSource, FILE_SINK.name: FileSink, JDBC_SOURCE.name: JdbcSource, S3_SINK.name: S3Sink}


def build(definition: Mapping[str, Any] | ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
          **resources: Any) -> Any:
    """The connector's runner. ``resources`` are what its class needs besides Kafka: ``connect``
    (a DB-API connection factory) for the JDBC source, ``s3_client`` (boto3) for the S3 sink."""
    config = definition if isinstance(definition, ConnectorConfig) else validate(definition)
    return _RUNNERS[config.cls.name](config, store, kafka, **resources)


def run(definition: Mapping[str, Any] | ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
        **resources: Any) -> dict[str, Any]:
    """Run one pass of a connector; return its JSON-able result (counts, offsets)."""
    return build(definition, store, kafka, **resources).run().as_dict()
