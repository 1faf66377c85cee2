"""Flow 2, monthly forecast export: EC sales (PostgreSQL) and POS sales (MariaDB) -> Kafka -> S3.

Both JDBC sources read their tables incrementally (like Kafka Connect's JDBC source) in
parallel; the S3 sink then writes every new record into its month's folder
(``topics/<topic>/year=YYYY/month=MM/``); last, the sink's manifest of the month's objects
(``manifests/<sink>/year=YYYY/month=MM/manifest.json``: record counts, checksums, objects left
from an earlier life of a topic) is written, which updates the sink's Asset the forecast DAG
waits for.

The month: the run on the 1st exports the month that has just closed (Airflow 3 cron runs
have zero-length data intervals, so it is derived from the logical date); the trigger form's
``month`` (YYYY-MM) chooses any past month. ``airflow dags test monthly_forecast_export
2018-11-01`` exports October 2018. Re-running a month rewrites the same objects and manifest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task
from airflow.timetables.trigger import CronTriggerTimetable

from airconnect.assets import manifest_asset
from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.s3.spec import S3_SINK
from airconnect.flows import connectors_of
from airconnect.operators import JdbcSourceOperator, MonthManifestOperator, S3SinkOperator
from airconnect.tasks import connector_task

# The connectors this DAG runs, by name ($AIRCONNECT_MONTHLY_FORECAST_EXPORT_CONNECTORS renames them).
definitions = connectors_of("monthly_forecast_export", ["jdbc-ec-sales", "jdbc-pos-sales", "s3-forecast"],
                            JDBC_SOURCE, S3_SINK)
sinks = [c for c in definitions if c.cls is S3_SINK]
# The sources that feed the sinks: JDBC sources writing a topic an S3 sink exports.
exported = {t for sink in sinks for t in sink["topics"]}
sources = [c for c in definitions if c.cls is JDBC_SOURCE and exported.intersection(c.topics)]

with DAG(
    dag_id="monthly_forecast_export",
    description="EC + POS sales -> Kafka -> S3, one folder per month",
    schedule=CronTriggerTimetable("0 3 1 * *", timezone="UTC"),
    start_date=datetime(2016, 11, 1),
    catchup=False,
    max_active_runs=1,
    params={"month": Param("", type="string", pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
                           title="Month to export (YYYY-MM)",
                           description="Empty: the month before the run's logical date.")},
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
    tags=["airconnect", "flow-2", "forecast"],
    doc_md=__doc__,
) as dag:

    @task(task_id="month")
    def month(params=None, logical_date=None) -> str:
        """The calendar month this run exports (YYYY-MM)."""
        from airconnect.core.months import month_to_export

        return month_to_export(logical_date, (params or {}).get("month"))

    the_month = month()
    # A connector with tasks.max above 1 is a task group: its split, then one mapped task per share.
    loads = [connector_task(source, JdbcSourceOperator) for source in sources]
    for sink in sinks:
        export = connector_task(sink, S3SinkOperator)
        manifest = MonthManifestOperator(task_id=f"manifest-{sink.name}", connector=sink, month=the_month,
                                         outlets=[manifest_asset(sink)])
        the_month >> loads >> export >> manifest
