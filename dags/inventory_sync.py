"""Flow 1, inventory sync: inventory CSV file -> topic zaiko-data -> the EC site's file.

Runs the file connectors it names (``load-zaiko-data`` and ``sink-zaiko-data`` in
include/connectors/, ``$AIRCONNECT_CONNECTORS_DIR``; ``$AIRCONNECT_INVENTORY_SYNC_CONNECTORS``
names others): every file source gets a deferrable wait and a load task, every file sink runs
after them.
Near-continuous: with the scheduler running, each run waits (in the triggerer, holding no
worker slot) until the inventory file grows, then delivers the new lines; the next run starts
as soon as one ends. A manual run (UI button, ``airflow dags test inventory_sync``) does one
pass over what is there now.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airconnect.connectors.file.sink import FILE_SINK
from airconnect.connectors.file.source import FILE_SOURCE
from airconnect.flows import connectors_of
from airconnect.operators import FileSinkOperator, FileSourceOperator
from airconnect.sensors import FileChangeSensor
from airconnect_retail.assets import INVENTORY

# The connectors this DAG runs, by name ($AIRCONNECT_INVENTORY_SYNC_CONNECTORS renames them).
definitions = connectors_of("inventory_sync", ["load-zaiko-data", "sink-zaiko-data"], FILE_SOURCE, FILE_SINK)
sources = [c for c in definitions if c.cls is FILE_SOURCE]
sinks = [c for c in definitions if c.cls is FILE_SINK]

with DAG(
    dag_id="inventory_sync",
    description="Inventory file -> Kafka (zaiko-data) -> EC file, within seconds",
    schedule="@continuous",
    start_date=datetime(2018, 10, 1),
    catchup=False,
    max_active_runs=1,  # one run at a time: offsets never race
    default_args={"retries": 3, "retry_delay": timedelta(seconds=5), "retry_exponential_backoff": True},
    tags=["airconnect", "flow-1", "inventory"],
    doc_md=__doc__,
) as dag:
    loads = []
    for source in sources:
        wait = FileChangeSensor(connector=source, poll_interval=0.5, max_wait=timedelta(minutes=30))
        load = FileSourceOperator(connector=source, outlets=[INVENTORY])  # auto_order follows inventory
        wait >> load
        loads.append(load)
    for sink in sinks:
        loads >> FileSinkOperator(connector=sink)
