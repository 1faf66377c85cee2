"""A connector's tasks as Airflow tasks: Kafka Connect's ``tasks.max`` on Airflow's executors.

:func:`connector_task` is what a DAG calls for each connector it runs. With ``tasks.max`` 1 it is
the connector's operator, one Airflow task named after the connector, as ever. Above 1 it is a
task group named after the connector::

    <name>.split    lists the tasks when the run starts (core.split.task_configs: tables dealt
                    into groups; a sink's topic-partitions dealt into groups)
    <name>.run      one mapped task instance per share (map index = Kafka Connect's task id),
                    which the executor spreads over its workers (Celery: any worker; Kubernetes:
                    one pod each)

Limits per connector, from its definition: ``airflow.max.active.tasks`` (Airflow's
``max_active_tis_per_dagrun``) and ``airflow.pool`` (the pool the tasks take their slots from).

:func:`connector_tasks` (:mod:`airconnect.task_status`) lists a connector's tasks in Kafka
Connect's ``ConnectorStateInfo`` shape (id, state, worker_id: the host that ran it), for the
REST API and the CLI.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseOperator

from airconnect.core.config import ConnectorConfig
from airconnect.core.registry import validate
from airconnect.operators import ConnectorOperator
from airconnect.task_status import RUN_TASK, SPLIT_TASK, connector_tasks, mapped, task_ids, task_states

__all__ = ["ConnectorSplitOperator", "connector_task", "connector_tasks", "mapped", "task_ids", "task_states",
           "worker_hostname"]

DEFAULT_POOL = "default_pool"
#: A worker's name as its task instances record it (``hostname``), when several workers share a
#: machine: ``AIRFLOW__CORE__HOSTNAME_CALLABLE=airconnect.tasks.worker_hostname`` and this variable.
WORKER_ENV = "AIRCONNECT_WORKER_HOSTNAME"


def worker_hostname() -> str:
    """``$AIRCONNECT_WORKER_HOSTNAME`` (e.g. the Celery worker's ``w1@host``), else the machine's name."""
    return os.environ.get(WORKER_ENV) or socket.getfqdn()


class ConnectorSplitOperator(BaseOperator):
    """Returns the connector's task configs for this run (an XCom list the mapped tasks expand over)."""

    ui_color = "#fdf6e3"

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, kafka_config_id: str | None = None,
                 **kwargs: Any):
        config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
        kwargs.setdefault("task_id", f"{config.name}-split")
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.kafka_config_id = kafka_config_id

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from airconnect.core.split import task_configs
        from airconnect.hooks import kafka_config

        config = validate(self.connector)
        kafka = kafka_config(self.kafka_config_id or config["kafka.conn.id"]) if config.kind == "sink" else None
        tasks = task_configs(config, kafka)
        self.log.info("connector '%s': %d task(s) (tasks.max=%d): %s", config.name, len(tasks), config["tasks.max"],
                      tasks)
        return tasks


def connector_task(config: ConnectorConfig, operator: type[ConnectorOperator] = ConnectorOperator,
                   **kwargs: Any) -> Any:
    """The connector's Airflow task(s), to wire with ``>>`` like any task: its operator (tasks.max 1),
    or a task group ``<name>`` of a split task and the mapped tasks that run the shares."""
    limits: dict[str, Any] = {}
    if config["airflow.pool"] != DEFAULT_POOL:
        limits["pool"] = config["airflow.pool"]
    if not mapped(config):
        return operator(connector=config, **limits, **kwargs)
    from airflow.sdk import TaskGroup

    if config["airflow.max.active.tasks"]:
        limits["max_active_tis_per_dagrun"] = config["airflow.max.active.tasks"]
    with TaskGroup(group_id=config.name, tooltip=f"{config.cls.name} '{config.name}': up to "
                   f"{config['tasks.max']} tasks") as group:
        split = ConnectorSplitOperator(task_id=SPLIT_TASK, connector=config,
                                       kafka_config_id=kwargs.get("kafka_config_id"))
        operator.partial(task_id=RUN_TASK, connector=config.definition(), **limits, **kwargs).expand(
            task_config=split.output)
    return group
