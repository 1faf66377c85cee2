"""Thin operators over airconnect's core: validate at parse time, run one pass, return counts.

Errors a retry cannot fix (a bad definition or offset, a record that cannot be converted)
fail the task without retries; broker outages raise and are retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseOperator

from airconnect.core.config import ConnectorConfig, validate
from airconnect.core.errors import PermanentError
from airconnect.core.runtime import run


class ConnectorOperator(BaseOperator):
    """Runs one bounded pass of a connector defined like a Kafka Connect connector.

    :param connector: the definition, ``{"name": ..., "config": {...}}`` as posted to Connect.
    :param kafka_config_id: Airflow connection to Kafka (default: the definition's
        ``kafka.conn.id``, else ``kafka_default``).
    """

    template_fields: Sequence[str] = ("connector",)
    ui_color = "#e8f0fe"
    expected_kind: str | None = None

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, kafka_config_id: str | None = None, **kwargs: Any):
        config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
        if self.expected_kind and config.kind != self.expected_kind:
            raise PermanentError(f"connector '{config.name}' is a {config.kind}; {type(self).__name__} runs {self.expected_kind}s")
        kwargs.setdefault("task_id", config.name)
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.kafka_config_id = kafka_config_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.hooks import VariableStore, kafka_config

        config = validate(self.connector)
        kafka = kafka_config(self.kafka_config_id or config["kafka.conn.id"])
        try:
            result = run(config, VariableStore(), kafka)
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("connector '%s': %s", config.name, result)
        return result


class FileSourceOperator(ConnectorOperator):
    """Delivers each new complete line of a file to a topic, exactly once.

    Guarantee: each batch of lines and its file position are committed to Kafka in one
    transaction; the position is then saved in the Airflow Variable. A run killed at any point
    and run again delivers every line once (read_committed consumers never see a batch twice).
    """

    expected_kind = "source"


class FileSinkOperator(ConnectorOperator):
    """Appends each new committed record's payload to a file, one line each, exactly once.

    Guarantee: the file is fsynced before offsets are saved; a run killed after writing but
    before saving truncates the file back to the saved length on its next run, so no line is
    written twice and none is lost.
    """

    expected_kind = "sink"
