"""Flow 3 against the real S3 endpoint, Kafka and PostgreSQL: forecast from the monthly exports,
the inventory view, and orders that are never placed twice."""

from __future__ import annotations

import datetime as dt
import json
import os

import boto3
import psycopg2
import pytest
from confluent_kafka import Producer

from airconnect.core.errors import DataError, PermanentError
from airconnect.core.offsets import MemoryStore
from airconnect_retail.auto_order import OrderSettings, place_orders, update_inventory_view
from airconnect_retail.ordering import ItemPolicy
from airconnect_retail.sales_forecast import ForecastSettings, build_forecast, publish_forecast
from helpers import generator, read_topic

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
    assert len(values) == 9 and {v["month"] for v in values} == {"2018-11"}


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


def test_the_inventory_view_is_updated_incrementally(pg, kafka, unique):
    topic = f"zaiko-{unique}"
    st = OrderSettings(inventory_topic=topic, view=f"view-{unique}")
    store = MemoryStore()
    produce_inventory(kafka, topic, ["ITEM001,SHOP001,929,2018-10-01 01:01:01", "ITEM002,SHOP001,480,2018-10-01 01:01:01",
                                     "ITEM001,SHOP001,25,2018-10-02 02:02:02"])
    assert update_inventory_view(pg, kafka, store, st) == {"records": 3, "keys_changed": 2, "view_size": 2}
    produce_inventory(kafka, topic, ["ITEM001,SHOP001,6090,2018-10-03 03:00:00", "ITEM001,SHOP001,1,2018-09-01 00:00:00"])
    # Only the two new records are read; an older change does not overwrite a newer one.
    assert update_inventory_view(pg, kafka, store, st)["records"] == 2
    cur = pg.cursor()
    cur.execute("SELECT item_id, shop_id, stock FROM inventory_latest ORDER BY 1")
    assert cur.fetchall() == [("ITEM001", "SHOP001", 6090), ("ITEM002", "SHOP001", 480)]
    assert update_inventory_view(pg, kafka, store, st)["records"] == 0


def test_a_malformed_inventory_line_names_its_offset(pg, kafka, unique):
    topic = f"zaiko-{unique}"
    produce_inventory(kafka, topic, ["ITEM001,SHOP001,9,2018-10-01 01:01:01", "ITEM001;SHOP001;9"])
    with pytest.raises(DataError, match=rf"{topic}\[0\]@1: 'ITEM001;SHOP001;9' is not an inventory line"):
        update_inventory_view(pg, kafka, MemoryStore(), OrderSettings(inventory_topic=topic, view=f"v-{unique}"))


POLICIES = {"ITEM001": ItemPolicy("ITEM001", pack_size=12, lead_time_days=6, safety_stock_days=3),
            "ITEM002": ItemPolicy("ITEM002", pack_size=1, lead_time_days=0, safety_stock_days=0)}


def forecast_doc(month="2018-11", **units):
    return {"month": month, "series": [{"item_id": k.split("_")[0], "shop_id": k.split("_")[1], "units": v}
                                       for k, v in units.items()]}


def set_stock(pg, rows):
    cur = pg.cursor()
    for item, shop, stock in rows:
        cur.execute("INSERT INTO inventory_latest VALUES (%s, %s, %s, '2018-10-31', 0) ON CONFLICT (item_id, shop_id) "
                    "DO UPDATE SET stock = EXCLUDED.stock", (item, shop, stock))
    pg.commit()


def test_orders_by_hand_and_never_twice(pg):
    from airconnect_retail.auto_order import ensure_schema

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
