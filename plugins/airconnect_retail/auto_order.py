"""Flow 3, part 2: automatic ordering from the forecast and the latest inventory.

The inventory view
  ``inventory_latest`` (PostgreSQL, the auto-order system's database) holds the newest stock per
  item and shop. airconnect's JDBC sink writes it (``include/connectors/jdbc-inventory-view.json``:
  ``zaiko-data`` -> the transform ``ParseCsv`` -> upsert keyed by item and shop, the rows and the
  offsets in one transaction); this module only reads it. The newest change is the last one on
  ``zaiko-data``: the inventory file is a log that grows in time order, and its file source puts it
  on one partition in that order.

Orders
  For every (item, shop) with a forecast and a known stock, the order rule
  (:func:`airconnect_retail.ordering.plan_orders`) gives a quantity. Open orders (placed, not yet
  due: ``expected_at`` after the forecast month's start) are subtracted, and the computation and
  the inserts happen in one transaction holding a lock on ``auto_orders``: a re-run, or a run
  that died after the commit, finds its own orders open and orders nothing twice. The orders are
  published to ``auto-orders`` by a JDBC source (incrementing on ``order_id``), exactly once.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Final

from airconnect.core.config import project_dir
from airconnect.core.failpoints import failpoint
from airconnect.core.months import parse_month
from airconnect_retail.ordering import ItemPolicy, plan_orders

log = logging.getLogger(__name__)

#: The inventory view's table, as the JDBC sink ``jdbc-inventory-view`` creates it (``auto.create``):
#: item_id, shop_id (the key), stock, changed_at.
INVENTORY_TABLE: Final = "inventory_latest"
#: The forecasts' table, as the JDBC sink ``jdbc-sales-forecasts`` creates it from ``sales-forecast``:
#: month, item_id, shop_id (the key), units, method.
FORECAST_TABLE: Final = "sales_forecasts"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS auto_orders (
    order_id       BIGSERIAL PRIMARY KEY,
    forecast_month CHAR(7) NOT NULL,
    item_id        TEXT NOT NULL,
    shop_id        TEXT NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    status         TEXT NOT NULL DEFAULT 'open',
    expected_at    TIMESTAMP NOT NULL,
    explain        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS auto_orders_open_idx ON auto_orders (item_id, shop_id) WHERE status = 'open';
"""


def ensure_schema(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute(SCHEMA)
    cur.close()
    conn.commit()


def quote_table(name: str) -> str:
    """``table`` or ``schema.table``, quoted for PostgreSQL (the JDBC sink's ``table.name.format``)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def forecast_from_table(conn: Any, table: str = FORECAST_TABLE, month: str | None = None) -> dict[str, Any] | None:
    """The forecast of ``month`` (default: the newest) as the JDBC sink wrote it from ``sales-forecast``:
    ``{"month", "series": [{"item_id", "shop_id", "units"}, ...]}``, or None when there is none."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT to_regclass(%s)", (quote_table(table),))
        if cur.fetchone()[0] is None:  # the sink creates the table with its first record
            return None
        if not month:
            cur.execute(f"SELECT MAX(month) FROM {quote_table(table)}")
            month = cur.fetchone()[0]
            if month is None:
                return None
        cur.execute(f"SELECT item_id, shop_id, units FROM {quote_table(table)} WHERE month = %s ORDER BY item_id, shop_id",
                    (month,))
        series = [{"item_id": i, "shop_id": s, "units": float(u)} for i, s, u in cur.fetchall()]
    finally:
        cur.close()
        conn.commit()
    return {"month": month, "series": series} if series else None


def place_orders(conn: Any, forecast: Mapping[str, Any] | None, policies: Mapping[str, ItemPolicy],
                 inventory_table: str = INVENTORY_TABLE) -> dict[str, Any]:
    """Insert the orders the forecast and the inventory view (``inventory_table``, written by the
    JDBC sink) call for; return what was placed and why not."""
    ensure_schema(conn)
    if not forecast:
        log.warning("no forecast is available yet (run sales_forecast first): no orders placed")
        return {"orders": [], "placed": 0, "reason": "no forecast"}
    month = str(forecast["month"])
    y, m = parse_month(month)
    as_of = dt.datetime(y, m, 1)
    days = calendar.monthrange(y, m)[1]
    cur = conn.cursor()
    try:
        cur.execute("LOCK TABLE auto_orders IN SHARE ROW EXCLUSIVE MODE")
        cur.execute("SELECT to_regclass(%s)", (quote_table(inventory_table),))
        stock: dict[tuple[str, str], int] = {}
        if cur.fetchone()[0] is not None:  # the sink creates the table with its first record
            cur.execute(f"SELECT item_id, shop_id, stock FROM {quote_table(inventory_table)}")
            stock = {(i, s): int(q) for i, s, q in cur.fetchall()}
        if not stock:
            conn.rollback()
            log.warning("the inventory view is empty (nothing has arrived on zaiko-data yet): no orders placed")
            return {"orders": [], "placed": 0, "reason": "empty inventory", "month": month}
        cur.execute("SELECT item_id, shop_id, SUM(quantity) FROM auto_orders WHERE status = 'open' AND expected_at > %s "
                    "GROUP BY item_id, shop_id", (as_of,))
        open_orders = {(i, s): int(q) for i, s, q in cur.fetchall()}
        demand = {(r["item_id"], r["shop_id"]): float(r["units"]) for r in forecast["series"]
                  if (r["item_id"], r["shop_id"]) in stock}
        blind = sum(1 for r in forecast["series"] if (r["item_id"], r["shop_id"]) not in stock)
        lines = plan_orders(demand, stock, policies, open_orders, days_in_month=days)
        placed = []
        for line in lines:
            expected = as_of + dt.timedelta(days=line.lead_time_days)
            cur.execute("INSERT INTO auto_orders (forecast_month, item_id, shop_id, quantity, expected_at, explain) "
                        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING order_id",
                        (month, line.item_id, line.shop_id, line.quantity, expected, line.explain()))
            order_id = cur.fetchone()[0]
            placed.append({"order_id": order_id, "item_id": line.item_id, "shop_id": line.shop_id,
                           "quantity": line.quantity})
            log.info("order %s: %s", order_id, line.explain())
        failpoint("orders.inserted")
        conn.commit()
        failpoint("orders.committed")
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
    if blind:
        log.info("%d forecast series have no inventory on zaiko-data and were not ordered for", blind)
    log.info("forecast %s: %d order(s) placed from %d series with known stock", month, len(placed), len(demand))
    return {"orders": placed, "placed": len(placed), "month": month, "series_with_stock": len(demand),
            "series_without_stock": blind}


#: The topic the orders are published to (by the JDBC source definition that reads ``auto_orders``).
ORDERS_TOPIC: Final = "auto-orders"


def orders_topic() -> str:
    """``$AIRCONNECT_ORDERS_TOPIC``, else ``auto-orders``: the auto_order DAG publishes the orders with
    the JDBC source definition that writes this topic."""
    import os

    return os.environ.get("AIRCONNECT_ORDERS_TOPIC") or ORDERS_TOPIC


def default_item_master() -> str:
    """``$AIRCONNECT_ITEM_MASTER``, else ``include/items.csv`` of the project (beside Airflow's ``dags/``)."""
    import os

    return os.environ.get("AIRCONNECT_ITEM_MASTER") or str(project_dir() / "include" / "items.csv")
