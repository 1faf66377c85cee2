"""Registers airconnect with Airflow's plugin loader (the package itself is in .airflowignore)."""

from airconnect.plugin import AirconnectPlugin

__all__ = ["AirconnectPlugin"]
