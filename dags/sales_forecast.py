"""Flow 3, part 1: next month's sales forecast, from the monthly exports in S3.

Runs when a month's export manifest of its S3 sink lands (the sink's Asset, which
``monthly_forecast_export`` updates; the forecast reads the first S3 sink of the definitions),
or by hand with the trigger form's ``month`` (the last exported month, YYYY-MM). Forecasts the
next month per item and shop (seasonal exponential smoothing with 24+ months of history,
simpler methods otherwise: the forecast names the method per series), measures itself on the
hold-out month (WAPE, MAPE), writes ``forecast/year=YYYY/month=MM/forecast.json`` and an
actual-vs-forecast PNG to the same bucket, and publishes the forecast to ``sales-forecast``
(``$AIRCONNECT_FORECAST_TOPIC``).

``airflow dags test sales_forecast -c '{"month": "2018-10"}'`` forecasts 2018-11.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airconnect.assets import manifest_asset
from airconnect.connectors.s3.spec import S3_SINK
from airconnect.flows import connectors_of
from airconnect_retail.assets import SALES_FORECAST
from airconnect_retail.operators import SalesForecastOperator
from airconnect_retail.sales_forecast import forecast_topic

# The S3 sink whose exports it reads, by name ($AIRCONNECT_SALES_FORECAST_CONNECTORS renames it).
sinks = connectors_of("sales_forecast", ["s3-forecast"], S3_SINK)
# The forecast reads the forecast system's bucket: the (first) S3 sink's. It waits for that
# sink's manifests only; another sink's (a Parquet copy, say) does not trigger it.
sink = sinks[0] if sinks else None

with DAG(
    dag_id="sales_forecast",
    description="Monthly exports in S3 -> next month's demand forecast (S3, topic sales-forecast, chart)",
    schedule=[manifest_asset(sink)] if sink is not None else None,
    start_date=datetime(2016, 11, 1),
    catchup=False,
    max_active_runs=1,
    params={"month": Param("", type="string", pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
                           title="Last exported month (YYYY-MM)",
                           description="Forecast the month after it. Empty: the month of the export that triggered the run.")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
    tags=["airconnect", "flow-3", "forecast"],
    doc_md=__doc__,
) as dag:
    if sink is not None:
        SalesForecastOperator(task_id="forecast", connector=sink, month="{{ params.month }}",
                              forecast_topic=forecast_topic(), outlets=[SALES_FORECAST])
