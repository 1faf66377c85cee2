"""Flow 3, part 2: automatic ordering from the forecast and the latest inventory.

The inventory view
  ``inventory_latest`` (PostgreSQL, the auto-order system's database) keeps the newest stock per
  item and shop from ``zaiko-data``. Each run reads only the records after the view's offsets
  (kept in the Variable ``airconnect.offsets.<view>`` in Connect's sink shape) and upserts them,
  keeping the newest change per key; a replay after a crash re-applies the same changes, which
  leaves the view as it was, so saving the offsets after the database commit is enough.

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
import csv
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from airconnect.core.config import project_dir
from airconnect.core.converters import payload_text
from airconnect.core.delivery import SinkDelivery
from airconnect.core.errors import DataError
from airconnect.core.failpoints import failpoint
from airconnect.core.months import parse_month
from airconnect.core.offsets import KeyValueStore
from airconnect.core.progress import Progress
from airconnect_retail.ordering import ItemPolicy, plan_orders

log = logging.getLogger(__name__)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS inventory_latest (
    item_id      TEXT NOT NULL,
    shop_id      TEXT NOT NULL,
    stock        BIGINT NOT NULL,
    changed_at   TIMESTAMP NOT NULL,
    kafka_offset BIGINT NOT NULL,
    PRIMARY KEY (item_id, shop_id)
);
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


@dataclass(frozen=True)
class OrderSettings:
    inventory_topic: str = "zaiko-data"
    view: str = "auto-order-inventory"  # the offsets name of the inventory view


def ensure_schema(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute(SCHEMA)
    cur.close()
    conn.commit()


def parse_inventory_line(text: str) -> tuple[str, str, int, dt.datetime]:
    """``ITEM001,SHOP001,929,2018-10-01 01:01:01`` -> (item, shop, stock, changed_at)."""
    fields = next(csv.reader([text]))
    if len(fields) != 4:
        raise ValueError(f"expected 4 fields (item, shop, stock, time), got {len(fields)}")
    item, shop, stock, when = (f.strip() for f in fields)
    if not item or not shop:
        raise ValueError("empty item or shop id")
    return item, shop, int(stock), dt.datetime.fromisoformat(when)


def update_inventory_view(conn: Any, kafka: Mapping[str, Any], store: KeyValueStore,
                          settings: OrderSettings = OrderSettings()) -> dict[str, Any]:
    """Apply the new inventory records to ``inventory_latest``; return counts."""
    ensure_schema(conn)
    progress = Progress(log, f"inventory view <- {settings.inventory_topic}")
    with SinkDelivery(settings.view, store, kafka, [settings.inventory_topic], group=f"airconnect-{settings.view}") as delivery:
        return _apply_inventory(conn, delivery, settings, progress)


def _apply_inventory(conn: Any, delivery: SinkDelivery, settings: OrderSettings, progress: Progress) -> dict[str, Any]:
    latest: dict[tuple[str, str], tuple[int, dt.datetime, int]] = {}
    records = 0
    for msg in delivery.records():
        text = payload_text(msg.value())
        if text is None:
            continue
        try:
            item, shop, stock, when = parse_inventory_line(text)
        except ValueError as exc:
            raise DataError(f"{settings.inventory_topic}[{msg.partition()}]@{msg.offset()}: {text!r} is not an "
                            f"inventory line ({exc}); the view's offset stays before it") from None
        records += 1
        old = latest.get((item, shop))
        if old is None or when >= old[1]:
            latest[(item, shop)] = (stock, when, msg.offset())
    progress.add(records)
    if latest:
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO inventory_latest (item_id, shop_id, stock, changed_at, kafka_offset) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (item_id, shop_id) DO UPDATE SET stock = EXCLUDED.stock, changed_at = EXCLUDED.changed_at, "
            "kafka_offset = EXCLUDED.kafka_offset WHERE inventory_latest.changed_at <= EXCLUDED.changed_at",
            [(i, s, st, w, o) for (i, s), (st, w, o) in sorted(latest.items())],
        )
        cur.close()
    failpoint("view.applied")
    conn.commit()
    failpoint("view.committed")
    moved = {k: pp.next_offset for k, pp in delivery.positions.items() if pp.next_offset != pp.start}
    if moved:  # the view is committed: now its offsets
        delivery.checkpoint(moved)
    progress.done()
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM inventory_latest")
    size = int(cur.fetchone()[0])
    cur.close()
    return {"records": records, "keys_changed": len(latest), "view_size": size}


def place_orders(conn: Any, forecast: Mapping[str, Any] | None, policies: Mapping[str, ItemPolicy]) -> dict[str, Any]:
    """Insert the orders the forecast and the inventory call for; return what was placed and why not."""
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
        cur.execute("SELECT item_id, shop_id, stock FROM inventory_latest")
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
