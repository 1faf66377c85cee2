"""The Airflow plugin object; registered by plugins/airconnect_plugin.py."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class AirconnectPlugin(AirflowPlugin):
    name = "airconnect"
