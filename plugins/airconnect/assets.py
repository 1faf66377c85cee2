"""The Airflow Assets that connect the flows' DAGs (data-aware scheduling)."""

from __future__ import annotations

from airflow.sdk import Asset

#: A month's export manifest was written (extra: {"month": "YYYY-MM", "key": ..., "bucket": ...}).
FORECAST_INPUT = Asset(name="airconnect-forecast-input", uri="s3://airconnect-forecast/manifests/")
