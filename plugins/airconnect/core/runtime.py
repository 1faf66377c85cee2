"""Runs a connector by definition: the one entry point the Airflow glue, the CLI and the tests share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airconnect.core.config import ConnectorConfig
from airconnect.core.delivery import RUNNING
from airconnect.core.offsets import KeyValueStore
from airconnect.core.registry import validate


def build(definition: Mapping[str, Any] | ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
          **resources: Any) -> Any:
    """The connector's runner, from its spec. ``resources`` are what its class needs besides Kafka
    (its spec's ``resources``): ``connect`` (a DB-API connection factory) for the JDBC source,
    ``s3_client`` (boto3) for the S3 sink."""
    config = definition if isinstance(definition, ConnectorConfig) else validate(definition)
    return config.cls.runner(config, store, kafka, **resources)


def run(definition: Mapping[str, Any] | ConnectorConfig, store: KeyValueStore, kafka: Mapping[str, Any],
        **resources: Any) -> dict[str, Any]:
    """Run one pass of a connector; return its JSON-able result (counts, offsets). Its deliveries
    apply its single message transforms (:data:`~airconnect.core.delivery.RUNNING`)."""
    config = definition if isinstance(definition, ConnectorConfig) else validate(definition)
    token = RUNNING.set(config)
    try:
        return build(config, store, kafka, **resources).run().as_dict()
    finally:
        RUNNING.reset(token)
