"""An auth manager with per-DAG permissions, for the tests of airconnect's authorization only.

Airflow's default SimpleAuthManager knows roles (VIEWER, USER, OP, ADMIN) and nothing per DAG;
per-DAG permissions come with an auth manager that has them (FAB's, Keycloak's, a company's
own). This one is the smallest such manager, through Airflow's own extension point
(``[core] auth_manager``): SimpleAuthManager's users, passwords and roles, plus DAG grants read
from the JSON file ``$AIRCONNECT_TEST_DAG_GRANTS_FILE`` at every check::

    {"reader": {"inventory_sync": "read"}, "outsider": {"monthly_forecast_export": "edit"}}

A user the file names may read the DAGs it lists and change those marked ``"edit"``, within
what the role allows; every other DAG is closed to them. A user it does not name keeps
SimpleAuthManager's answers. "Any DAG" questions (no DAG id, e.g. ``GET /api/v2/dags`` or
``GET /airconnect/connectors``) keep the role's answer: such lists are filtered per DAG by the
caller (Airflow's ``get_authorized_dag_ids``, airconnect's connector list).

The Airflow processes import it by name (``dag_grants_auth_manager.DagGrantsAuthManager``)
with ``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

GRANTS_FILE_ENV = "AIRCONNECT_TEST_DAG_GRANTS_FILE"
READ, EDIT = "read", "edit"


def _grants() -> dict[str, dict[str, str]]:
    path = os.environ.get(GRANTS_FILE_ENV)
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class DagGrantsAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose named users reach only the DAGs granted to them."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if not super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details):
            return False
        grants = _grants().get(user.get_name())
        if grants is None or details is None or details.id is None:
            return True
        level = grants.get(details.id)
        if level is None:
            return False
        return method == "GET" or level == EDIT
