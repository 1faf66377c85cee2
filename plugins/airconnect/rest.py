"""Kafka Connect's REST API, served by the Airflow API server at ``/airconnect``.

The paths and response shapes are Kafka Connect's (``GET /connectors``,
``GET /connectors/<name>/status``, ``PUT /connectors/<name>/pause``, KIP-875 offsets, ...), so
Connect's tooling and habits work against Airflow::

    TOKEN=$(curl -s -X POST localhost:8080/auth/token -H 'Content-Type: application/json' \\
            -d '{"username": "admin", "password": "admin"}' | jq -r .access_token)
    curl -H "Authorization: Bearer $TOKEN" localhost:8080/airconnect/connectors?expand=status

A connector is a task of the DAG that runs it (see :func:`dag_of`): pausing a connector pauses
its DAG, restarting it triggers a DAG run, its state comes from the DAG and the task's last
run. Connectors are defined by files (``$AIRCONNECT_CONNECTORS_DIR``), so there is no
``POST``/``PUT .../config``/``DELETE /connectors/<name>``.

Authentication and authorization are Airflow's own: every request goes through
:func:`check_access`, which resolves the user with Airflow's ``get_user`` (a JWT in the
``Authorization: Bearer`` header, or the UI's cookie) and asks the auth manager through
``requires_access_dag`` for access to the connector's DAG. Tests replace that one dependency:
``app.dependency_overrides[check_access] = lambda: None``.

Airflow's modules are imported inside the functions: this module is imported by every Airflow
process that loads plugins (the scheduler, each task), and only the API server serves it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

import airconnect
from airconnect.core import manage
from airconnect.core.config import COMMON_KEYS, ConnectorClass, ConnectorConfig, coerce, substitute_env
from airconnect.core.errors import AirconnectError, ConfigError, OffsetError, RedeliveryRefused, TransientError
from airconnect.core.registry import connector_classes, lookup_class, read_definitions, validate

log = logging.getLogger(__name__)

WORKER_ID = "airflow"

#: Which DAG runs which connector class, as the DAGs in dags/ build them. Used for a connector
#: no parsed DAG has a task for yet (see :func:`dag_of`).
DAG_OF_CLASS: dict[str, str] = {
    "airconnect.FileSource": "inventory_sync",
    "airconnect.FileSink": "inventory_sync",
    "airconnect.JdbcSource": "monthly_forecast_export",
    "airconnect.S3Sink": "monthly_forecast_export",
}


class ConnectError(Exception):
    """An error answered in Kafka Connect's shape: ``{"error_code": 404, "message": "..."}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- authentication and authorization: Airflow's ---------------------------------------------

_bearer = HTTPBearer(auto_error=False)


def _method(request: Request) -> tuple[Literal["GET", "POST", "PUT", "DELETE"], Any]:
    """The DAG permission a request needs: reads need GET, pausing PUT, a restart creates a run."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    path = request.url.path
    if request.method == "GET" or path.endswith("/config/validate"):
        return "GET", None
    if request.method == "POST" and path.endswith("/restart"):
        return "POST", DagAccessEntity.RUN
    return "PUT", None  # pause, resume, altering or resetting offsets change the DAG's state


async def check_access(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    """Airflow's authentication (``get_user``) and DAG authorization (``requires_access_dag``).

    Unauthenticated requests get 401 (no token) or 403 (a bad token); a connector of a DAG the
    user may not read answers 404 as if it did not exist (``GET /connectors`` leaves it out, see
    :func:`visible_connectors`); one the user may read but not change answers 403 to a change.
    Every refusal is in Connect's shape. Overridden in tests through ``dependency_overrides``.
    """
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    user = await get_user(request, _oauth_token=None, bearer_credentials=bearer)
    request.state.airconnect_user = user
    dag_id = None
    name = request.path_params.get("name")
    if name:
        defs = _definitions()
        if name in defs:
            dag_id = dag_of(defs[name]) or None
    if dag_id is not None:
        # A connector of a DAG the user may not read does not exist for them (it is not listed
        # either): Connect's 404, the same as for an unknown name.
        try:
            requires_access_dag("GET", param_dag_id=dag_id)(request, user)
        except HTTPException as exc:
            if exc.status_code == 403:
                raise ConnectError(404, f"Connector {name} not found") from None
            raise
    method, entity = _method(request)
    requires_access_dag(method, entity, param_dag_id=dag_id)(request, user)


app = FastAPI(
    title="airconnect",
    description="Kafka Connect's REST API for the connectors Airflow runs (airconnect).",
    version=airconnect.__version__,
    dependencies=[Depends(check_access)],
)


@app.exception_handler(ConnectError)
async def _connect_error(_request: Request, exc: ConnectError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={"error_code": exc.status, "message": exc.message})


@app.exception_handler(StarletteHTTPException)
async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Airflow's refusals (401, 403) and unknown paths in Connect's shape too, with their headers."""
    return JSONResponse(status_code=exc.status_code, content={"error_code": exc.status_code, "message": str(exc.detail)},
                        headers=exc.headers)


