"""Which connectors a DAG runs: the DAG names them. A definition added to the folder runs only
where a DAG names it, so nothing is rewired silently.

A DAG file calls :func:`connectors_of` with the names it runs; a deployment whose connectors
have other names sets ``AIRCONNECT_<DAG_ID>_CONNECTORS`` (comma-separated; e.g.
``AIRCONNECT_INVENTORY_SYNC_CONNECTORS=load-stock,sink-stock``). Only the named definitions
can break the DAG: an invalid, missing or misclassed one is its import error, naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from airconnect.core.config import ConnectorClass, ConnectorConfig
from airconnect.core.errors import ConfigError, InvalidDefinitions
from airconnect.core.registry import read_definitions


def names_env(dag_id: str) -> str:
    """The variable that renames a DAG's connectors: ``AIRCONNECT_<DAG_ID>_CONNECTORS``."""
    return f"AIRCONNECT_{dag_id.upper()}_CONNECTORS"


def connectors_of(dag_id: str, names: Sequence[str], *classes: ConnectorClass) -> list[ConnectorConfig]:
    """The definitions ``dag_id`` runs, in order: ``names`` (or ``$AIRCONNECT_<DAG_ID>_CONNECTORS``),
    each defined, valid and of one of ``classes``; otherwise one error listing every problem."""
    env = names_env(dag_id)
    wanted = [n.strip() for n in os.environ.get(env, "").split(",") if n.strip()] or list(names)
    found = read_definitions()
    by_name = found.by_name()
    allowed = {c.name for c in classes}
    problems: list[ConfigError] = []
    configs: list[ConnectorConfig] = []
    for name in wanted:
        error = found.error_of(name)
        config = by_name.get(name)
        if error is not None:
            problems.append(error)
        elif config is None:
            problems.append(ConfigError(
                f"the DAG {dag_id} runs it, but no definition has this name ({', '.join(sorted(by_name)) or 'none'} "
                f"are defined); define it, or name this DAG's connectors in {env}", connector=name))
        elif allowed and config.cls.name not in allowed:
            problems.append(ConfigError(
                f"is {config.cls.name}; the DAG {dag_id} runs {' or '.join(sorted(allowed))}",
                connector=name, key="connector.class"))
        else:
            configs.append(config)
    if problems:
        raise problems[0] if len(problems) == 1 else InvalidDefinitions(problems)
    return configs
