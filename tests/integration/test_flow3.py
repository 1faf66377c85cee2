"""Flow 3 against the real S3 endpoint, Kafka and PostgreSQL: forecast from the monthly exports,
the inventory view (the shipped JDBC sink definition, ParseCsv and upsert), and orders that are
never placed twice."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import boto3
import psycopg2
import pytest
from confluent_kafka import Producer

from airconnect.core.errors import DataError, PermanentError
from airconnect.core.offsets import MemoryStore
from airconnect.core.runtime import run
from airconnect_retail.auto_order import ensure_schema, forecast_from_table, place_orders
from airconnect_retail.ordering import ItemPolicy
from airconnect_retail.sales_forecast import ForecastSettings, build_forecast, publish_forecast
from helpers import generator, read_topic

ROOT = Path(__file__).resolve().parents[2]

MONTHS = [(2016 + (9 + i) // 12, (9 + i) % 12 + 1) for i in range(25)]  # 2016-10 .. 2018-10
ITEMS = ["ITEM001", "ITEM010", "ITEM020"]


@pytest.fixture(scope="module")
def s3():
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}",
                        aws_access_key_id="airconnect", aws_secret_access_key="airconnect-secret", region_name="us-east-1")


@pytest.fixture
def bucket(s3, unique):
    name = f"flow3-{unique}"
    s3.create_bucket(Bucket=name)
    return name


def write_exports(s3, bucket, months=MONTHS, shops=("SHOP001", "SHOP002")):
    """Monthly objects as the S3 sink writes them, following the generator's known demand pattern."""
    gen = generator()
    for y, m in months:
        pos = [{"sale_id": i, "shop_id": shop, "item_id": item, "quantity": round(gen.expected_monthly_units(item, shop, y, m)),
                "unit_price": 1.5, "sold_at": f"{y:04d}-{m:02d}-15T10:00:00.000000Z"}
               for i, (item, shop) in enumerate((i, s) for i in ITEMS for s in shops)]
        ec = [{"line_id": i, "item_id": item, "quantity": round(gen.expected_monthly_units(item, "EC", y, m)),
               "ordered_at": f"{y:04d}-{m:02d}-15T10:00:00.000000Z"} for i, item in enumerate(ITEMS)]
        for topic, rows in (("pos.pos_sales", pos), ("ec.ec_order_lines", ec)):
            body = "".join(json.dumps(r) + "\n" for r in rows).encode()
            s3.put_object(Bucket=bucket, Key=f"topics/{topic}/year={y}/month={m:02d}/{topic}+0+{y * 100 + m:010d}.json", Body=body)


def settings(bucket):
    return ForecastSettings(bucket=bucket, topics=("ec.ec_order_lines", "pos.pos_sales"))


def test_the_forecast_recovers_the_known_seasonal_pattern(s3, bucket):
    write_exports(s3, bucket)
    doc = build_forecast(s3, settings(bucket), "2018-10")
    assert doc["month"] == "2018-11" and doc["accuracy"]["holdout_month"] == "2018-10"
    gen = generator()
    assert len(doc["series"]) == len(ITEMS) * 3
    for row in doc["series"]:
        expected = gen.expected_monthly_units(row["item_id"], row["shop_id"], 2018, 11)
        assert row["method"] == "holt_winters", row
        assert abs(row["units"] - expected) <= 0.05 * expected + 1, (row, expected)
    assert doc["accuracy"]["wape"] is not None and doc["accuracy"]["wape"] < 0.05
    stored = json.loads(s3.get_object(Bucket=bucket, Key="forecast/year=2018/month=11/forecast.json")["Body"].read())
    assert stored["series"] == doc["series"]
    png = s3.get_object(Bucket=bucket, Key="forecast/year=2018/month=11/actual-vs-forecast.png")["Body"].read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_short_history_uses_a_simpler_model_and_says_so(s3, bucket):
    write_exports(s3, bucket, MONTHS[-8:])
    doc = build_forecast(s3, settings(bucket), "2018-10")
    assert {r["method"] for r in doc["series"]} == {"holt"}


def test_no_export_for_the_month_is_a_clear_error(s3, bucket):
    with pytest.raises(PermanentError, match="no sales found .* run the monthly export"):
        build_forecast(s3, settings(bucket), "2018-10")
    write_exports(s3, bucket, MONTHS[:-1])
    with pytest.raises(PermanentError, match="no sales for 2018-10 itself"):
        build_forecast(s3, settings(bucket), "2018-10")