@app.exception_handler(AirconnectError)
async def _airconnect_error(_request: Request, exc: AirconnectError) -> JSONResponse:
    status = 503 if isinstance(exc, TransientError) else 400 if isinstance(exc, (OffsetError, ConfigError)) else 500
    return JSONResponse(status_code=status, content={"error_code": status, "message": str(exc)})


# --- connectors, their DAGs and their state --------------------------------------------------


def _definitions() -> dict[str, ConnectorConfig]:
    """The valid definitions; an invalid one is left out here (and named by :func:`_connector`)."""
    found = read_definitions()
    for exc in found.errors:
        log.warning("connector definition left out: %s", exc)
    return found.by_name()


def _connector(name: str) -> ConnectorConfig:
    found = read_definitions()
    defs = found.by_name()
    if name not in defs:
        error = found.error_of(name)
        if error is not None:  # defined, but invalid: say why (400), not "not found"
            raise error
        raise ConnectError(404, f"Connector {name} not found")
    return defs[name]


def dag_of(config: ConnectorConfig) -> str:
    """The DAG that runs ``config``: the one place that maps connectors to DAGs.

    The operators use the connector's name as task id, so a parsed DAG (tagged ``airconnect``)
    with a task of that id runs it; a connector no parsed DAG has yet (a new definition, before
    the DAG processor's next pass) maps by its class, as the DAGs in dags/ select them.
    """
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_ids = session.scalars(
            select(DagModel.dag_id).join(DagTag, DagTag.dag_id == DagModel.dag_id)
            .where(DagTag.name == "airconnect", DagModel.is_stale.is_(False)).order_by(DagModel.dag_id)
        ).all()
        bag = DBDagBag()
        for dag_id in dag_ids:
            dag = bag.get_latest_version_of_dag(dag_id, session=session)
            if dag is not None and config.name in dag.task_dict:
                return dag_id
    return DAG_OF_CLASS.get(config.cls.name, "")


def _dag_state(dag_id: str) -> dict[str, Any]:
    """Whether the DAG exists and is paused, and whether a run of it is queued or running."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import func, select

    with create_session() as session:
        dm = session.get(DagModel, dag_id)
        active = session.scalar(
            select(func.count()).select_from(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]))
        )
        return {"exists": dm is not None and not dm.is_stale, "paused": bool(dm and dm.is_paused), "active_runs": active or 0}


def _last_task_instance(dag_id: str, task_id: str) -> dict[str, Any] | None:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TI).where(TI.dag_id == dag_id, TI.task_id == task_id, TI.start_date.is_not(None))
            .order_by(TI.start_date.desc()).limit(1)
        ).first()
        if ti is None:
            return None
        return {"state": ti.state, "run_id": ti.run_id, "try_number": ti.try_number, "map_index": ti.map_index,
                "retry_reason": getattr(ti, "retry_reason", None)}


def _last_error(dag_id: str, task_id: str, ti: dict[str, Any]) -> str | None:
    """The last error the task's log file holds (Airflow 3 writes JSON lines), if it is local."""
    from airflow.configuration import conf

    base = Path(conf.get("logging", "base_log_folder"))
    folder = base / f"dag_id={dag_id}" / f"run_id={ti['run_id']}" / f"task_id={task_id}"
    if ti["map_index"] >= 0:
        folder = folder / f"map_index={ti['map_index']}"
    path = folder / f"attempt={ti['try_number']}.log"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") not in ("error", "critical"):
            continue
        details = entry.get("error_detail") or []
        excs = [f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details if isinstance(d, dict)]
        return "\n".join([str(entry.get("event", "")), *excs]).strip()
    return None


