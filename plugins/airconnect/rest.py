"""Kafka Connect's REST API, served by the Airflow API server at ``/airconnect``.

The paths and response shapes are Kafka Connect's (``GET /connectors``,
``GET /connectors/<name>/status``, ``PUT /connectors/<name>/pause``, KIP-875 offsets, ...), so
Connect's tooling and habits work against Airflow::

    TOKEN=$(curl -s -X POST localhost:8080/auth/token -H 'Content-Type: application/json' \\
            -d '{"username": "admin", "password": "admin"}' | jq -r .access_token)
    curl -H "Authorization: Bearer $TOKEN" localhost:8080/airconnect/connectors?expand=status

A connector is a task of the DAG that runs it (see :func:`dag_of`): pausing a connector pauses
its DAG, restarting it triggers a DAG run, its state comes from the DAG and the task's last
run. Connectors are defined by files (``$AIRCONNECT_CONNECTORS_DIR``, run by the DAGs that name
them) or created here (``POST /connectors``, ``PUT /connectors/<name>/config``): those are kept in
Airflow's metadata database (:mod:`airconnect.definitions_db`) and each runs in a DAG of its own,
``connector_<name>`` (``dags/runtime_connectors.py``). A file's connector answers 409 to a change
or a delete over REST: its file is where it changes. The actions are plain functions
(:func:`create_connector`, :func:`delete_connector`, :func:`stop_connector`, ...) that the CLI
calls too.

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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

import airconnect
from airconnect.core import manage
from airconnect.core.config import COMMON_KEYS, ConnectorClass, ConnectorConfig, coerce, substitute_env
from airconnect.core.errors import AirconnectError, ConfigError, OffsetError, RedeliveryRefused, TransientError
from airconnect.core.registry import Definitions, connector_classes, lookup_class, validate
from airconnect.definitions_db import (
    STATES,
    all_definitions,
    is_stopped,
    is_stored,
    request_parsing,
    runtime_dag_id,
    set_stopped,
)
from airconnect.task_status import connector_tasks, task_ids

log = logging.getLogger(__name__)

WORKER_ID = "airflow"


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
    if request.method == "DELETE" and not path.endswith("/offsets"):
        return "DELETE", None  # deleting a connector (created at runtime) removes its DAG
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
    try:
        requires_access_dag(method, entity, param_dag_id=dag_id)(request, user)
    except HTTPException as exc:
        if exc.status_code == 403 and dag_id is not None:
            raise ConnectError(403, (
                f"Connector {name}: user {user.get_name()} may read DAG {dag_id} but not "
                f"{'trigger a run of' if entity is not None else 'change'} it ({method} permission on the DAG)")) from None
        raise


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
    """Airflow's refusals (401, 403) and unknown paths in Connect's shape too, with their headers.
    Routing's own 404 and 405 say what Connect's Jersey says (``HTTP 404 Not Found``)."""
    message = str(exc.detail)
    if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
        message = f"HTTP {exc.status_code} {message}"
    return JSONResponse(status_code=exc.status_code, content={"error_code": exc.status_code, "message": message},
                        headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body or parameter of the wrong shape: Connect's 400, not FastAPI's 422 ``{"detail"}``."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
    return JSONResponse(status_code=400, content={"error_code": 400, "message": f"Invalid request: {problems}"})


@app.exception_handler(AirconnectError)
async def _airconnect_error(_request: Request, exc: AirconnectError) -> JSONResponse:
    status = 503 if isinstance(exc, TransientError) else 400 if isinstance(exc, (OffsetError, ConfigError)) else 500
    return JSONResponse(status_code=status, content={"error_code": status, "message": str(exc)})


# --- connectors, their DAGs and their state --------------------------------------------------


def _definitions() -> dict[str, ConnectorConfig]:
    """The valid definitions (files and stored); an invalid one is left out here (and named by :func:`_connector`)."""
    found = all_definitions()
    for exc in found.errors:
        log.warning("connector definition left out: %s", exc)
    return found.by_name()


def _connector(name: str) -> ConnectorConfig:
    found = all_definitions()
    defs = found.by_name()
    if name not in defs:
        error = found.error_of(name)
        if error is not None:  # defined, but invalid: say why (400), not "not found"
            raise error
        raise ConnectError(404, f"Connector {name} not found")
    return defs[name]


def dag_of(config: ConnectorConfig, definitions: Definitions | None = None) -> str:
    """The DAG that runs ``config``: the one place that maps connectors to DAGs.

    A connector created at runtime runs in its own DAG, ``connector_<name>``. A file's connector
    runs in the file DAG that names it (``airconnect.flows.connectors_of``): the parsed DAG
    (tagged ``airconnect``) with a task of its name, as the operators use the connector's name as
    task id. ``""`` when no parsed DAG names it (yet).
    """
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airconnect.definitions_db import RUNTIME_TAG

    if _runtime(config.name, definitions):
        return runtime_dag_id(config.name)
    with create_session() as session:
        runtime = select(DagTag.dag_id).where(DagTag.name == RUNTIME_TAG)
        dag_ids = session.scalars(
            select(DagModel.dag_id).join(DagTag, DagTag.dag_id == DagModel.dag_id)
            .where(DagTag.name == "airconnect", DagModel.is_stale.is_(False), DagModel.dag_id.not_in(runtime))
            .order_by(DagModel.dag_id)
        ).all()
        bag = DBDagBag()
        for dag_id in dag_ids:
            dag = bag.get_latest_version_of_dag(dag_id, session=session)
            if dag is not None and (config.name in dag.task_dict or task_ids(config)[0] in dag.task_dict):
                return dag_id  # (a split connector's tasks are <name>.run, airconnect.tasks)
    return ""


def _runtime(name: str, definitions: Definitions | None = None) -> bool:
    """Whether ``name`` is a connector created at runtime (stored, and no file defines the name)."""
    from airconnect import definitions_db

    if definitions is not None:
        return is_stored(definitions, name)
    if definitions_db.stored(name) is None:  # (one Variable read: the usual answer for a file's connector)
        return False
    return is_stored(all_definitions(), name)


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


def connector_status(config: ConnectorConfig, definitions: Definitions | None = None) -> dict[str, Any]:
    """``GET /connectors/<name>/status`` from the DAG: stopped (KIP-875) or paused, the task's last
    run failed, or running; UNASSIGNED while no parsed DAG runs it."""
    dag_id = dag_of(config, definitions)
    dag = _dag_state(dag_id) if dag_id else {"exists": False, "paused": False}
    trace = None
    if not dag["exists"]:
        state = "UNASSIGNED"
        trace = (f"the DAG processor has not parsed its DAG {dag_id} yet" if dag_id else
                 "no parsed DAG runs this connector: a file's connector runs in the DAG that names it "
                 "(airconnect.flows.connectors_of)")
    elif dag["paused"] and is_stopped(config.name):
        state = "STOPPED"
    elif dag["paused"]:
        state = "PAUSED"
    else:
        run_task = task_ids(config)[0]  # the connector's name, or <name>.run when split into tasks
        ti = _last_task_instance(dag_id, run_task)
        if ti is not None and ti["state"] in ("failed", "upstream_failed"):
            state = "FAILED"
            trace = (_last_error(dag_id, run_task, ti) or ti.get("retry_reason")
                     or f"task {config.name} of DAG run {ti['run_id']} failed (try {ti['try_number']}); see its log")
        else:
            state = "RUNNING"
    part: dict[str, Any] = {"state": state, "worker_id": WORKER_ID}
    if trace:
        part["trace"] = trace
    # A stopped connector has no tasks (KIP-875); a split one lists each (map index, worker, state).
    tasks = [] if state == "STOPPED" else connector_tasks(config, dag_id, part) if dag["exists"] else [{"id": 0, **part}]
    return {"name": config.name, "connector": dict(part), "tasks": tasks, "type": config.kind, "dag_id": dag_id}


def connector_info(config: ConnectorConfig) -> dict[str, Any]:
    """``GET /connectors/<name>``: its definition, its one task (none while stopped) and its type."""
    tasks = [] if is_stopped(config.name) else [{"connector": config.name, "task": 0}]
    return {**config.definition(), "tasks": tasks, "type": config.kind}


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
    """Each plugin by its class names, as Connect lists them: the Java classes it stands for
    (Kafka Connect's, Confluent's, Debezium's) and airconnect's own name; the short aliases and old
    module paths that definitions may also use are left out."""
    plugins = []
    for cls in connector_classes():
        java = [a for a in cls.aliases if "." in a and not a.startswith("airconnect.")]
        for name in (*java, cls.name):
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
            for problem in getattr(exc, "errors", None) or [exc]:  # each under its key (transforms.NAME.x too)
                errors.setdefault(problem.key or "connector.class", []).append(_bare(problem))
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
    ids = [t["id"] for t in connector_status(config)["tasks"]] or [0]
    return [{"id": {"connector": name, "task": i}, "config": config.definition()["config"]} for i in ids]


@app.get("/connectors/{name}/topics")
def get_connector_topics(name: str) -> dict[str, Any]:
    config = _connector(name)
    return {name: {"topics": manage.connector_topics(config, _kafka(config))}}


# --- acting on connectors: the REST endpoints and the CLI call these -------------------------


def _user_name(request: Request | None) -> str:
    user = getattr(request.state, "airconnect_user", None) if request is not None else None
    return getattr(user, "get_name", lambda: None)() or "airconnect"


def _set_paused(config: ConnectorConfig, paused: bool, *, stopped: bool = False, dag_id: str | None = None) -> None:
    """Pause or unpause the connector's DAG; ``stopped`` marks a pause as KIP-875's STOPPED."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    dag_id = dag_id or dag_of(config)
    with create_session() as session:
        dm = session.get(DagModel, dag_id) if dag_id else None
        if dm is None:
            raise ConnectError(409, f"Connector {config.name}: its DAG {dag_id or '(none names it)'} has not been parsed yet")
        dm.is_paused = paused
    set_stopped(config.name, stopped)


def _end_active_runs(dag_id: str) -> int:
    """Fail the DAG's queued and running runs (their running or deferred tasks are stopped)."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    with create_session() as session:
        run_ids = session.scalars(select(DagRun.run_id).where(
            DagRun.dag_id == dag_id, DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]))).all()
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session) if run_ids else None
        if dag is None:
            return 0
        for run_id in run_ids:
            set_dag_run_state_to_failed(dag=dag, run_id=run_id, commit=True, session=session)
    return len(run_ids)


def _managed_by_file(definitions: Definitions, name: str) -> None:
    """A connector defined by a file changes in its file: 409 to a change over REST."""
    source = definitions.sources.get(name)
    error = definitions.error_of(name)
    if source is None and error is not None and error.source and not error.source.startswith("Airflow Variable"):
        source = error.source
    if source is not None and not is_stored(definitions, name):
        raise ConnectError(409, f"Connector {name} is managed by the file {source}: change or remove that file "
                                "(the connectors folder), not the connector over REST")


def _check_config_body(name: str, config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConnectError(400, "The connector's configuration must be a JSON object of strings")
    included = config.get("name")
    if included is not None and included != name:
        raise ConnectError(400, f"Connector name configuration ({included}) doesn't match connector name in the URL ({name})")
    return {k: v for k, v in config.items() if k != "name"}


def _invalid(exc: ConfigError) -> ConnectError:
    """Connect's 400 for an invalid configuration, with every error."""
    from airconnect.core.errors import InvalidDefinitions

    errors = exc.errors if isinstance(exc, InvalidDefinitions) else [exc]
    return ConnectError(400, f"Connector configuration is invalid and contains the following {len(errors)} error(s):\n"
                        + "\n".join(str(e) for e in errors)
                        + "\nYou can also find the above list of errors at the endpoint "
                          "`/connector-plugins/{connectorType}/config/validate`")


def _store(name: str, config: dict[str, Any], initial_state: str | None) -> ConnectorConfig:
    from airconnect import definitions_db

    try:
        saved = definitions_db.save({"name": name, "config": config}, initial_state)
    except ConfigError as exc:
        raise _invalid(exc) from None
    return saved


def _after_change(name: str, state: str | None) -> None:
    """The stored connector's DAG: its paused flag as ``state`` says (when it exists already: a
    new DAG takes it from ``is_paused_upon_creation``), then a priority parse of its file."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    if state is not None:
        with create_session() as session:
            dm = session.get(DagModel, runtime_dag_id(name))
            if dm is not None:
                dm.is_paused = state != "RUNNING"
        set_stopped(name, state == "STOPPED")
    request_parsing()


def create_connector(body: Any) -> tuple[dict[str, Any], bool]:
    """``POST /connectors``: ``{"name", "config", "initial_state"?}``; 409 if the name exists."""
    if not isinstance(body, dict):
        raise ConnectError(400, "The request body must be a JSON object: {\"name\": ..., \"config\": {...}}")
    name = str(body.get("name") or "").strip()
    state = body.get("initial_state")
    if state is not None and state not in STATES:
        raise ConnectError(400, f"Invalid initial state {state!r}: must be one of {', '.join(STATES)}")
    config = _check_config_body(name, body.get("config") if "config" in body else {})
    definitions = all_definitions()
    if name in definitions.by_name() or definitions.error_of(name) is not None:
        _managed_by_file(definitions, name)
        raise ConnectError(409, f"Connector {name} already exists")
    saved = _store(name, config, state or "RUNNING")
    _after_change(name, state or "RUNNING")
    return connector_info(saved), True


def put_connector_config(name: str, config: Any) -> tuple[dict[str, Any], bool]:
    """``PUT /connectors/<name>/config``: create (True) or replace (False) a stored connector."""
    config = _check_config_body(name, config)
    definitions = all_definitions()
    _managed_by_file(definitions, name)
    from airconnect import definitions_db

    created = definitions_db.stored(name) is None
    saved = _store(name, config, "RUNNING" if created else None)
    _after_change(name, "RUNNING" if created else None)
    return connector_info(saved), created


def patch_connector_config(name: str, patch: Any) -> dict[str, Any]:
    """``PATCH /connectors/<name>/config`` (KIP-477): listed keys change, ``null`` removes one."""
    from airconnect import definitions_db

    if not isinstance(patch, dict):
        raise ConnectError(400, "The configuration patch must be a JSON object")
    definitions = all_definitions()
    _managed_by_file(definitions, name)
    doc = definitions_db.stored(name)
    if doc is None:
        raise ConnectError(404, f"Connector {name} not found")
    _check_config_body(name, patch)
    config = dict(doc.get("config") or {}) if isinstance(doc.get("config"), dict) else {}
    for k, v in patch.items():
        if k == "name":
            continue
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    saved = _store(name, config, None)
    _after_change(name, None)
    return connector_info(saved)


def delete_connector(name: str) -> None:
    """``DELETE /connectors/<name>``: the definition goes, its DAG is paused and its runs end; its
    offsets stay (a connector created again under this name resumes from them), as in Connect."""
    from airconnect import definitions_db

    definitions = all_definitions()
    _managed_by_file(definitions, name)
    if definitions_db.stored(name) is None:
        raise ConnectError(404, f"Connector {name} not found")
    dag_id = runtime_dag_id(name)
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dm = session.get(DagModel, dag_id)
        if dm is not None:
            dm.is_paused = True
    _end_active_runs(dag_id)
    definitions_db.remove(name)
    request_parsing()


def pause_connector_(name: str) -> None:
    _set_paused(_connector(name), True)


def resume_connector_(name: str) -> None:
    _set_paused(_connector(name), False)


def stop_connector(name: str) -> None:
    """KIP-875's stop: the DAG is paused, marked STOPPED, and its active runs end, so that its
    offsets can be altered or reset."""
    config = _connector(name)
    dag_id = dag_of(config)
    _set_paused(config, True, stopped=True, dag_id=dag_id)
    if _runtime(name):  # its own DAG: end its runs (a file DAG's runs carry other connectors)
        _end_active_runs(dag_id)


def restart_connector_(name: str, *, include_tasks: bool = False, only_failed: bool = False,
                       user: str = "airconnect") -> dict[str, Any] | None:
    """A restart is a new run of the connector's DAG. Connect's answer: None (204) for the plain
    restart, else the status (202); ``only_failed`` restarts only a FAILED connector."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    config = _connector(name)
    dag_id = dag_of(config)
    status = connector_status(config)
    run = None
    if not only_failed or status["connector"]["state"] == "FAILED":
        if not dag_id:
            raise ConnectError(409, f"Connector {name}: no parsed DAG runs it yet")
        try:
            run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.REST_API, triggering_user_name=user)
        except DagNotFound:
            raise ConnectError(409, f"Connector {name}: its DAG {dag_id} has not been parsed yet") from None
        except DagRunAlreadyExists as exc:
            raise ConnectError(409, f"Connector {name}: {exc}") from None
    if not (include_tasks or only_failed):
        return None
    status = connector_status(config)
    if status["connector"]["state"] not in ("PAUSED", "STOPPED") and run is not None:
        status["connector"]["state"] = "RESTARTING"
        for task in status["tasks"]:
            task["state"] = "RESTARTING"
    status["dag_run_id"] = run.run_id if run is not None else None
    return status


