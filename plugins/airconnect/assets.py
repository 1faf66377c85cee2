"""airconnect's Airflow Assets: a month's manifest of an S3 sink (data-aware scheduling; the
retail scenario's own Assets are in ``airconnect_retail.assets``).

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
