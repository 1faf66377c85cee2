"""What scripts/demo.sh shows of flows 2 and 3, and how it starts them afresh.

    python scripts/demo_show.py fresh            reset flows 2-3: offsets, topics, bucket, the auto-order system's tables
    python scripts/demo_show.py month 2018-10    the month's S3 objects and the sink's manifest of it
    python scripts/demo_show.py forecast 2018-11 the forecast's accuracy, a few series, the chart (saved locally)
    python scripts/demo_show.py orders           the auto-order system's orders and the auto-orders topic

Uses the local stack's Airflow Connections (scripts/env.sh) through airconnect's own code.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from airconnect.connectors.s3.manifest import manifest_key
from airconnect.core.manage import delete_topics, reset_named_offsets, reset_offsets
from airconnect.core.registry import load_definitions
from airconnect.hooks import VariableStore, kafka_config
from airconnect.operators import offsets_resources, s3_client
from airconnect_retail.auto_order import orders_topic
from airconnect_retail.sales_forecast import forecast_topic

logging.disable(logging.INFO)  # the demo prints what matters itself

DEFS = {c.name: c for c in load_definitions()}
SINK = next(c for c in DEFS.values() if c.cls.name == "airconnect.S3Sink")
BUCKET = SINK["s3.bucket.name"]
FLOW_2_3 = [name for name, c in DEFS.items() if c.cls.name in ("airconnect.JdbcSource", "airconnect.S3Sink")]
# The JDBC sinks into the auto-order system (the forecasts, the inventory view): their offsets and
# tables are reset; their topics are kept (zaiko-data is flow 1's; sales-forecast is deleted below).
DB_SINKS = [c for c in DEFS.values() if c.cls.name == "airconnect.JdbcSink"]


def _s3():
    return s3_client(SINK["aws.conn.id"])


def _autoorder_conn():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    orders = next(c for c in DEFS.values() if orders_topic() in c.topics)
    return PostgresHook(postgres_conn_id=orders["db.conn.id"]).get_conn()


def fresh() -> None:
    kafka, store = kafka_config(), VariableStore()
    topics: list[str] = []
    for name in FLOW_2_3:
        reset_offsets(DEFS[name], store, kafka, redeliver=True)  # its topics are deleted below
        topics += DEFS[name].topics
    reset_named_offsets(forecast_topic(), store, kafka)
    for db_sink in DB_SINKS:
        # its table is dropped below; its offsets kept beside its rows go with the reset
        reset_offsets(db_sink, store, kafka, redeliver=True, resources=offsets_resources(db_sink))
    deleted = delete_topics(sorted({*topics, forecast_topic(), orders_topic()}), kafka)
    s3, n = _s3(), 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
            n += 1
    conn = _autoorder_conn()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS auto_orders, inventory_latest, sales_forecasts")
    conn.commit()
    conn.close()
    print(f"offsets reset: {', '.join([*FLOW_2_3, forecast_topic(), *(v.name for v in DB_SINKS)])}; "
          f"topics deleted: {', '.join(deleted) or '(none)'}; {n} objects removed from s3://{BUCKET}; "
          "order, inventory and forecast tables dropped")


def month(ym: str) -> None:
    y, m = ym.split("-")
    s3 = _s3()
    print(f"s3://{BUCKET}/")
    for topic in SINK["topics"]:
        prefix = f"{SINK['topics.dir']}/{topic}/year={y}/month={m}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                records = s3.head_object(Bucket=BUCKET, Key=obj["Key"])["Metadata"].get("records", "?")
                print(f"  {obj['Key']}  ({records} records, {obj['Size']:,} bytes)")
    key = manifest_key(SINK.name, int(y), int(m))  # the sink's own: manifests/<connector>/year=YYYY/month=MM/
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    per_topic = ", ".join(f"{t} {v['records']}" for t, v in doc["topics"].items())
    stale = f"; {len(doc['stale'])} stale object(s) left out" if doc.get("stale") else ""
    print(f"  {key}  (connector {doc['connector']}: {doc['objects']} objects, {doc['records']} records: "
          f"{per_topic}{stale})")


def forecast(ym: str) -> None:
    y, m = ym.split("-")
    base = f"forecast/year={y}/month={m}"
    s3 = _s3()
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}/forecast.json")["Body"].read())
    acc = doc["accuracy"]
    print(f"s3://{BUCKET}/{base}/forecast.json: {doc['based_on']['series']} series from {doc['based_on']['months']}; "
          f"methods {doc['methods']}")
    print(f"accuracy on the hold-out month {acc['holdout_month']}: WAPE {acc['wape']:.1%}, MAPE {acc['mape']:.1%}")
    print("item     shop     units  method        (hold-out: actual / forecast)")
    for r in [r for r in doc["series"] if r["shop_id"] == "SHOP001"][:5]:
        print(f"{r['item_id']}  {r['shop_id']}  {r['units']:6.1f}  {r['method']:<12}  "
              f"({r['holdout_actual'][0]:.0f} / {r['holdout_forecast'][0]:.1f})")
    out = Path(os.environ.get("AIRCONNECT_DATA_DIR", "data")) / "forecast" / f"actual-vs-forecast-{ym}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(s3.get_object(Bucket=BUCKET, Key=f"{base}/actual-vs-forecast.png")["Body"].read())
    print(f"chart: s3://{BUCKET}/{base}/actual-vs-forecast.png (copied to {out})")


def orders() -> None:
    conn = _autoorder_conn()
    with conn.cursor() as cur:
        cur.execute("SELECT item_id, shop_id, stock, changed_at FROM inventory_latest ORDER BY item_id, shop_id")
        print("inventory_latest (the newest stock per item and shop, from zaiko-data by the JDBC sink):")
        for row in cur.fetchall():
            print("  " + "  ".join(str(v) for v in row))
        cur.execute("SELECT order_id, forecast_month, item_id, shop_id, quantity, explain FROM auto_orders ORDER BY order_id")
        rows = cur.fetchall()
    conn.close()
    print(f"auto_orders ({len(rows)}):")
    for order_id, fm, item, shop, qty, why in rows:
        print(f"  #{order_id} {fm} {item} {shop} {qty} units: {why}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import read_topic  # a plain read_committed consumer from the beginning

    values = read_topic(kafka_config(), orders_topic())
    print(f"topic {orders_topic()}: {len(values)} record(s), one per order")
    for v in values[-3:]:
        payload = json.loads(v)["payload"]
        print(f"  {json.dumps(payload, ensure_ascii=False)}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    {"fresh": fresh, "month": month, "forecast": forecast, "orders": orders}.get(cmd, lambda *_: print(__doc__))(*args)