def test_the_forecast_is_published_once(s3, bucket, kafka, unique):
    write_exports(s3, bucket, MONTHS[-8:])
    doc = build_forecast(s3, settings(bucket), "2018-10")
    st = ForecastSettings(bucket=bucket, topics=(), forecast_topic=f"sales-forecast-{unique}", publisher=f"fc-{unique}")
    store = MemoryStore()
    assert publish_forecast(doc, st, kafka, store)["published"] == 9
    assert publish_forecast(doc, st, kafka, store)["already_published"] is True
    values = [json.loads(v) for v in read_topic(kafka, st.forecast_topic)]
    assert len(values) == 9 and {v["payload"]["month"] for v in values} == {"2018-11"}
    # Connect's JSON envelope (a struct), so the forecasts' JDBC sink writes them into the auto-order
    # system's sales_forecasts table, which the orders read: the same series as the forecast document.
    assert [f["field"] for f in values[0]["schema"]["fields"]] == ["month", "item_id", "shop_id", "units", "method"]
    pg = psycopg2.connect(os.environ["AIRFLOW_CONN_POSTGRES_AUTOORDER"], options=f"-c search_path=t_{unique}")
    try:
        pg.cursor().execute(f"CREATE SCHEMA t_{unique}")
        pg.commit()
        sink = json.loads((ROOT / "include" / "connectors" / "jdbc-sales-forecasts.json").read_text())
        sink = {"name": f"forecasts-{unique}", "config": {**sink["config"], "topics": st.forecast_topic}}
        assert run_view(sink, MemoryStore(), kafka, unique)["written"] == 9
        assert forecast_from_table(pg) == {"month": "2018-11", "series": sorted(
            ({"item_id": r["item_id"], "shop_id": r["shop_id"], "units": r["units"]} for r in doc["series"]),
            key=lambda r: (r["item_id"], r["shop_id"]))}
        assert forecast_from_table(pg, month="2018-12") is None
    finally:
        pg.rollback()
        pg.cursor().execute(f"DROP SCHEMA t_{unique} CASCADE")
        pg.commit()
        pg.close()


@pytest.fixture
def pg(unique):
    conn = psycopg2.connect(os.environ["AIRFLOW_CONN_POSTGRES_AUTOORDER"])
    cur = conn.cursor()
    cur.execute(f"CREATE SCHEMA t_{unique}")
    cur.execute(f"SET search_path TO t_{unique}")
    conn.commit()
    yield conn
    conn.rollback()
    cur = conn.cursor()
    cur.execute(f"DROP SCHEMA t_{unique} CASCADE")
    conn.commit()
    conn.close()


def produce_inventory(kafka, topic, lines):
    p = Producer(kafka)
    for line in lines:
        p.produce(topic, ('{"schema":{"type":"string","optional":false},"payload":%s}' % json.dumps(line)).encode())
    p.flush(10)


def inventory_view(unique, topic, **config):
    """The shipped definition (include/connectors/jdbc-inventory-view.json), reading ``topic``."""
    doc = json.loads((ROOT / "include" / "connectors" / "jdbc-inventory-view.json").read_text())
    return {"name": f"inventory-view-{unique}", "config": {**doc["config"], "topics": topic, **config}}


def run_view(definition, store, kafka, unique):
    dsn = os.environ["AIRFLOW_CONN_POSTGRES_AUTOORDER"]
    return run(definition, store, kafka, connect=lambda: psycopg2.connect(dsn, options=f"-c search_path=t_{unique}"))


def view_rows(pg):
    cur = pg.cursor()
    cur.execute("SELECT item_id, shop_id, stock, changed_at FROM inventory_latest ORDER BY 1, 2")
    rows = cur.fetchall()
    pg.commit()
    return rows


def test_the_inventory_view_connector_keeps_the_last_change_per_item_and_shop_and_orders_from_it(pg, kafka, unique):
    topic, store = f"zaiko-{unique}", MemoryStore()
    view = inventory_view(unique, topic)
    produce_inventory(kafka, topic, ["ITEM001,SHOP001,929,2018-10-01 01:01:01", "ITEM002,SHOP001,480,2018-10-01 01:01:01",
                                     "ITEM001,SHOP001,25,2018-10-02 02:02:02"])
    result = run_view(view, store, kafka, unique)
    assert (result["records"], result["written"], result["tables_created"]) == (3, 3, ["inventory_latest"])
    assert view_rows(pg) == [("ITEM001", "SHOP001", 25, dt.datetime(2018, 10, 2, 2, 2, 2)),
                             ("ITEM002", "SHOP001", 480, dt.datetime(2018, 10, 1, 1, 1, 1))]
    # Only the new records are read; each key keeps its last change on the topic (the inventory file
    # is a log in time order; a line with an older time written after a newer one would win).
    produce_inventory(kafka, topic, ["ITEM001,SHOP001,6090,2018-10-03 03:00:00", "ITEM002,SHOP001,3,2018-10-31 21:00:00"])
    assert run_view(view, store, kafka, unique)["records"] == 2
    assert view_rows(pg) == [("ITEM001", "SHOP001", 6090, dt.datetime(2018, 10, 3, 3, 0)),
                             ("ITEM002", "SHOP001", 3, dt.datetime(2018, 10, 31, 21, 0))]
    assert run_view(view, store, kafka, unique)["records"] == 0
    # The orders read the view the connector wrote: ITEM002 (100/month, pack 1, no lead time or safety
    # stock) has 3 on hand and needs nothing; with its stock at 0 and 10 units of safety stock it would.
    doc = forecast_doc(ITEM001_SHOP001=300.0, ITEM002_SHOP001=100.0)
    policies = {**POLICIES, "ITEM002": ItemPolicy("ITEM002", pack_size=1, lead_time_days=0, safety_stock_days=3)}
    result = place_orders(pg, doc, policies)
    # ITEM001: lead 6 d = 60 + safety 3 d = 30 - 6090 on hand -> nothing; ITEM002: 10 - 3 = 7.
    assert [(o["item_id"], o["quantity"]) for o in result["orders"]] == [("ITEM002", 7)]