def connector_status(config: ConnectorConfig) -> dict[str, Any]:
    """``GET /connectors/<name>/status`` from the DAG: paused, the task's last run failed, or running."""
    dag_id = dag_of(config)
    dag = _dag_state(dag_id) if dag_id else {"exists": False, "paused": False}
    trace = None
    if not dag["exists"]:
        state = "UNASSIGNED"
        trace = f"no DAG runs this connector yet (expected DAG {dag_id!r}; is the DAG processor running?)"
    elif dag["paused"]:
        state = "PAUSED"
    else:
        ti = _last_task_instance(dag_id, config.name)
        if ti is not None and ti["state"] in ("failed", "upstream_failed"):
            state = "FAILED"
            trace = (_last_error(dag_id, config.name, ti) or ti.get("retry_reason")
                     or f"task {config.name} of DAG run {ti['run_id']} failed (try {ti['try_number']}); see its log")
        else:
            state = "RUNNING"
    part: dict[str, Any] = {"state": state, "worker_id": WORKER_ID}
    if trace:
        part["trace"] = trace
    return {"name": config.name, "connector": dict(part), "tasks": [{"id": 0, **part}], "type": config.kind,
            "dag_id": dag_id}


def connector_info(config: ConnectorConfig) -> dict[str, Any]:
    """``GET /connectors/<name>``."""
    return {**config.definition(), "tasks": [{"connector": config.name, "task": 0}], "type": config.kind}


def _kafka(config: ConnectorConfig | None = None) -> dict[str, Any]:
    from airconnect.hooks import kafka_config

    return kafka_config(config["kafka.conn.id"] if config is not None else "kafka_default")


# --- endpoints --------------------------------------------------------------------------------


@app.get("/")
def root() -> dict[str, Any]:
    cluster_id = None
    try:
        from confluent_kafka.admin import AdminClient

        from airconnect.core.kafka_client import client_config

        cluster_id = AdminClient(client_config(_kafka())).list_topics(timeout=5).cluster_id
    except Exception as exc:  # noqa: BLE001 - Kafka down or no connection: Connect's shape says null
        log.info("airconnect REST: Kafka cluster id unavailable: %s", exc)
    return {"version": airconnect.__version__, "commit": "", "kafka_cluster_id": cluster_id}


@app.get("/connector-plugins")
def connector_plugins() -> list[dict[str, str]]:
    plugins = []
    for cls in connector_classes():
        for name in (*cls.aliases, cls.name):
            plugins.append({"class": name, "type": cls.kind, "version": airconnect.__version__})
    return plugins


_GROUP_COMMON = "Common"


def _definition(key: Any, group: str, order: int) -> dict[str, Any]:
    from airconnect.core.config import REQUIRED

    type_map = {"string": "STRING", "path": "STRING", "topic": "STRING", "int": "INT", "bool": "BOOLEAN", "list": "LIST"}
    default = None if key.default is REQUIRED else key.default
    if isinstance(default, bool):
        default = "true" if default else "false"
    elif isinstance(default, list):
        default = ",".join(default)
    elif default is not None:
        default = str(default)
    return {"name": key.name, "type": type_map.get(key.type, "STRING"), "required": key.required,
            "default_value": default, "importance": "HIGH" if key.required else "MEDIUM",
            "documentation": key.doc, "group": group, "width": "NONE", "display_name": key.name,
            "dependents": [], "order": order}


def _bare(exc: ConfigError) -> str:
    """A ConfigError's message without the ``connector '..', key '..': `` prefix."""
    return re.sub(r"^(connector '[^']*'(, )?)?(key '[^']*')?: ", "", str(exc))