# --- endpoints that act ------------------------------------------------------------------------


@app.post("/connectors", status_code=201)
async def post_connector(request: Request) -> JSONResponse:
    info, _ = create_connector(await _json(request))
    return JSONResponse(status_code=201, content=info, headers={"Location": _location(request, info["name"])})


@app.put("/connectors/{name}/config")
async def put_config(name: str, request: Request) -> JSONResponse:
    info, created = put_connector_config(name, await _json(request))
    if created:
        return JSONResponse(status_code=201, content=info, headers={"Location": _location(request, name)})
    return JSONResponse(status_code=200, content=info)


@app.patch("/connectors/{name}/config")
async def patch_config(name: str, request: Request) -> dict[str, Any]:
    return patch_connector_config(name, await _json(request))


@app.delete("/connectors/{name}", status_code=204)
def delete_connector_endpoint(name: str) -> Response:
    delete_connector(name)
    return Response(status_code=204)


def _location(request: Request, name: str) -> str:
    """The new connector's path, under the prefix the app is mounted at (``/airconnect``)."""
    return f"{request.scope.get('root_path', '')}/connectors/{name}"


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise ConnectError(400, f"The request body is not JSON: {exc}") from None


@app.put("/connectors/{name}/pause", status_code=202)
def pause_connector(name: str) -> Response:
    pause_connector_(name)
    return Response(status_code=202)


