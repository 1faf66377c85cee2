"""The monthly export reads a CDC topic: PostgreSQL's changes (airconnect's CDC source) -> the S3
sink with Debezium's ExtractNewRecordState (deletes rewritten as rows marked __deleted) -> monthly
objects whose rows, reduced with :func:`latest_state`, are the latest state of each sale: updates
applied, deletes honoured, a sale moved to another month counted there only."""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict

import psycopg2
import pytest

from airconnect.connectors.cdc.unwrap import latest_state
from airconnect.core.offsets import MemoryStore
from airconnect.core.runtime import run

DSN = "postgresql://airconnect:airconnect@127.0.0.1:%s/ec" % os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
S3_ENDPOINT = f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}"


@pytest.fixture
def s3():
    import boto3

    client = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id="airconnect",
                          aws_secret_access_key="airconnect-secret", region_name="us-east-1")
    bucket = f"airconnect-cdc-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def test_the_monthly_export_of_a_cdc_topic_gives_each_sales_latest_state(kafka, unique, s3):
    client, bucket = s3
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    cur = conn.cursor()
    table, slot, prefix = f"sales_{unique}", f"cdcx_{unique}", f"cdcx-{unique}"
    topic = f"{prefix}.public.{table}"
    cur.execute(f"CREATE TABLE {table} (sale_id int PRIMARY KEY, item_id varchar(16) NOT NULL, quantity int NOT NULL, "
                "sold_at timestamptz(6) NOT NULL)")
    # A delete carries the whole row (its month) only with REPLICA IDENTITY FULL; by default only its key.
    cur.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    source = {"name": f"cdcx-{unique}", "config": {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector", "db.conn.id": "postgres_ec",
        "topic.prefix": prefix, "slot.name": slot, "table.include.list": f"public\\.{table}"}}
    sink = {"name": f"s3x-{unique}", "config": {
        "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic, "s3.bucket.name": bucket,
        "timestamp.field": "sold_at", "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.delete.tombstone.handling.mode": "rewrite", "transforms.unwrap.add.fields": "source.lsn"}}
    src_store, sink_store = MemoryStore(), MemoryStore()
    try:
        cur.execute(f"INSERT INTO {table} VALUES (1, 'apple', 2, '2018-10-01T09:00:00Z'), "
                    "(2, 'pear', 3, '2018-10-02T09:00:00Z'), (3, 'fig', 4, '2018-10-31T23:00:00Z')")
        run(source, src_store, kafka, connect=lambda: psycopg2.connect(DSN))  # the snapshot
        run(sink, sink_store, kafka, s3_client=client)
        late = psycopg2.connect(DSN)  # opened before the next rows, committed after them
        try:
            late.cursor().execute(f"INSERT INTO {table} VALUES (4, 'kiwi', 5, '2018-10-15T09:00:00Z')")
            cur.execute(f"INSERT INTO {table} VALUES (5, 'plum', 6, '2018-11-01T09:00:00Z')")
            run(source, src_store, kafka, connect=lambda: psycopg2.connect(DSN))
            late.commit()
        finally:
            late.close()
        cur.execute(f"UPDATE {table} SET quantity = 20 WHERE sale_id = 1")  # sold_at kept
        cur.execute(f"DELETE FROM {table} WHERE sale_id = 2")
        cur.execute(f"UPDATE {table} SET sold_at = '2018-11-02T09:00:00Z' WHERE sale_id = 3")  # moves to November
        run(source, src_store, kafka, connect=lambda: psycopg2.connect(DSN))
        run(sink, sink_store, kafka, s3_client=client)

        rows = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"topics/{topic}/"):
            for obj in page.get("Contents", ()):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
                month = obj["Key"].split("/year=")[1][:4] + "-" + obj["Key"].split("/month=")[1][:2]
                rows += [{**json.loads(line), "_month": month} for line in body.splitlines()]
        assert len(rows) == 3 + 2 + 3  # the log: snapshot, two inserts, update, delete (rewritten), update
        state = latest_state(rows, ["sale_id"], order_field="__source_lsn")
        cur.execute(f"SELECT sale_id, item_id, quantity, to_char(sold_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM {table}")
        expected = {(sid,): (item, qty, month) for sid, item, qty, month in cur.fetchall()}
        assert {k: (r["item_id"], r["quantity"], r["_month"]) for k, r in state.items()} == expected
        per_month: dict[str, int] = defaultdict(int)
        for r in state.values():
            per_month[r["_month"]] += r["quantity"]
        assert dict(per_month) == {"2018-10": 20 + 5, "2018-11": 6 + 4}  # pear deleted; fig moved
    finally:
        cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                    (slot,))
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()
