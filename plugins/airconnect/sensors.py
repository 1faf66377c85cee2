"""Sensors that wait for a source to have something new, deferring to the triggerer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk.bases.sensor import BaseSensorOperator

from airconnect.connectors.file.source import change_in, change_reason, file_entries, several
from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import ConfigError
from airconnect.core.manage import connector_topics
from airconnect.core.offsets import Offsets
from airconnect.core.registry import validate
from airconnect.triggers import FileChangeTrigger, TopicRecordsTrigger, new_records, topic_ends


class FileChangeSensor(BaseSensorOperator):
    """Waits until a file source's file has bytes beyond its stored position (a source of several
    files: until one of the files its list and patterns name now has, a new one included).

    Runs of the types in ``wait_in_run_types`` (the continuous schedule's ``scheduled`` runs)
    defer to :class:`FileChangeTrigger`; manual runs (the UI's trigger button,
    ``airflow dags test``) never wait: they run one pass over what is there now.
    """

    template_fields: Sequence[str] = ("connector",)
    ui_color = "#fff4e0"

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, poll_interval: float = 0.5,
                 max_wait: timedelta = timedelta(hours=1), wait_in_run_types: Sequence[str] = ("scheduled",),
                 **kwargs: Any):
        config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
        kwargs.setdefault("task_id", f"wait-{config.name}")
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.wait_in_run_types = tuple(wait_in_run_types)

    def _state(self) -> tuple[str, dict[str, Any] | None, dict[str, dict[str, Any]] | None]:
        """``(file, its offset, None)``, or for several files ``(file, None, offset by path)``."""
        from airconnect.hooks import VariableStore

        config = validate(self.connector)
        offsets = Offsets(VariableStore(), config.name)
        if several(config):
            return config["file"], None, {str(p["filename"]): o for p, o in offsets.items() if "filename" in p}
        return config["file"], offsets.get({"filename": config["file"]}), None

    @staticmethod
    def _change(path: str, offset: dict[str, Any] | None,
                offsets: dict[str, dict[str, Any]] | None) -> tuple[str, str] | None:
        if offsets is not None:
            return change_in(file_entries(path), offsets)
        reason = change_reason(path, offset)
        return (path, reason) if reason else None

    def poke(self, context: Any) -> bool:
        return self._change(*self._state()) is not None

    def execute(self, context: Any) -> str | None:
        path, offset, offsets = self._state()
        change = self._change(path, offset, offsets)
        if change:
            self.log.info("%s %s since the last run", *change)
            return change[1]
        run_type = str(getattr(context.get("dag_run"), "run_type", "") or "")
        if run_type.split(".")[-1].lower() not in self.wait_in_run_types:
            self.log.info("nothing new in %s; a %s run does not wait", path, run_type or "manual")
            return None
        if offsets is None:
            self.log.info("waiting for %s to grow past byte %s (deferred to the triggerer)", path,
                          (offset or {}).get("position", 0))
        else:
            self.log.info("waiting for one of the files %s names to grow or appear (deferred to the triggerer)", path)
        self.defer(
            trigger=FileChangeTrigger(path=path, offset=offset, offsets=offsets, poll_interval=self.poll_interval,
                                      max_wait=(self.max_wait or timedelta(hours=1)).total_seconds(), end_task=True),
            method_name="execute_complete",  # (for triggers deferred by an earlier version)
        )
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str | None:
        reason = (event or {}).get("reason")
        self.log.info("%s: %s", (event or {}).get("path"), reason or f"no change within {self.max_wait}")
        return reason


class TopicRecordsSensor(BaseSensorOperator):
    """Waits until a sink's topics hold committed records beyond the sink's saved positions.

    Like :class:`FileChangeSensor`: runs of the types in ``wait_in_run_types`` defer to
    :class:`~airconnect.triggers.TopicRecordsTrigger`; other runs never wait.
    """

    template_fields: Sequence[str] = ("connector",)
    ui_color = "#fff4e0"

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, poll_interval: float = 1.0,
                 max_wait: timedelta = timedelta(hours=1), wait_in_run_types: Sequence[str] = ("scheduled",),
                 **kwargs: Any):
        config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
        if config.kind != "sink":
            raise ConfigError(f"is a {config.kind}; {type(self).__name__} waits for a sink's records",
                              connector=config.name, key="connector.class")
        kwargs.setdefault("task_id", f"wait-{config.name}")
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.wait_in_run_types = tuple(wait_in_run_types)

    def _state(self) -> tuple[dict[str, Any], list[str], dict[str, int]]:
        from airconnect.hooks import VariableStore, kafka_config

        config = validate(self.connector)
        positions = {f"{p['kafka_topic']}:{p['kafka_partition']}": o["kafka_offset"]
                     for p, o in Offsets(VariableStore(), config.name).items()
                     if "kafka_topic" in p and isinstance(o.get("kafka_offset"), int)}
        kafka = kafka_config(config["kafka.conn.id"])
        return kafka, connector_topics(config, kafka), positions  # (a topics.regex sink's: the cluster's matching ones)

    def poke(self, context: Any) -> bool:
        kafka, topics, positions = self._state()
        return new_records(topic_ends(kafka, topics), positions) > 0

    def execute(self, context: Any) -> int | None:
        kafka, topics, positions = self._state()
        records = new_records(topic_ends(kafka, topics), positions)
        if records:
            self.log.info("%d new offset(s) on %s", records, ", ".join(topics))
            return records
        run_type = str(getattr(context.get("dag_run"), "run_type", "") or "")
        if run_type.split(".")[-1].lower() not in self.wait_in_run_types:
            self.log.info("nothing new on %s; a %s run does not wait", ", ".join(topics), run_type or "manual")
            return None
        self.log.info("waiting for records on %s (deferred to the triggerer)", ", ".join(topics))
        self.defer(
            trigger=TopicRecordsTrigger(kafka=kafka, topics=topics, positions=positions, poll_interval=self.poll_interval,
                                        max_wait=(self.max_wait or timedelta(hours=1)).total_seconds(), end_task=True),
            method_name="execute_complete",
        )
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> int | None:
        return (event or {}).get("records")
