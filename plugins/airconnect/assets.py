"""The Airflow Assets that connect the flows' DAGs (data-aware scheduling).

    inventory_sync ──INVENTORY──────────────────────────────────────────────────┐
    monthly_forecast_export ──manifest_asset(sink)──> sales_forecast ──SALES_FORECAST──> auto_order

Each S3 sink has its own manifest Asset (its manifests are its own:
``manifests/<connector>/year=YYYY/month=MM/manifest.json``), so a forecast waits for the
manifests of the sink it reads and no other.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset


def manifest_asset(sink: Any) -> Asset:
    """The Asset a month's manifest of the S3 sink ``sink`` (its definition) updates
    (extra: {"month": "YYYY-MM", "key": ..., "bucket": ..., "connector": ...})."""
    return Asset(name=f"airconnect-manifests-{sink.name}", uri=f"s3://{sink['s3.bucket.name']}/manifests/{sink.name}/")


#: A month's demand forecast was written and published (extra: {"month": "YYYY-MM", "key": ..., "bucket": ...}).
SALES_FORECAST = Asset(name="airconnect-sales-forecast", uri="s3://airconnect-forecast/forecast/")

#: New inventory lines were loaded onto zaiko-data (extra: {"connector": ..., "records": n}).
#: The Kafka provider's URI form is kafka://<cluster>/<topic>; "hub" names the data hub's cluster.
INVENTORY = Asset(name="airconnect-inventory", uri="kafka://hub/zaiko-data")