def validate_config(cls: ConnectorClass, config: dict[str, Any]) -> dict[str, Any]:
    """``PUT /connector-plugins/<type>/config/validate``: every key with its errors, Connect's shape."""
    name = str(config.get("name") or "connector")
    raw = {k: v for k, v in config.items() if k != "name"}
    keys = cls.all_keys()
    errors: dict[str, list[str]] = {k: [] for k in keys}
    common = {k.name for k in COMMON_KEYS}
    for k, v in raw.items():
        if k in keys:
            if v is None or v == "":
                continue
            try:
                coerce(keys[k], substitute_env(v, name, k), name)
            except ConfigError as exc:
                errors[k].append(_bare(exc))
        elif not k.startswith(("transforms", "predicates", "consumer.override.", "producer.override.")):
            errors[k] = [f"is not a key of {cls.name}"]
    for k, key in keys.items():
        if key.required and (raw.get(k) is None or raw.get(k) == ""):
            errors[k].append(f'Missing required configuration "{k}" which has no default value.')
    if not any(errors.values()):
        try:
            validate({"name": name, "config": {**raw, "connector.class": raw.get("connector.class") or cls.name}})
        except ConfigError as exc:
            errors.setdefault(exc.key or "connector.class", []).append(_bare(exc))
    configs = []
    for order, k in enumerate(list(keys) + [k for k in errors if k not in keys], start=1):
        declared = keys.get(k)
        value = raw.get(k)
        configs.append({
            "definition": _definition(declared, _GROUP_COMMON if k in common else cls.name, order) if declared else
            {"name": k, "type": "STRING", "required": False, "default_value": None, "importance": "LOW",
             "documentation": "", "group": cls.name, "width": "NONE", "display_name": k, "dependents": [], "order": order},
            "value": {"name": k, "value": None if value is None else str(value).lower() if isinstance(value, bool) else str(value),
                      "recommended_values": list(declared.choices) if declared and declared.choices else [],
                      "errors": errors.get(k, []), "visible": True},
        })
    return {"name": cls.name, "error_count": sum(len(e) for e in errors.values()),
            "groups": [_GROUP_COMMON, cls.name], "configs": configs}


