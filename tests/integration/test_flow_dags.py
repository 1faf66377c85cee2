"""Flows 2 and 3 as a user runs them: ``airflow dags test`` of monthly_forecast_export,
sales_forecast and auto_order, against real PostgreSQL, MariaDB, Kafka and S3.

Everything is the test's own: databases, bucket, topics and connector definitions get a unique
suffix, handed to the DAGs the way a deployment would (definitions folder, AIRFLOW_CONN_*
variables, AIRCONNECT_* settings). The steps run in file order and build on each other.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from confluent_kafka import Producer

from helpers import generator, read_topic

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PG_PORT = os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
MY_PORT = os.environ.get("AIRCONNECT_MARIADB_PORT", "3306")
S3_URL = f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}"
MONTHS = 25  # 2016-10 .. 2018-10: enough history for the seasonal model


def _definitions(u: str, bucket: str) -> list[dict]:
    jdbc = "io.confluent.connect.jdbc.JdbcSourceConnector"
    return [
        {"name": f"jdbc-ec-{u}", "config": {
            "connector.class": jdbc, "db.conn.id": f"ec_{u}", "mode": "timestamp+incrementing",
            "table.whitelist": "ec_order_lines", "timestamp.column.name": "updated_at",
            "incrementing.column.name": "line_id", "topic.prefix": f"ec{u}."}},
        {"name": f"jdbc-pos-{u}", "config": {
            "connector.class": jdbc, "db.conn.id": f"pos_{u}", "mode": "timestamp+incrementing",
            "table.whitelist": "pos_sales", "timestamp.column.name": "updated_at",
            "incrementing.column.name": "sale_id", "topic.prefix": f"pos{u}."}},
        {"name": f"s3-{u}", "config": {
            "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": f"ec{u}.ec_order_lines,pos{u}.pos_sales",
            "s3.bucket.name": bucket, "aws.conn.id": "aws_forecast", "flush.size": "1000",
            "timestamp.field": "ordered_at,sold_at"}},
        {"name": f"jdbc-orders-{u}", "config": {
            "connector.class": jdbc, "db.conn.id": f"ao_{u}", "mode": "incrementing",
            "query": "SELECT order_id, forecast_month, item_id, shop_id, quantity, expected_at FROM auto_orders",
            "incrementing.column.name": "order_id", "key.columns": "order_id", "topic.prefix": f"auto-orders-{u}"}},
        {"name": f"load-zaiko-{u}", "config": {
            "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "file": "zaiko/latest.txt", "topic": f"zaiko-{u}"}},
        # The shipped inventory view (ParseCsv + upsert into inventory_latest), on this module's topic and database.
        {"name": f"inventory-view-{u}", "config": {
            **json.loads((ROOT / "include" / "connectors" / "jdbc-inventory-view.json").read_text())["config"],
            "topics": f"zaiko-{u}", "db.conn.id": f"ao_{u}"}},
        # The shipped forecasts' sink (sales-forecast -> sales_forecasts, which the orders read).
        {"name": f"forecasts-{u}", "config": {
            **json.loads((ROOT / "include" / "connectors" / "jdbc-sales-forecasts.json").read_text())["config"],
            "topics": f"sales-forecast-{u}", "db.conn.id": f"ao_{u}"}},
    ]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, kafka):
    import MySQLdb
    import psycopg2

    gen = generator()
    u = uuid.uuid4().hex[:8]
    # The DAGs log in with passwords of their own, so the secrets test can look for them.
    secrets = SimpleNamespace(pg=f"pg-{uuid.uuid4().hex}", my=f"my-{uuid.uuid4().hex}", aws=f"aws-{uuid.uuid4().hex}")
    pg_admin = psycopg2.connect(gen.default_pg_dsn())
    pg_admin.autocommit = True
    my_admin = MySQLdb.connect(host="127.0.0.1", port=int(MY_PORT), user="airconnect", password="airconnect")
    with pg_admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE ec_{u}")
        cur.execute(f"CREATE DATABASE ao_{u}")
        cur.execute(f"CREATE ROLE flows_{u} LOGIN SUPERUSER PASSWORD '{secrets.pg}'")
    my_cur = my_admin.cursor()
    my_cur.execute(f"CREATE DATABASE pos_{u}")
    for host in ("%", "localhost", "127.0.0.1"):
        my_cur.execute(f"CREATE USER 'flows_{u}'@'{host}' IDENTIFIED BY '{secrets.my}'")
        my_cur.execute(f"GRANT ALL ON pos_{u}.* TO 'flows_{u}'@'{host}'")
    pg_url = f"postgresql://airconnect:airconnect@127.0.0.1:{PG_PORT}"
    my_url = f"mysql://airconnect:airconnect@127.0.0.1:{MY_PORT}/pos_{u}"
    dag_pg_url = f"postgresql://flows_{u}:{secrets.pg}@127.0.0.1:{PG_PORT}"
    common = dict(months=gen.month_range("2018-10", MONTHS), rows_per_month=150, seed=7, reset=True, batch_size=5000)
    conn = gen.connect_pg(f"{pg_url}/ec_{u}")
    gen.generate_ec(conn, **common)
    conn.close()
    conn = gen.connect_mysql(my_url)
    gen.generate_pos(conn, **common)
    conn.close()

    s3 = boto3.client("s3", endpoint_url=S3_URL, aws_access_key_id="airconnect",
                      aws_secret_access_key="airconnect-secret", region_name="us-east-1")
    bucket = f"flows-{u}"
    s3.create_bucket(Bucket=bucket)
    base = tmp_path_factory.mktemp("flows")
    defs = base / "connectors"
    defs.mkdir()
    (defs / "flows.json").write_text(json.dumps(_definitions(u, bucket)))
    (base / "data").mkdir()
    env = {
        **os.environ,
        "AIRCONNECT_CONNECTORS_DIR": str(defs), "AIRCONNECT_DATA_DIR": str(base / "data"),
        # The DAGs run the connectors they name: here, this module's own.
        "AIRCONNECT_MONTHLY_FORECAST_EXPORT_CONNECTORS": f"jdbc-ec-{u},jdbc-pos-{u},s3-{u}",
        "AIRCONNECT_SALES_FORECAST_CONNECTORS": f"s3-{u}",
        "AIRCONNECT_AUTO_ORDER_CONNECTORS": f"jdbc-orders-{u},forecasts-{u},inventory-view-{u}",
        "AIRCONNECT_INVENTORY_SYNC_CONNECTORS": f"load-zaiko-{u}",
        f"AIRFLOW_CONN_EC_{u.upper()}": f"{dag_pg_url}/ec_{u}",
        f"AIRFLOW_CONN_AO_{u.upper()}": f"{dag_pg_url}/ao_{u}",
        f"AIRFLOW_CONN_POS_{u.upper()}": f"mysql://flows_{u}:{secrets.my}@127.0.0.1:{MY_PORT}/pos_{u}",
        "AIRFLOW_CONN_AWS_FORECAST": json.dumps({"conn_type": "aws", "login": "airconnect", "password": secrets.aws,
                                                 "extra": {"endpoint_url": S3_URL, "region_name": "us-east-1"}}),
        "AIRCONNECT_FORECAST_TOPIC": f"sales-forecast-{u}", "AIRCONNECT_ORDERS_TOPIC": f"auto-orders-{u}",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT, env=env)
    yield SimpleNamespace(u=u, s3=s3, bucket=bucket, env=env, kafka=kafka, pg_url=pg_url, my_url=my_url, gen=gen,
                          secrets=secrets, outputs=[])
    with pg_admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS ec_{u} WITH (FORCE)")
        cur.execute(f"DROP DATABASE IF EXISTS ao_{u} WITH (FORCE)")
        cur.execute(f"DROP ROLE IF EXISTS flows_{u}")
    my_cur.execute(f"DROP DATABASE IF EXISTS pos_{u}")
    for host in ("%", "localhost", "127.0.0.1"):
        my_cur.execute(f"DROP USER IF EXISTS 'flows_{u}'@'{host}'")
    pg_admin.close()
    my_admin.close()


def dags_test(hub, dag_id: str, *args: str) -> str:
    proc = subprocess.run([AIRFLOW, "dags", "test", dag_id, *args], env=hub.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    hub.outputs.append(out)
    assert proc.returncode == 0, f"airflow dags test {dag_id} failed:\n{out[-6000:]}"
    assert "state=failed" not in out.replace("previous_state=failed", ""), out[-6000:]
    return out


def objects(hub, prefix: str = "") -> dict[str, str]:
    """key -> ETag of every object under ``prefix``."""
    found = {}
    for page in hub.s3.get_paginator("list_objects_v2").paginate(Bucket=hub.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"]
    return found


def s3_json(hub, key: str):
    return json.loads(hub.s3.get_object(Bucket=hub.bucket, Key=key)["Body"].read())


def month_counts(hub, year: int, month: int) -> tuple[int, int]:
    """Rows of that month in the EC and POS tables, counted by the databases themselves."""
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    conn = hub.gen.connect_pg(f"{hub.pg_url}/ec_{hub.u}")
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM ec_order_lines WHERE ordered_at >= %s AND ordered_at < %s", (start, end))
        ec = cur.fetchone()[0]
    conn.close()
    conn = hub.gen.connect_mysql(hub.my_url)
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM pos_sales WHERE sold_at >= %s AND sold_at < %s",
                (start.replace(tzinfo=None), end.replace(tzinfo=None)))
    pos = cur.fetchone()[0]
    conn.close()
    return ec, pos


def test_the_monthly_export_writes_the_month_folder_and_its_manifest(hub):
    dags_test(hub, "monthly_forecast_export", "2018-11-01")  # the run on Nov 1st exports October
    manifest = s3_json(hub, f"manifests/s3-{hub.u}/year=2018/month=10/manifest.json")
    ec, pos = month_counts(hub, 2018, 10)
    assert ec > 0 and pos > 0
    assert manifest["topics"][f"ec{hub.u}.ec_order_lines"]["records"] == ec
    assert manifest["topics"][f"pos{hub.u}.pos_sales"]["records"] == pos
    listed = objects(hub, f"topics/pos{hub.u}.pos_sales/year=2018/month=10/")
    assert sorted(listed) == sorted(o["key"] for o in manifest["topics"][f"pos{hub.u}.pos_sales"]["objects"])
    # Every sale of every month was exported once: the objects' records add up to the tables.
    total = sum(int(hub.s3.head_object(Bucket=hub.bucket, Key=k)["Metadata"]["records"])
                for k in objects(hub, "topics/"))
    conn = hub.gen.connect_mysql(hub.my_url)
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM pos_sales")
    all_pos = cur.fetchone()[0]
    conn.close()
    conn = hub.gen.connect_pg(f"{hub.pg_url}/ec_{hub.u}")
    with conn.cursor() as c2:
        c2.execute("SELECT COUNT(*) FROM ec_order_lines")
        all_ec = c2.fetchone()[0]
    conn.close()
    assert total == all_pos + all_ec


def test_re_running_a_month_and_backfilling_a_past_one_change_no_object(hub):
    before = objects(hub, "topics/")
    manifest_before = hub.s3.get_object(Bucket=hub.bucket, Key=f"manifests/s3-{hub.u}/year=2018/month=10/manifest.json")["Body"].read()
    dags_test(hub, "monthly_forecast_export", "2018-11-01")
    dags_test(hub, "monthly_forecast_export", "2018-06-01", "-c", json.dumps({"month": "2018-03"}))
    assert objects(hub, "topics/") == before
    assert hub.s3.get_object(Bucket=hub.bucket, Key=f"manifests/s3-{hub.u}/year=2018/month=10/manifest.json")["Body"].read() == manifest_before
    march = s3_json(hub, f"manifests/s3-{hub.u}/year=2018/month=03/manifest.json")
    assert (march["topics"][f"ec{hub.u}.ec_order_lines"]["records"],
            march["topics"][f"pos{hub.u}.pos_sales"]["records"]) == month_counts(hub, 2018, 3)


def test_the_forecast_dag_forecasts_the_next_month_and_publishes_it_once(hub):
    out = dags_test(hub, "sales_forecast", "-c", json.dumps({"month": "2018-10"}))
    doc = s3_json(hub, "forecast/year=2018/month=11/forecast.json")
    assert doc["month"] == "2018-11" and doc["accuracy"]["holdout_month"] == "2018-10"
    # ~150 sales a month: small counts, so a loose bound (test_flow3 checks accuracy on a clean pattern).
    assert 0 < doc["accuracy"]["wape"] < 0.6 and doc["accuracy"]["points"] == len(doc["series"])
    png = hub.s3.get_object(Bucket=hub.bucket, Key="forecast/year=2018/month=11/actual-vs-forecast.png")["Body"].read()
    assert png.startswith(b"\x89PNG")
    assert f"s3://{hub.bucket}/forecast/year=2018/month=11/actual-vs-forecast.png" in out  # named in the task log
    topic = f"sales-forecast-{hub.u}"
    records = [json.loads(v) for v in read_topic(hub.kafka, topic)]
    assert len(records) == len(doc["series"]) > 0 and {r["payload"]["month"] for r in records} == {"2018-11"}
    dags_test(hub, "sales_forecast", "-c", json.dumps({"month": "2018-10"}))
    assert len(read_topic(hub.kafka, topic)) == len(records)


def _envelope(line: str) -> bytes:
    return json.dumps({"schema": {"type": "string", "optional": False}, "payload": line}, separators=(",", ":")).encode()


def _orders(hub) -> list[tuple]:
    conn = hub.gen.connect_pg(f"{hub.pg_url}/ao_{hub.u}")
    with conn.cursor() as cur:
        cur.execute("SELECT order_id, forecast_month, item_id, shop_id, quantity FROM auto_orders ORDER BY order_id")
        rows = cur.fetchall()
    conn.close()
    return rows


def test_auto_order_orders_what_the_forecast_and_stock_call_for_and_never_twice(hub):
    doc = s3_json(hub, "forecast/year=2018/month=11/forecast.json")
    units = {(r["item_id"], r["shop_id"]): r["units"] for r in doc["series"]}
    # ITEM002 (pack 12, lead 3 days) at SHOP001 runs out; ITEM003 at SHOP001 has plenty.
    p = Producer(hub.kafka)
    for line in ("ITEM002,SHOP001,40,2018-10-30 10:00:00", "ITEM003,SHOP001,6902,2018-10-30 10:00:00",
                 "ITEM002,SHOP001,0,2018-10-31 18:00:00"):
        p.produce(f"zaiko-{hub.u}", _envelope(line))
    p.flush(30)
    dags_test(hub, "auto_order")
    # The JDBC sink wrote the inventory view: the last change per item and shop, parsed by ParseCsv.
    conn = hub.gen.connect_pg(f"{hub.pg_url}/ao_{hub.u}")
    with conn.cursor() as cur:
        cur.execute("SELECT item_id, shop_id, stock, changed_at FROM inventory_latest ORDER BY 1, 2")
        assert cur.fetchall() == [("ITEM002", "SHOP001", 0, dt.datetime(2018, 10, 31, 18)),
                                  ("ITEM003", "SHOP001", 6902, dt.datetime(2018, 10, 30, 10))]
        # And the forecasts' JDBC sink wrote the published forecast, which the orders below come from.
        cur.execute("SELECT item_id, shop_id, units FROM sales_forecasts WHERE month = '2018-11'")
        assert {(i, s): u for i, s, u in cur.fetchall()} == units
    conn.close()

    demand = units[("ITEM002", "SHOP001")]
    need = demand * 3 / 30 + demand * 7 / 30 - 0  # lead time 3 days + 7 days of safety stock, November
    expected = math.ceil(round(need, 6) / 12) * 12
    assert expected > 0
    rows = _orders(hub)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("2018-11", "ITEM002", "SHOP001", expected)]
    published = [json.loads(v) for v in read_topic(hub.kafka, f"auto-orders-{hub.u}")]
    assert [(r["payload"]["item_id"], r["payload"]["quantity"]) for r in published] == [("ITEM002", expected)]

    dags_test(hub, "auto_order")  # a re-run (or a run after a crash) orders nothing twice
    assert _orders(hub) == rows
    assert len(read_topic(hub.kafka, f"auto-orders-{hub.u}")) == 1


def test_no_password_or_key_appears_in_task_logs_or_xcom(hub):
    """The runs above used the Connections' passwords (their own database roles, an S3 secret of
    their own): none of them may show in what the runs printed, the task log files or XCom."""
    import sqlite3

    home = Path(hub.env["AIRFLOW_HOME"])
    logs = [p for p in (home / "logs").rglob("*") if p.is_file()] if (home / "logs").exists() else []
    texts = {"the output of airflow dags test": "\n".join(hub.outputs)}
    texts.update({str(p): p.read_text(errors="replace") for p in logs})
    db = sqlite3.connect(home / "airflow.db")
    texts["XCom"] = "\n".join(str(v) for (v,) in db.execute("SELECT value FROM xcom"))
    texts["rendered template fields"] = "\n".join(str(v) for (v,) in db.execute(
        "SELECT rendered_fields FROM rendered_task_instance_fields"))
    db.close()
    assert len(hub.outputs) >= 7 and f"flows-{hub.u}" in texts["XCom"] + texts["the output of airflow dags test"]
    for name, secret in vars(hub.secrets).items():
        leaks = [where for where, text in texts.items() if secret in text]
        assert leaks == [], f"the {name} secret appears in {leaks}"
