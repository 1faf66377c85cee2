"""The Airflow Assets that connect the flows' DAGs (data-aware scheduling).

    inventory_sync ──INVENTORY──────────────────────────────┐
    monthly_forecast_export ──FORECAST_INPUT──> sales_forecast ──SALES_FORECAST──> auto_order
"""

from __future__ import annotations

from airflow.sdk import Asset

#: A month's export manifest was written (extra: {"month": "YYYY-MM", "key": ..., "bucket": ...}).
FORECAST_INPUT = Asset(name="airconnect-forecast-input", uri="s3://airconnect-forecast/manifests/")

#: A month's demand forecast was written and published (extra: {"month": "YYYY-MM", "key": ..., "bucket": ...}).
SALES_FORECAST = Asset(name="airconnect-sales-forecast", uri="s3://airconnect-forecast/forecast/")

#: New inventory lines were loaded onto zaiko-data (extra: {"connector": ..., "records": n}).
#: The Kafka provider's URI form is kafka://<cluster>/<topic>; "hub" names the data hub's cluster.
INVENTORY = Asset(name="airconnect-inventory", uri="kafka://hub/zaiko-data")
