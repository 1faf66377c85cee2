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

:func:`task_states` lists a connector's tasks in Kafka Connect's ``ConnectorStateInfo`` shape
(id, state, worker_id: the host that ran it), for the REST API and the CLI.
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

SPLIT_TASK = "split"
RUN_TASK = "run"
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


def mapped(config: ConnectorConfig) -> bool:
    """Whether the connector runs as a split (tasks.max above 1)."""
    return bool(config["tasks.max"] > 1)


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


def task_ids(config: ConnectorConfig) -> tuple[str, str | None]:
    """``(the task id that runs the connector, the id of its split task or None)``."""
    if mapped(config):
        return f"{config.name}.{RUN_TASK}", f"{config.name}.{SPLIT_TASK}"
    return config.name, None


#: Airflow task instance states -> Kafka Connect's task states.
_STATES = {
    "running": "RUNNING", "success": "RUNNING", "queued": "RUNNING", "scheduled": "RUNNING",
    "up_for_retry": "RUNNING", "restarting": "RESTARTING", "deferred": "RUNNING", "up_for_reschedule": "RUNNING",
    "failed": "FAILED", "upstream_failed": "FAILED",
}


def connector_tasks(config: ConnectorConfig, dag_id: str, connector: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``tasks`` of Kafka Connect's ``ConnectorStateInfo`` (``GET /connectors/NAME/status``):
    ``[{"id": 0, "state": ..., "worker_id": ...}, ...]``. A connector of one task: task 0 with the
    connector's state (``connector``: its ``{"state", "worker_id", "trace"?}``). A split one: each
    mapped task instance of its DAG's latest run, id = map index, ``worker_id`` = the host that ran
    it (``TaskInstance.hostname``), state from the instance (all PAUSED while the connector is)."""
    found = task_states(config, dag_id, str(connector.get("worker_id", ""))) if mapped(config) and dag_id else None
    if not found:
        return [{"id": 0, **connector}]
    if connector.get("state") == "PAUSED":
        return [{**t, "state": "PAUSED"} for t in found]
    return found


def task_states(config: ConnectorConfig, dag_id: str, worker_id: str = "") -> list[dict[str, Any]] | None:
    """Each mapped task instance of the connector in its DAG's latest run that ran it (see
    :func:`connector_tasks`); ``None`` before its first run. Read from Airflow's metadata database
    (the REST API and the CLI run beside it)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    run_id, _ = task_ids(config)
    with create_session() as session:
        latest = (session.query(TaskInstance.run_id)
                  .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == run_id,
                          TaskInstance.start_date.is_not(None))
                  .order_by(TaskInstance.start_date.desc()).first())
        if latest is None:
            return None
        tis = (session.query(TaskInstance)
               .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == run_id,
                       TaskInstance.run_id == latest[0])
               .order_by(TaskInstance.map_index).all())
        tasks = []
        for ti in tis:
            state = _STATES.get(str(getattr(ti.state, "value", ti.state) or ""), "UNASSIGNED")
            entry: dict[str, Any] = {"id": max(ti.map_index, 0), "state": state,
                                     "worker_id": ti.hostname or worker_id}
            if state == "FAILED":
                entry["trace"] = (f"the Airflow task {ti.task_id}[{ti.map_index}] of run {ti.run_id} failed "
                                  f"(try {ti.try_number}); see its log")
            tasks.append(entry)
        return tasks
