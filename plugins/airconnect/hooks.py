"""Airflow adapters the connectors need: the Kafka connection's config and the Variable store."""

from __future__ import annotations

from typing import Any


def kafka_config(conn_id: str = "kafka_default") -> dict[str, Any]:
    """The librdkafka config of an Airflow Kafka connection (its extra), as the provider builds it."""
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    hook = KafkaBaseHook(kafka_config_id=conn_id)
    return dict(hook._build_config())


class VariableStore:
    """Offsets in Airflow Variables (a :class:`~airconnect.core.offsets.KeyValueStore`).

    Inside a task this goes through the Task SDK; elsewhere (CLI, tests) through the metadata DB.
    """

    def get(self, key: str) -> str | None:
        try:
            from airflow.sdk import Variable

            return Variable.get(key, default=None)
        except (ImportError, RuntimeError):
            from airflow.models import Variable as DbVariable

            return DbVariable.get(key, default_var=None)

    def set(self, key: str, value: str) -> None:
        try:
            from airflow.sdk import Variable

            Variable.set(key, value, description="airconnect connector offsets (Kafka Connect's shape)")
        except (ImportError, RuntimeError):
            from airflow.models import Variable as DbVariable

            DbVariable.set(key, value, description="airconnect connector offsets (Kafka Connect's shape)")
