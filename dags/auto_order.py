"""Flow 3, part 2: automatic ordering from the sales forecast and the store inventory.

Runs when a new forecast arrives (``sales_forecast``) and when inventory lines were loaded onto
``zaiko-data`` (``inventory_sync``). Each run:

1. two JDBC sinks write into the auto-order system's PostgreSQL database, each its rows and
   offsets in one transaction: ``jdbc-inventory-view`` the new ``zaiko-data`` records into
   ``inventory_latest`` (the newest stock per item and shop; airconnect's transform ``ParseCsv``
   turns each line into item_id, shop_id, stock and changed_at, upserted by (item_id, shop_id)),
   and ``jdbc-sales-forecasts`` the forecasts published on ``sales-forecast`` into
   ``sales_forecasts`` (upserted by month, item_id, shop_id);
2. ``place_orders``: for every series of the newest forecast with a known stock, orders
   demand over the lead time + safety stock - stock on hand - open orders, rounded up to whole
   packs (include/items.csv: pack_size, lead_time_days, optional safety_stock_days);
   a re-run orders nothing twice;
3. the JDBC source ``jdbc-auto-orders`` publishes the new orders to the topic ``auto-orders``
   (``$AIRCONNECT_ORDERS_TOPIC``: the DAG uses the JDBC source definition that writes it).

The auto-order system's database is the one the ``jdbc-auto-orders`` definition reads
(``db.conn.id``, ``postgres_autoorder`` on the local stack); the two sinks must write there (a
different ``db.conn.id`` is refused when the DAG is parsed).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.jdbc_sink.spec import JDBC_SINK
from airconnect.flows import connectors_of
from airconnect.operators import JdbcSinkOperator, JdbcSourceOperator
from airconnect.tasks import connector_task
from airconnect_retail.assets import INVENTORY, SALES_FORECAST
from airconnect_retail.auto_order import orders_topic
from airconnect_retail.operators import PlaceOrdersOperator
from airconnect_retail.sales_forecast import forecast_topic

# The connectors this DAG runs, by name ($AIRCONNECT_AUTO_ORDER_CONNECTORS renames them): the JDBC source
# that publishes the orders, the JDBC sinks that write the forecasts (from sales-forecast) and the
# inventory view (from zaiko-data) into the auto-order system's database.
definitions = connectors_of("auto_order", ["jdbc-auto-orders", "jdbc-sales-forecasts", "jdbc-inventory-view"],
                            JDBC_SOURCE, JDBC_SINK)
publishers = [c for c in definitions if c.cls is JDBC_SOURCE and orders_topic() in c.topics]
forecasts = [c for c in definitions if c.cls is JDBC_SINK and forecast_topic() in c.topics]
views = [c for c in definitions if c.cls is JDBC_SINK and forecast_topic() not in c.topics]
# A topic moved by its environment variable without the connector that reads or writes it would leave
# this DAG without a task: it is this DAG's import error instead, naming both.
for found, what, topic, variable in ((publishers, "JDBC source that writes the orders topic", orders_topic(),
                                      "AIRCONNECT_ORDERS_TOPIC"),
                                     (forecasts, "JDBC sink that reads the forecast topic", forecast_topic(),
                                      "AIRCONNECT_FORECAST_TOPIC"),
                                     (views, "second JDBC sink (the inventory view)", None, None)):
    if not found:
        names = ", ".join(f"'{c.name}' ({', '.join(c.topics) or 'no topic'})" for c in definitions)
        raise ValueError(f"DAG auto_order: no {what}" + (f" '{topic}' (${variable})" if topic else "")
                         + f" among its connectors {names}: change their 'topics' with the topic, or name others "
                         "with $AIRCONNECT_AUTO_ORDER_CONNECTORS")

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
        for forecast in forecasts[:1]:
            for inventory in views[:1]:
                place = PlaceOrdersOperator(orders_connector=orders, forecast_connector=forecast,
                                            inventory_connector=inventory,
                                            forecast_month="{{ params.forecast_month }}",
                                            safety_stock_days="{{ params.safety_stock_days }}")
                [connector_task(forecast, JdbcSinkOperator), connector_task(inventory, JdbcSinkOperator)] >> place
                place >> connector_task(orders, JdbcSourceOperator)