def test_a_malformed_inventory_line_stops_the_view_before_it(pg, kafka, unique):
    topic, store = f"zaiko-{unique}", MemoryStore()
    produce_inventory(kafka, topic, ["ITEM001,SHOP001,9,2018-10-01 01:01:01", "ITEM001;SHOP001;9"])
    view = inventory_view(unique, topic)
    with pytest.raises(DataError, match=r"inventory-view-.*parse.*'ITEM001;SHOP001;9' has 1 field\(s\); expected 4"):
        run_view(view, store, kafka, unique)
    assert view_rows(pg) == [("ITEM001", "SHOP001", 9, dt.datetime(2018, 10, 1, 1, 1, 1))]  # the line before it
    with pytest.raises(DataError):  # its offset did not move past the bad line
        run_view(view, store, kafka, unique)


POLICIES = {"ITEM001": ItemPolicy("ITEM001", pack_size=12, lead_time_days=6, safety_stock_days=3),
            "ITEM002": ItemPolicy("ITEM002", pack_size=1, lead_time_days=0, safety_stock_days=0)}


def forecast_doc(month="2018-11", **units):
    return {"month": month, "series": [{"item_id": k.split("_")[0], "shop_id": k.split("_")[1], "units": v}
                                       for k, v in units.items()]}


def set_stock(pg, rows):
    """Stock as the inventory view's sink leaves it (its table, as auto.create makes it)."""
    cur = pg.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS inventory_latest (item_id TEXT NOT NULL, shop_id TEXT NOT NULL, "
                "stock BIGINT NOT NULL, changed_at TIMESTAMP NOT NULL, PRIMARY KEY (item_id, shop_id))")
    for item, shop, stock in rows:
        cur.execute("INSERT INTO inventory_latest VALUES (%s, %s, %s, '2018-10-31') ON CONFLICT (item_id, shop_id) "
                    "DO UPDATE SET stock = EXCLUDED.stock", (item, shop, stock))
    pg.commit()


def test_orders_by_hand_and_never_twice(pg):
    ensure_schema(pg)
    set_stock(pg, [("ITEM001", "SHOP001", 10), ("ITEM002", "SHOP001", 500)])
    # ITEM001: 300/month over 30 days -> lead 6 d = 60, safety 3 d = 30; need 60 + 30 - 10 = 80 -> 7 packs of 12 = 84.
    # ITEM002: 100/month, no lead time or safety stock, 500 on hand -> nothing.
    doc = forecast_doc(ITEM001_SHOP001=300.0, ITEM002_SHOP001=100.0, ITEM003_SHOP009=50.0)
    result = place_orders(pg, doc, POLICIES)
    assert [(o["item_id"], o["shop_id"], o["quantity"]) for o in result["orders"]] == [("ITEM001", "SHOP001", 84)]
    assert result["series_without_stock"] == 1
    assert place_orders(pg, doc, POLICIES)["placed"] == 0  # the open order covers the need
    cur = pg.cursor()
    cur.execute("SELECT quantity, expected_at, explain FROM auto_orders")
    (qty, expected, explain), = cur.fetchall()
    assert qty == 84 and expected == dt.datetime(2018, 11, 7) and "need 80" in explain
    # Stock falls to -20 (back orders): need 60 + 30 + 20 - 84 open = 26 -> 3 packs = 36 more.
    set_stock(pg, [("ITEM001", "SHOP001", -20)])
    assert [o["quantity"] for o in place_orders(pg, doc, POLICIES)["orders"]] == [36]


def test_no_forecast_or_empty_inventory_gives_no_orders(pg, caplog):
    assert place_orders(pg, None, POLICIES)["reason"] == "no forecast"
    result = place_orders(pg, forecast_doc(ITEM001_SHOP001=300.0), POLICIES)
    assert result["placed"] == 0 and result["reason"] == "empty inventory"
    assert any("inventory view is empty" in r.getMessage() for r in caplog.records)