@app.put("/connectors/{name}/resume", status_code=202)
def resume_connector(name: str) -> Response:
    resume_connector_(name)
    return Response(status_code=202)


@app.put("/connectors/{name}/stop", status_code=202)
def stop_connector_endpoint(name: str) -> Response:
    stop_connector(name)
    return Response(status_code=202)


@app.post("/connectors/{name}/restart", response_model=None)
def restart_connector(name: str, request: Request, includeTasks: bool = False,  # noqa: N803 - Connect's names
                      onlyFailed: bool = False) -> Response | JSONResponse:  # noqa: N803
    """KIP-745: 204 for the plain restart, 202 with the status with ``includeTasks``/``onlyFailed``."""
    status = restart_connector_(name, include_tasks=includeTasks, only_failed=onlyFailed, user=_user_name(request))
    if status is None:
        return Response(status_code=204)
    return JSONResponse(status_code=202, content=status)


def _task(name: str, task: int) -> ConnectorConfig:
    config = _connector(name)
    if is_stopped(name) or (task != 0 and task not in {t["id"] for t in connector_status(config)["tasks"]}):
        raise ConnectError(404, f"Task {name}-{task} not found")  # tasks 0..n-1 (a split connector's); none when stopped
    return config


@app.get("/connectors/{name}/tasks/{task}/status")
def get_task_status(name: str, task: int) -> dict[str, Any]:
    status = connector_status(_task(name, task))
    return next((t for t in status["tasks"] if t["id"] == task), status["tasks"][0])


