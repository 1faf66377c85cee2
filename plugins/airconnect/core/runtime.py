"""Runs a connector by definition: the one entry point the Airflow glue, the CLI and the tests share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airconnect.core.config import ConnectorConfig, validate
from airconnect.core.file_sink import FILE_SINK, FileSink
from airconnect.core.file_source import FILE_SOURCE, FileSource
from airconnect.core.offsets import KeyValueStore

_RUNNERS = {FILE_SOURCE.name: FileSource, FILE_SINK.name: FileSink}


def build(definition: Mapping[str, Any] | ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any]) -> Any:
    config = definition if isinstance(definition, ConnectorConfig) else validate(definition)
    return _RUNNERS[config.cls.name](config, store, kafka)


def run(definition: Mapping[str, Any] | ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any]) -> dict[str, Any]:
    """Run one pass of a connector; return its JSON-able result (counts, offsets)."""
    return build(definition, store, kafka).run().as_dict()
