"""The Airflow plugin object; registered by plugins/airconnect_plugin.py."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airconnect.rest import app as rest_app


class AirconnectPlugin(AirflowPlugin):
    name = "airconnect"
    # Kafka Connect's REST API on the Airflow API server, at /airconnect (see airconnect.rest).
    fastapi_apps = [{"app": rest_app, "url_prefix": "/airconnect", "name": "airconnect"}]
