"""Airflow adapters the connectors need: the Kafka connection's config, an S3 client, the Variable store."""

from __future__ import annotations

from typing import Any

_DESCRIPTION = "airconnect connector offsets (Kafka Connect's shape)"


def kafka_config(conn_id: str = "kafka_default") -> dict[str, Any]:
    """The librdkafka config of an Airflow Kafka connection (its extra), as the provider builds it."""
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    hook = KafkaBaseHook(kafka_config_id=conn_id)
    return dict(hook._build_config())


def s3_client(aws_conn_id: str) -> Any:
    """A boto3 S3 client from an Airflow AWS Connection (its extra may set ``endpoint_url``)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


def _in_task() -> bool:
    """True inside a running task, where Variables go through the Task SDK's supervisor."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


class VariableStore:
    """Offsets in Airflow Variables (a :class:`~airconnect.core.offsets.KeyValueStore`).

    Inside a task this goes through the Task SDK; elsewhere (the CLI, the REST plugin, tests)
    through the metadata database. (Outside a task the SDK's ``Variable.get`` only consults
    secrets backends and would silently answer ``None``.)
    """

    def get(self, key: str) -> str | None:
        if _in_task():
            from airflow.sdk import Variable

            return Variable.get(key, default=None)
        from airflow.models import Variable as DbVariable

        return DbVariable.get(key, default_var=None)

    def set(self, key: str, value: str) -> None:
        if _in_task():
            from airflow.sdk import Variable

            Variable.set(key, value, description=_DESCRIPTION)
        else:
            from airflow.models import Variable as DbVariable

            DbVariable.set(key, value, description=_DESCRIPTION)

    def delete(self, key: str) -> None:
        if _in_task():
            from airflow.sdk import Variable

            Variable.delete(key)
        else:
            from airflow.models import Variable as DbVariable

            DbVariable.delete(key)
