"""Connectors created at runtime (REST ``POST /connectors``, ``airconnect create``), kept in
Airflow's metadata database as Airflow Variables.

One Variable per connector, ``airconnect.connector.<name>``, holds what was posted and the
state it starts in::

    {"name": "load-zaiko-data", "config": {"connector.class": "...", ...}, "initial_state": "RUNNING"}

and ``airconnect.stopped.<name>`` marks a connector stopped (KIP-875: STOPPED, as opposed to
PAUSED; both pause the connector's DAG). Variables, not a table of airconnect's own: every
Airflow process reads them where it runs (the API server and the CLI through the database, the
DAG processor's parsing and the tasks through the Task SDK: ``Variable.get`` / ``Variable.keys``),
they need no migration of Airflow's schema, they are kept with Airflow's backups, and the
offsets live beside them (``airconnect.offsets.<name>``).

``dags/runtime_connectors.py`` makes one DAG per stored connector (:func:`runtime_dag_id`);
after a change, :func:`request_parsing` asks the DAG processor to parse that file at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any, Final

from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import ConfigError
from airconnect.core.registry import Definitions, merge_definitions, read_definitions, validate
from airconnect.hooks import VariableStore, _in_task

log = logging.getLogger(__name__)

PREFIX: Final = "airconnect.connector."
STOPPED_PREFIX: Final = "airconnect.stopped."
STATES: Final = ("RUNNING", "PAUSED", "STOPPED")
#: The file (in the DAGs folder) that makes a DAG of each stored connector.
RUNTIME_DAG_FILE: Final = "runtime_connectors.py"
#: The file whose import error lists every invalid definition (files and stored).
DEFINITIONS_DAG_FILE: Final = "connector_definitions.py"
RUNTIME_TAG: Final = "airconnect-runtime"


def variable_key(name: str) -> str:
    return PREFIX + name


def label(name: str) -> str:
    """How errors name a stored definition's place."""
    return f"Airflow Variable '{variable_key(name)}'"


def runtime_dag_id(name: str) -> str:
    """The DAG that runs a connector created at runtime."""
    return f"connector_{name}"


def stored_names() -> list[str]:
    """The names of the stored connectors, sorted."""
    if _in_task():  # the DAG processor's parsing, a task: through the Task SDK
        from airflow.sdk import Variable

        keys = list(Variable.keys(prefix=PREFIX))
    else:
        from airflow.models import Variable as DbVariable
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            keys = list(session.scalars(select(DbVariable.key).where(DbVariable.key.startswith(PREFIX))).all())
    return sorted(k[len(PREFIX):] for k in keys if k.startswith(PREFIX))


def stored(name: str) -> dict[str, Any] | None:
    """The stored document of ``name`` (``{"name", "config", "initial_state"}``), or None.

    A Variable that is not a JSON object comes back as ``{"name": name, "config": <its text>}``,
    so validating it names the connector and says what is wrong."""
    raw = VariableStore().get(variable_key(name))
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return {"name": name, "config": raw}
    if not isinstance(doc, dict):
        return {"name": name, "config": doc}
    return doc


def _stored_definitions() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in stored_names():
        doc = stored(name)
        if doc is not None:
            yield label(name), {"name": doc.get("name", name), "config": doc.get("config")}


def all_definitions(directory: str | None = None) -> Definitions:
    """Every definition: the connectors folder's files and the stored ones (a file's name stays the file's)."""
    return merge_definitions(read_definitions(directory), _stored_definitions())


def is_stored(definitions: Definitions, name: str) -> bool:
    """Whether ``name`` is (validly) a stored connector, not a file's."""
    return definitions.sources.get(name) == label(name)


def runtime_connectors() -> tuple[list[tuple[ConnectorConfig, str]], list[ConfigError]]:
    """The valid stored connectors with their initial state, and an error for each invalid one
    (or one whose name a file of the connectors folder defines)."""
    definitions = all_definitions()
    configs = [(c, str((stored(c.name) or {}).get("initial_state") or "RUNNING"))
               for c in definitions.configs if is_stored(definitions, c.name)]
    errors = [e for e in definitions.errors if e.source and e.source.startswith("Airflow Variable")]
    return configs, errors


def save(definition: dict[str, Any], initial_state: str | None = None) -> ConnectorConfig:
    """Validate and store ``{"name", "config"}`` (create or replace); returns the valid config."""
    config = validate(definition)
    state = initial_state or str((stored(config.name) or {}).get("initial_state") or "RUNNING")
    if state not in STATES:
        raise ConfigError(f"initial_state must be one of {', '.join(STATES)}, got {state!r}", connector=config.name)
    doc = {"name": config.name, "config": {k: v for k, v in definition["config"].items() if k != "name"},
           "initial_state": state}
    from airflow.models import Variable as DbVariable

    DbVariable.set(variable_key(config.name), json.dumps(doc, ensure_ascii=False),
                   description="airconnect connector created at runtime (Kafka Connect's REST shape)")
    return config


def remove(name: str) -> None:
    from airflow.models import Variable as DbVariable

    DbVariable.delete(variable_key(name))
    DbVariable.delete(STOPPED_PREFIX + name)


def is_stopped(name: str) -> bool:
    return VariableStore().get(STOPPED_PREFIX + name) is not None


def set_stopped(name: str, stopped: bool) -> None:
    from airflow.models import Variable as DbVariable

    if stopped:
        DbVariable.set(STOPPED_PREFIX + name, "STOPPED", description="airconnect: connector stopped (KIP-875)")
    else:
        DbVariable.delete(STOPPED_PREFIX + name)


def _runtime_file_location() -> tuple[str, str]:
    """(bundle name, relative path) of dags/runtime_connectors.py: from a parsed runtime DAG, else
    the bundle whose folder holds it, else the default bundle ``dags-folder``."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(DagModel.bundle_name, DagModel.relative_fileloc).join(DagTag, DagTag.dag_id == DagModel.dag_id)
            .where(DagTag.name == RUNTIME_TAG, DagModel.relative_fileloc.is_not(None)).limit(1)
        ).first()
    if row is not None and row[0] and row[1]:
        return str(row[0]), str(row[1])
    try:
        from pathlib import Path

        from airflow.dag_processing.bundles.manager import DagBundlesManager

        for bundle in DagBundlesManager().get_all_dag_bundles():
            path = getattr(bundle, "path", None)
            if path is not None and (Path(path) / RUNTIME_DAG_FILE).exists():
                return bundle.name, RUNTIME_DAG_FILE
    except Exception as exc:  # noqa: BLE001 - the default below still works for the usual deployment
        log.info("airconnect: DAG bundles unavailable (%s); asking to parse dags-folder/%s", exc, RUNTIME_DAG_FILE)
    return "dags-folder", RUNTIME_DAG_FILE


def request_parsing() -> None:
    """Ask the DAG processor to parse the runtime DAG file (and the file listing invalid
    definitions) at once: Airflow's priority parsing request, as the UI's "Reparse" does."""
    from pathlib import PurePosixPath

    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session

    bundle, rel = _runtime_file_location()
    folder = PurePosixPath(rel).parent
    with create_session() as session:
        for path in (rel, str(folder / DEFINITIONS_DAG_FILE)):
            request = DagPriorityParsingRequest(bundle_name=bundle, relative_fileloc=path)
            request.id = hashlib.md5(f"{bundle}:{path}".encode()).hexdigest()  # Airflow's id: one pending request per file
            session.merge(request)