@app.post("/connectors/{name}/tasks/{task}/restart", status_code=204)
def restart_task(name: str, task: int, request: Request) -> Response:
    _task(name, task)
    restart_connector_(name, user=_user_name(request))
    return Response(status_code=204)


@app.put("/connectors/{name}/topics/reset", status_code=202)
def reset_topics(name: str) -> Response:
    """Connect forgets the topics it saw the connector use; airconnect's are the definition's own
    (``GET .../topics``), so there is nothing to forget: 202, as Connect answers."""
    _connector(name)
    return Response(status_code=202)


@app.get("/connector-plugins/{plugin}/config")
def get_plugin_config(plugin: str) -> list[dict[str, Any]]:
    """KIP-769: the plugin's configuration keys (Connect's ConfigKeyInfo)."""
    try:
        cls = lookup_class(plugin, "config")
    except ConfigError:
        raise ConnectError(404, f"Unknown connector plugin {plugin}") from None
    common = {k.name for k in COMMON_KEYS}
    return [_definition(key, _GROUP_COMMON if k in common else cls.name, order)
            for order, (k, key) in enumerate(cls.all_keys().items(), start=1)]


def _refuse_unless_stopped(config: ConnectorConfig) -> None:
    """As in Connect, offsets change only while the connector is STOPPED (and, in Airflow, no run
    of its DAG is still queued or running)."""
    if not is_stopped(config.name):
        raise ConnectError(400, (
            "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for "
            f"the specified connector by issuing a 'PUT' request to the '/connectors/{config.name}/stop' endpoint"))
    dag_id = dag_of(config)
    state = _dag_state(dag_id) if dag_id else {"active_runs": 0}
    if state["active_runs"]:
        raise ConnectError(409, (
            f"Connector {config.name} is STOPPED, but DAG {dag_id} still has {state['active_runs']} queued or "
            "running run(s) (it runs other connectors too); wait for the run to end"))


