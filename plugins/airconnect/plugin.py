"""The Airflow plugin object; registered by plugins/airconnect_plugin.py."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airconnect.rest import app as rest_app
from airconnect.ui import router as ui_router

# The Connectors page (airconnect.ui) is served by the REST API's app, behind the same
# check_access as every REST route: Airflow's login, then the DAG permissions.
if not any(getattr(route, "path", None) == "/ui/{filename}" for route in rest_app.routes):
    rest_app.include_router(ui_router)

#: Where the page is; the UI shows external views in an iframe, fills in {DAG_ID} on a DAG's page.
PAGE = "/airconnect/ui/connectors.html"


class AirconnectPlugin(AirflowPlugin):
    name = "airconnect"
    # Kafka Connect's REST API on the Airflow API server, at /airconnect (see airconnect.rest).
    fastapi_apps = [{"app": rest_app, "url_prefix": "/airconnect", "name": "airconnect"}]
    # The Connectors page: in the navigation bar (every connector the user may see), and as a
    # tab on each DAG's page (that DAG's connectors).
    external_views = [
        {"name": "Connectors", "href": PAGE, "destination": "nav", "url_route": "connectors"},
        {"name": "Connectors", "href": PAGE + "?dag_id={DAG_ID}", "destination": "dag", "url_route": "dag-connectors"},
    ]
