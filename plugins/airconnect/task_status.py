"""A connector's tasks as Airflow runs them, for the REST API's status and the CLI: Kafka
Connect's ``ConnectorStateInfo`` tasks (id, state, worker_id) from Airflow's task instances.
No Task SDK import here: the API server and the CLI load it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airconnect.core.config import ConnectorConfig

SPLIT_TASK = "split"
RUN_TASK = "run"


def mapped(config: ConnectorConfig) -> bool:
    """Whether the connector runs as a split (tasks.max above 1)."""
    return bool(config["tasks.max"] > 1)


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