@app.get("/connectors/{name}/offsets")
def get_connector_offsets(name: str) -> dict[str, Any]:
    from airconnect.hooks import VariableStore
    from airconnect.operators import offsets_resources

    config = _connector(name)
    doc = manage.get_offsets(config, VariableStore(), offsets_resources(config))
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
    from airconnect.operators import offsets_resources

    config = _connector(name)
    _refuse_unless_stopped(config)
    try:
        return manage.reset_offsets(config, VariableStore(), _kafka(config), redeliver=redeliver,
                                    resources=offsets_resources(config))
    except RedeliveryRefused as exc:
        raise ConnectError(409, str(exc)) from None


@app.patch("/connectors/{name}/offsets")
def alter_connector_offsets(name: str, body: dict[str, Any]) -> dict[str, Any]:
    from airconnect.hooks import VariableStore

    config = _connector(name)
    manage.check_offsets_document(config, body)  # a malformed body is a 400 even while running
    _refuse_unless_stopped(config)
    from airconnect.operators import offsets_resources

    return manage.set_offsets(config, VariableStore(), body, _kafka(config),
                              offsets_resources(config))


@app.get("/connectors/{name}/lag")
def get_connector_lag(name: str) -> dict[str, Any]:
    """airconnect's addition: a sink's consumer lag per topic-partition."""
    from airconnect.hooks import VariableStore

    config = _connector(name)
    if config.kind != "sink":
        raise ConnectError(400, f"Connector {name} is a source: only sinks have a consumer lag")
    from airconnect.operators import offsets_resources

    rows = manage.sink_lag(config, VariableStore(), _kafka(config), resources=offsets_resources(config))
    return {"name": name, "group_id": manage.sink_group(config), "partitions": rows,
            "total_lag": sum(r["lag"] for r in rows)}


__all__ = ["app", "check_access", "connector_status", "dag_of", "validate_config", "visible_connectors"]
