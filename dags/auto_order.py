"""Flow 3, part 2: automatic ordering from the sales forecast and the store inventory.

Runs when a new forecast arrives (``sales_forecast``) and when inventory lines were loaded onto
``zaiko-data`` (``inventory_sync``). Each run:

1. ``inventory_view``: applies only the new ``zaiko-data`` records to ``inventory_latest`` (the
   newest stock per item and shop) in the auto-order system's PostgreSQL database;
2. ``place_orders``: for every series of the newest forecast with a known stock, orders
   demand over the lead time + safety stock - stock on hand - open orders, rounded up to whole
   packs (include/items.csv: pack_size, lead_time_days, optional safety_stock_days);
   a re-run orders nothing twice;
3. the JDBC source ``jdbc-auto-orders`` publishes the new orders to the topic ``auto-orders``
   (``$AIRCONNECT_ORDERS_TOPIC``: the DAG uses the JDBC source definition that writes it).

The auto-order system's database is the one the ``jdbc-auto-orders`` definition reads
(``db.conn.id``, ``postgres_autoorder`` on the local stack).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airconnect.connectors.file.source import FILE_SOURCE
from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.s3.spec import S3_SINK
from airconnect.flows import connectors_of
from airconnect.operators import JdbcSourceOperator
from airconnect.tasks import connector_task
from airconnect_retail.assets import INVENTORY, SALES_FORECAST
from airconnect_retail.auto_order import orders_topic
from airconnect_retail.operators import InventoryViewOperator, PlaceOrdersOperator

# The connectors this DAG uses, by name ($AIRCONNECT_AUTO_ORDER_CONNECTORS renames them): the JDBC source
# that publishes the orders, the S3 sink whose bucket holds the forecast, the file source of the inventory.
definitions = connectors_of("auto_order", ["jdbc-auto-orders", "s3-forecast", "load-zaiko-data"],
                            JDBC_SOURCE, S3_SINK, FILE_SOURCE)
publishers = [c for c in definitions if c.cls is JDBC_SOURCE and orders_topic() in c.topics]
sinks = [c for c in definitions if c.cls is S3_SINK]
# The inventory is what flow 1 loads: the file source's topic (zaiko-data).
inventory_topic = next((c["topic"] for c in definitions if c.cls is FILE_SOURCE), "zaiko-data")

with DAG(
    dag_id="auto_order",
    description="Forecast + inventory -> orders (PostgreSQL auto_orders, topic auto-orders)",
    schedule=(SALES_FORECAST | INVENTORY),
    start_date=datetime(2016, 11, 1),
    catchup=False,
    max_active_runs=1,  # one run at a time: the view's offsets and the open orders never race
    params={
        "forecast_month": Param("", type="string", pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
                                title="Forecast month (YYYY-MM)", description="Empty: the newest forecast."),
        "safety_stock_days": Param(7, type="number", minimum=0, title="Safety stock (days of demand)",
                                   description="For items whose item master row has no safety_stock_days."),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15), "retry_exponential_backoff": True},
    tags=["airconnect", "flow-3", "orders"],
    doc_md=__doc__,
) as dag:
    for orders in publishers[:1]:
        view = InventoryViewOperator(orders_connector=orders, inventory_topic=inventory_topic)
        for sink in sinks[:1]:
            place = PlaceOrdersOperator(orders_connector=orders, forecast_connector=sink,
                                        forecast_month="{{ params.forecast_month }}",
                                        safety_stock_days="{{ params.safety_stock_days }}")
            view >> place >> connector_task(orders, JdbcSourceOperator)