@app.put("/connector-plugins/{plugin}/config/validate")
def validate_plugin_config(plugin: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        cls = lookup_class(plugin, "validate")
    except ConfigError:
        raise ConnectError(404, f"Unknown connector plugin {plugin}") from None
    given = config.get("connector.class")
    if isinstance(given, str) and _known(given) and lookup_class(given, "validate") is not cls:
        raise ConnectError(400, f"connector.class {given!r} does not match the plugin {plugin!r} in the path")
    return validate_config(cls, {**config, "connector.class": given or plugin})


def _known(class_name: str) -> bool:
    try:
        lookup_class(class_name, "validate")
        return True
    except ConfigError:
        return False


def visible_connectors(request: Request) -> dict[str, ConnectorConfig]:
    """The valid definitions whose DAG the requesting user may read (Airflow's auth manager).

    A connector whose DAG is not known yet (no parsed DAG runs it, no class mapping) stays
    visible to anyone check_access let through. Without a user (check_access overridden in
    tests) every definition is visible.
    """
    defs = _definitions()
    user = getattr(request.state, "airconnect_user", None)
    if user is None or not defs:
        return defs
    from airflow.api_fastapi.app import get_auth_manager

    dag_ids = {name: dag_of(config) for name, config in defs.items()}
    readable = get_auth_manager().filter_authorized_dag_ids(dag_ids={d for d in dag_ids.values() if d}, user=user, method="GET")
    return {name: config for name, config in defs.items() if not dag_ids[name] or dag_ids[name] in readable}


@app.get("/connectors", response_model=None)
def list_connectors(request: Request) -> list[str] | dict[str, Any]:
    defs = visible_connectors(request)
    expand = request.query_params.getlist("expand")
    if not expand:
        return sorted(defs)
    out: dict[str, Any] = {}
    for name in sorted(defs):
        out[name] = {}
        if "status" in expand:
            status = connector_status(defs[name])
            status.pop("dag_id", None)
            out[name]["status"] = status
        if "info" in expand:
            out[name]["info"] = connector_info(defs[name])
    return out


@app.get("/connectors/{name}")
def get_connector(name: str) -> dict[str, Any]:
    return connector_info(_connector(name))


@app.get("/connectors/{name}/config")
def get_connector_config(name: str) -> dict[str, str]:
    return _connector(name).definition()["config"]


@app.get("/connectors/{name}/status")
def get_connector_status(name: str) -> dict[str, Any]:
    return connector_status(_connector(name))


@app.get("/connectors/{name}/tasks")
def get_connector_tasks(name: str) -> list[dict[str, Any]]:
    config = _connector(name)
    return [{"id": {"connector": name, "task": 0}, "config": config.definition()["config"]}]


@app.get("/connectors/{name}/topics")
def get_connector_topics(name: str) -> dict[str, Any]:
    return {name: {"topics": _connector(name).topics}}


def _set_paused(config: ConnectorConfig, paused: bool) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    dag_id = dag_of(config)
    with create_session() as session:
        dm = session.get(DagModel, dag_id) if dag_id else None
        if dm is None:
            raise ConnectError(409, f"Connector {config.name}: its DAG {dag_id!r} has not been parsed yet")
        dm.is_paused = paused


@app.put("/connectors/{name}/pause", status_code=202)
def pause_connector(name: str) -> Response:
    _set_paused(_connector(name), True)
    return Response(status_code=202)


@app.put("/connectors/{name}/resume", status_code=202)
def resume_connector(name: str) -> Response:
    _set_paused(_connector(name), False)
    return Response(status_code=202)


@app.post("/connectors/{name}/restart", status_code=202)
def restart_connector(name: str, request: Request) -> dict[str, Any]:
    """A restart is a new run of the connector's DAG (Connect answers 202 with the status)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    config = _connector(name)
    dag_id = dag_of(config)
    user = getattr(request.state, "airconnect_user", None)
    try:
        run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.REST_API,
                          triggering_user_name=getattr(user, "get_name", lambda: None)() or "airconnect")
    except DagNotFound:
        raise ConnectError(409, f"Connector {name}: its DAG {dag_id!r} has not been parsed yet") from None
    except DagRunAlreadyExists as exc:
        raise ConnectError(409, f"Connector {name}: {exc}") from None
    status = connector_status(config)
    status["dag_run_id"] = run.run_id if run is not None else None
    return status


def _refuse_while_running(config: ConnectorConfig) -> None:
    dag_id = dag_of(config)
    state = _dag_state(dag_id) if dag_id else {"active_runs": 0}
    if state["active_runs"]:
        raise ConnectError(409, (
            f"Connectors must be in the STOPPED state before their offsets can be modified: DAG {dag_id!r} of "
            f"connector {config.name} has {state['active_runs']} queued or running run(s). Pause the connector "
            f"(PUT /connectors/{config.name}/pause) and wait for the run to end."))


@app.get("/connectors/{name}/offsets")
def get_connector_offsets(name: str) -> dict[str, Any]:
    from airconnect.hooks import VariableStore

    config = _connector(name)
    doc = manage.get_offsets(config, VariableStore())
    if config.kind == "sink":
        group: dict[str, Any] = {"group_id": manage.sink_group(config)}
        try:
            group["offsets"] = manage.group_offsets(config, _kafka(config))
        except Exception as exc:  # noqa: BLE001 - the Variable's offsets still answer
            group["error"] = str(exc)
        doc["consumer_group"] = group
    return doc


@app.delete("/connectors/{name}/offsets")
def reset_connector_offsets(name: str, redeliver: bool = False) -> dict[str, Any]:
    """KIP-875's reset. One that would deliver again into topics (or a file) still holding those
    records answers 409 unless ``?redeliver=true`` says it is meant."""
    from airconnect.hooks import VariableStore

    config = _connector(name)
    _refuse_while_running(config)
    try:
        return manage.reset_offsets(config, VariableStore(), _kafka(config), redeliver=redeliver)
    except RedeliveryRefused as exc:
        raise ConnectError(409, str(exc)) from None


@app.patch("/connectors/{name}/offsets")
def alter_connector_offsets(name: str, body: dict[str, Any]) -> dict[str, Any]:
    from airconnect.hooks import VariableStore

    config = _connector(name)
    manage.check_offsets_document(config, body)  # a malformed body is a 400 even while running
    _refuse_while_running(config)
    return manage.set_offsets(config, VariableStore(), body, _kafka(config) if config.kind == "sink" else None)


@app.get("/connectors/{name}/lag")
def get_connector_lag(name: str) -> dict[str, Any]:
    """airconnect's addition: a sink's consumer lag per topic-partition."""
    from airconnect.hooks import VariableStore

    config = _connector(name)
    if config.kind != "sink":
        raise ConnectError(400, f"Connector {name} is a source: only sinks have a consumer lag")
    rows = manage.sink_lag(config, VariableStore(), _kafka(config))
    return {"name": name, "group_id": manage.sink_group(config), "partitions": rows,
            "total_lag": sum(r["lag"] for r in rows)}


__all__ = ["DAG_OF_CLASS", "app", "check_access", "connector_status", "dag_of", "validate_config", "visible_connectors"]
