"""The Airflow Assets that connect the retail scenario's DAGs (data-aware scheduling).

    inventory_sync ──INVENTORY──────────────────────────────────────────────────┐
    monthly_forecast_export ──manifest_asset(sink)──> sales_forecast ──SALES_FORECAST──> auto_order

``manifest_asset`` is airconnect's (``airconnect.assets``): each S3 sink's manifests.
"""

from __future__ import annotations

from airflow.sdk import Asset

#: A month's demand forecast was written and published (extra: {"month": "YYYY-MM", "key": ..., "bucket": ...}).
SALES_FORECAST = Asset(name="airconnect-sales-forecast", uri="s3://airconnect-forecast/forecast/")

#: New inventory lines were loaded onto zaiko-data (extra: {"connector": ..., "records": n}).
#: The Kafka provider's URI form is kafka://<cluster>/<topic>; "hub" names the data hub's cluster.
INVENTORY = Asset(name="airconnect-inventory", uri="kafka://hub/zaiko-data")
