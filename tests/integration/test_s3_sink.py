"""Flow 2's export against the real broker and the real S3 endpoint: sales topics -> one S3
folder per month, exactly once, with Kafka Connect's object names."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import random
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from airconnect.connectors.s3.manifest import write_month_manifest
from airconnect.core.errors import ConfigError, DataError, PermanentError, TransientError
from airconnect.core.manage import reset_offsets
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from airconnect.core.runtime import run

S3_ENDPOINT = f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}"
MiB = 1024 * 1024

# A JsonConverter schema for a POS sale (Connect's Decimal with decimal.format=NUMERIC).
SALE_SCHEMA = (
    '{"type":"struct","optional":false,"name":"pos.sales","fields":['
    '{"type":"int64","optional":false,"field":"sale_id"},'
    '{"type":"string","optional":false,"field":"item_id"},'
    '{"type":"int32","optional":false,"field":"quantity"},'
    '{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,'
    '"parameters":{"scale":"2"},"field":"amount"},'
    '{"type":"string","optional":false,"field":"sold_at"}]}'
)


def sale(sale_id: int, sold_at: str, amount: str = "12.50", **extra: str) -> str:
    """A sale's payload as JSON text, so its decimals are written exactly as given."""
    more = "".join(f',"{k}":{v}' for k, v in extra.items())
    return (f'{{"sale_id":{sale_id},"item_id":"ITEM{sale_id % 100:03d}","quantity":2,'
            f'"amount":{amount},"sold_at":"{sold_at}"{more}}}')


def envelope(payload: str) -> bytes:
    return f'{{"schema":{SALE_SCHEMA},"payload":{payload}}}'.encode()


@pytest.fixture(scope="module")
def s3():
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id="airconnect",
                          aws_secret_access_key="airconnect-secret", region_name="us-east-1",
                          config=Config(retries={"max_attempts": 2}))
    try:
        client.list_buckets()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"S3 at {S3_ENDPOINT} is not reachable ({exc}); start it: scripts/stack.sh start s3")
    return client


def _new_bucket(s3) -> str:
    name = f"airconnect-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _drop_bucket(s3, name: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", ()):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def bucket(s3):
    name = _new_bucket(s3)
    yield name
    _drop_bucket(s3, name)


@pytest.fixture
def second_bucket(s3):
    name = _new_bucket(s3)
    yield name
    _drop_bucket(s3, name)


class Flow:
    """A fresh topic and an S3 sink definition for it; helpers to produce, run and look."""

    def __init__(self, kafka: dict[str, Any], s3, bucket: str, unique: str, partitions: int = 1):
        self.kafka, self.s3, self.bucket = kafka, s3, bucket
        self.topic = f"sales-{unique}"
        self.name = f"s3-{unique}"
        self.store = MemoryStore()
        self.config: dict[str, Any] = {
            "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": self.topic,
            "s3.bucket.name": bucket, "timestamp.field": "sold_at,updated_at",
        }
        if partitions > 1:
            admin = AdminClient(kafka)
            admin.create_topics([NewTopic(self.topic, num_partitions=partitions, replication_factor=1)])[self.topic].result()

    def definition(self, **extra: Any) -> dict[str, Any]:
        return {"name": self.name, "config": {**self.config, **{k: str(v) for k, v in extra.items()}}}

    def produce(self, values: list[bytes], partition: int | None = None) -> None:
        producer = Producer({**self.kafka, "enable.idempotence": True, "linger.ms": 5})
        for value in values:
            while True:
                try:
                    if partition is None:
                        producer.produce(self.topic, value)
                    else:
                        producer.produce(self.topic, value, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.1)
        assert producer.flush(30) == 0

    def run(self, store=None, client=None, **extra: Any) -> dict[str, Any]:
        return run(self.definition(**extra), self.store if store is None else store, self.kafka,
                   s3_client=client or self.s3)

    def objects(self, bucket: str | None = None) -> dict[str, bytes]:
        """Key -> bytes of every object under this topic's folder."""
        b = bucket or self.bucket
        found = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=f"topics/{self.topic}/"):
            for obj in page.get("Contents", ()):
                found[obj["Key"]] = self.s3.get_object(Bucket=b, Key=obj["Key"])["Body"].read()
        return found

    def metadata(self, key: str) -> dict[str, str]:
        return self.s3.head_object(Bucket=self.bucket, Key=key)["Metadata"]

    def key(self, year: int, month: int, offset: int, partition: int = 0, ext: str = ".json") -> str:
        return f"topics/{self.topic}/year={year}/month={month:02d}/{self.topic}+{partition}+{offset:010d}{ext}"

    def saved_offsets(self) -> dict[int, int]:
        raw = self.store.get(f"airconnect.offsets.{self.name}")
        if raw is None:
            return {}
        return {e["partition"]["kafka_partition"]: e["offset"]["kafka_offset"] for e in json.loads(raw)["offsets"]}


@pytest.fixture
def flow(kafka, s3, bucket, unique):
    return Flow(kafka, s3, bucket, unique)


def lines(body: bytes) -> list[str]:
    return body.decode("utf-8").splitlines()


class _DiesOnSet(MemoryStore):
    """An offset store whose writes fail after ``lives`` of them: the run dies after uploading
    objects, before their offsets are saved."""

    def __init__(self, *args: Any, lives: int = 0):
        super().__init__(*args)
        self.lives = lives

    def set(self, key, value):
        if self.lives <= 0:
            raise RuntimeError("killed before the offset Variable was set")
        self.lives -= 1
        super().set(key, value)


class _CountingClient:
    """A boto3 client that counts the calls made through it."""

    def __init__(self, client):
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if callable(attr):
            def call(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return call
        return attr


# --- layout and contents -------------------------------------------------------------------------


def test_records_land_in_monthly_folders_with_connect_names_and_exact_decimals(flow):
    october = [sale(1, "2018-10-01T09:00:00Z"), sale(2, "2018-10-31T23:59:59.999Z", "0.10")]
    november = [sale(3, "2018-11-01T00:00:00Z", "1234567890.123456789")]
    plain_oct = '{"order_id":"EC-9","total":100.00,"updated_at":1538352000000}'  # epoch ms: 2018-10-01T00:00Z
    plain_nov = '{"order_id":"EC-10","total":75.000,"updated_at":"2018-11-30T12:00:00+09:00"}'
    flow.produce([envelope(october[0]), envelope(november[0]), plain_oct.encode(),
                  envelope(october[1]), plain_nov.encode()])

    result = flow.run()

    oct_key, nov_key = flow.key(2018, 10, 0), flow.key(2018, 11, 1)
    assert result["records"] == 5 and result["months"] == ["2018-10", "2018-11"]
    assert sorted(result["objects"]) == sorted([oct_key, nov_key])
    objects = flow.objects()
    assert set(objects) == {oct_key, nov_key}
    assert lines(objects[oct_key]) == [october[0], plain_oct, october[1]]  # payloads only, digits kept
    assert lines(objects[nov_key]) == [november[0], plain_nov]
    assert '"amount":12.50' in lines(objects[oct_key])[0]
    assert result["bytes"] == sum(len(b) for b in objects.values())
    assert flow.metadata(oct_key) == {"records": "3", "first-offset": "0", "last-offset": "3",
                                      "sha256": hashlib.sha256(objects[oct_key]).hexdigest(),
                                      "kafka-topic-id": kafka_topic_id(flow.kafka, flow.topic)}
    assert flow.saved_offsets() == {0: 5} and result["offsets"] == {f"{flow.topic}[0]": 5}


def test_flush_size_rotates_objects_at_offsets_counted_per_month(flow):
    months = [10, 10, 11, 10, 10, 11, 10, 10, 10]
    flow.produce([envelope(sale(i, f"2018-{m}-05T00:00:00Z")) for i, m in enumerate(months)])

    result = flow.run(**{"flush.size": 3})

    expected = {flow.key(2018, 10, 0): [0, 1, 3], flow.key(2018, 10, 4): [4, 6, 7],
                flow.key(2018, 10, 8): [8], flow.key(2018, 11, 2): [2, 5]}
    objects = flow.objects()
    assert set(objects) == set(expected) == set(result["objects"])
    for key, ids in expected.items():
        assert [json.loads(line)["sale_id"] for line in lines(objects[key])] == ids


def test_flush_size_bytes_rotates_on_uncompressed_size(flow):
    flow.produce([envelope(sale(i, "2018-10-05T00:00:00Z")) for i in range(5)])
    line_size = len(sale(0, "2018-10-05T00:00:00Z")) + 1
    flow.run(**{"flush.size.bytes": 2 * line_size})  # two lines reach the limit
    assert sorted(flow.objects()) == [flow.key(2018, 10, 0), flow.key(2018, 10, 2), flow.key(2018, 10, 4)]


def test_the_month_is_the_calendar_month_in_the_configured_timezone(flow):
    flow.produce([envelope(sale(1, "2018-10-31T20:00:00Z"))])  # 2018-11-01 05:00 in Tokyo
    flow.run(**{"timezone": "Asia/Tokyo"})
    assert list(flow.objects()) == [flow.key(2018, 11, 0)]

    flow.name += "-utc"
    flow.config["topics.dir"] = "utc"
    assert flow.run()["months"] == ["2018-10"]
    keys = [o["Key"] for o in flow.s3.list_objects_v2(Bucket=flow.bucket, Prefix=f"utc/{flow.topic}/")["Contents"]]
    assert keys == [f"utc/{flow.topic}/year=2018/month=10/{flow.topic}+0+0000000000.json"]


# --- exactly once --------------------------------------------------------------------------------


def test_new_records_are_exported_once_and_a_pass_without_news_changes_nothing(flow):
    flow.produce([envelope(sale(i, "2018-10-02T00:00:00Z")) for i in range(3)])
    flow.run()
    before = flow.objects()
    assert list(before) == [flow.key(2018, 10, 0)]

    flow.produce([envelope(sale(i, "2018-10-03T00:00:00Z")) for i in range(3, 5)])
    result = flow.run()
    assert result["records"] == 2 and result["objects"] == [flow.key(2018, 10, 3)]
    after = flow.objects()
    assert {k: after[k] for k in before} == before  # old objects untouched
    assert [json.loads(line)["sale_id"] for line in lines(after[flow.key(2018, 10, 3)])] == [3, 4]

    store_before = dict(flow.store)
    result = flow.run()
    assert (result["records"], result["objects"], result["bytes"]) == (0, [], 0)
    assert flow.objects() == after and dict(flow.store) == store_before


def test_a_run_killed_after_uploading_before_saving_offsets_rewrites_the_same_objects(flow):
    flow.produce([envelope(sale(i, f"2018-{10 + i % 2}-0{1 + i % 7}T00:00:00Z")) for i in range(10)])
    with pytest.raises(RuntimeError, match="killed before"):
        flow.run(store=_DiesOnSet(), **{"flush.size": 3})
    killed = {k: (body, flow.metadata(k)) for k, body in flow.objects().items()}
    assert len(killed) == 4 and flow.saved_offsets() == {}

    result = flow.run(**{"flush.size": 3})
    assert result["records"] == 10
    assert {k: (body, flow.metadata(k)) for k, body in flow.objects().items()} == killed


def test_a_run_killed_between_partition_checkpoints_exports_every_record_once(kafka, s3, bucket, unique):
    flow = Flow(kafka, s3, bucket, unique, partitions=3)
    for p in range(3):
        flow.produce([envelope(sale(100 * p + i, f"2018-{10 + (i // 12)}-0{1 + i % 9}T00:00:00Z"))
                      for i in range(20)], partition=p)
    settings = {"flush.size": 4, "checkpoint.records": 7}
    dying = _DiesOnSet(lives=3)  # three partition checkpoints saved, the fourth dies
    with pytest.raises(RuntimeError, match="killed before"):
        flow.run(store=dying, **settings)
    killed = flow.objects()

    dying.lives = 10**6
    flow.run(store=dying, **settings)
    final = flow.objects()
    assert {k: final[k] for k in killed} == killed  # rewritten with the same bytes, none orphaned
    ids = [json.loads(line)["sale_id"] for body in final.values() for line in lines(body)]
    assert sorted(ids) == sorted(100 * p + i for p in range(3) for i in range(20))  # each exactly once
    flow.store = dying
    assert flow.saved_offsets() == {0: 20, 1: 20, 2: 20}


def test_gzip_objects_are_byte_identical_when_exported_again(flow, second_bucket):
    payloads = [sale(i, "2018-10-07T10:00:00Z", f"{i}.{i:02d}") for i in range(50)]
    flow.produce([envelope(p) for p in payloads])
    settings = {"s3.compression.type": "gzip", "flush.size": 20}
    flow.run(**settings)
    first = flow.objects()
    assert sorted(first) == [flow.key(2018, 10, o, ext=".json.gz") for o in (0, 20, 40)]
    assert [line for k in sorted(first) for line in lines(gzip.decompress(first[k]))] == payloads
    assert all(body[4:8] == b"\0\0\0\0" for body in first.values())  # gzip mtime 0

    reset_offsets(validate(flow.definition(**settings)), flow.store, flow.kafka)
    flow.config["s3.bucket.name"] = second_bucket
    flow.run(**settings)
    assert flow.objects(second_bucket) == first


def test_a_multipart_object_reassembles_exactly(flow):
    rng = random.Random(7)
    payloads = [sale(i, "2018-10-09T00:00:00Z", note=json.dumps(rng.randbytes(512).hex())) for i in range(12_000)]
    flow.produce([envelope(p) for p in payloads])  # ~12.6 MiB of lines
    counting = _CountingClient(flow.s3)

    result = flow.run(client=counting, **{"s3.part.size": 5 * MiB, "flush.size": 100_000})

    key = flow.key(2018, 10, 0)
    body = flow.objects()[key]
    assert result["objects"] == [key] and len(body) > 12 * MiB
    assert body == "".join(p + "\n" for p in payloads).encode()
    assert counting.calls.count("create_multipart_upload") == 1 and counting.calls.count("upload_part") == 3
    assert "put_object" not in counting.calls
    assert flow.metadata(key) == {"records": "12000", "first-offset": "0", "last-offset": "11999",
                                  "sha256": hashlib.sha256(body).hexdigest(),
                                  "kafka-topic-id": kafka_topic_id(flow.kafka, flow.topic)}


def test_a_multipart_gzip_object_is_byte_identical_when_exported_again(flow, second_bucket):
    rng = random.Random(11)
    payloads = [sale(i, "2018-10-09T00:00:00Z", note=json.dumps(rng.randbytes(512).hex())) for i in range(12_000)]
    flow.produce([envelope(p) for p in payloads])
    settings = {"s3.part.size": 5 * MiB, "flush.size": 100_000, "s3.compression.type": "gzip"}
    counting = _CountingClient(flow.s3)
    flow.run(client=counting, **settings)
    first = flow.objects()
    assert counting.calls.count("upload_part") >= 2
    assert gzip.decompress(first[flow.key(2018, 10, 0, ext=".json.gz")]) == "".join(p + "\n" for p in payloads).encode()

    reset_offsets(validate(flow.definition(**settings)), flow.store, flow.kafka)
    flow.config["s3.bucket.name"] = second_bucket
    flow.run(**settings)
    assert flow.objects(second_bucket) == first


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "what"), [
    (b'{"schema":null,"payload":{"sale_id":9,"item_id":"ITEM009"}}', "none of the timestamp.field fields"),
    (b"ITEM009,SHOP001,1", "not JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"sale_id":9,"sold_at":"yesterday"}', "'sold_at' is not a timestamp"),
])
def test_a_bad_record_stops_its_partition_with_a_clear_error(kafka, s3, bucket, unique, bad, what):
    flow = Flow(kafka, s3, bucket, unique, partitions=2)
    flow.produce([envelope(sale(1, "2018-10-01T00:00:00Z")), envelope(sale(2, "2018-10-01T00:00:00Z")), bad,
                  envelope(sale(3, "2018-10-01T00:00:00Z"))], partition=0)
    flow.produce([envelope(sale(10 + i, "2018-10-01T00:00:00Z")) for i in range(3)], partition=1)

    with pytest.raises(DataError, match=rf"record {flow.topic}\[0\]@2: .*{what}.* the offset stays at 2"):
        flow.run()
    objects = flow.objects()
    assert [json.loads(line)["sale_id"] for line in lines(objects[flow.key(2018, 10, 0)])] == [1, 2]
    assert [json.loads(line)["sale_id"] for line in lines(objects[flow.key(2018, 10, 0, partition=1)])] == [10, 11, 12]
    assert flow.saved_offsets() == {0: 2, 1: 3}

    with pytest.raises(DataError, match=rf"{flow.topic}\[0\]@2"):  # still stuck, nothing rewritten
        flow.run()
    assert flow.objects() == objects and flow.saved_offsets() == {0: 2, 1: 3}


def test_a_missing_bucket_is_a_clear_error_and_touches_no_offset(flow):
    flow.produce([envelope(sale(1, "2018-10-01T00:00:00Z"))])
    missing = f"airconnect-missing-{uuid.uuid4().hex[:8]}"
    flow.config["s3.bucket.name"] = missing
    with pytest.raises(PermanentError, match=rf"bucket '{missing}' at {S3_ENDPOINT} does not exist"):
        flow.run()
    assert flow.saved_offsets() == {}

    flow.config["s3.bucket.name"] = flow.bucket
    assert flow.run()["records"] == 1  # the group was not committed either


def test_an_unreachable_endpoint_is_a_transient_error(flow):
    import boto3
    from botocore.config import Config

    flow.produce([envelope(sale(1, "2018-10-01T00:00:00Z"))])
    down = boto3.client("s3", endpoint_url="http://127.0.0.1:9", aws_access_key_id="x", aws_secret_access_key="y",
                        region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    with pytest.raises(TransientError, match="127.0.0.1:9 could not be reached"):
        flow.run(client=down)
    assert flow.saved_offsets() == {}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("format.class", "io.confluent.connect.s3.format.avro.AvroFormat", "AvroFormat is not supported"),
    ("s3.part.size", str(4 * MiB), "an integer >= 5242880"),
    ("timezone", "Asia/Atlantis", "IANA time zone"),
    ("s3.compression.type", "snappy", "one of 'none', 'gzip'"),
])
def test_definitions_the_sink_cannot_honour_are_rejected(key, value, message):
    definition = {"name": "s3-x", "config": {"connector.class": "S3SinkConnector", "topics": "t", "s3.bucket.name": "b",
                                             "timestamp.field": "sold_at", key: value}}
    with pytest.raises(ConfigError, match=rf"connector 's3-x', key '{key}'.*{message}"):
        validate(definition)


@pytest.mark.parametrize("router", ["org.apache.kafka.connect.transforms.RegexRouter",
                                    "org.apache.kafka.connect.transforms.TimestampRouter"])
def test_a_topic_router_is_refused_naming_the_transform(router):
    # The sink's folders, manifests and offsets are per topic read: a routed topic would be silently ignored.
    definition = {"name": "s3-x", "config": {"connector.class": "S3SinkConnector", "topics": "t", "s3.bucket.name": "b",
                                             "timestamp.field": "sold_at", "transforms": "route",
                                             "transforms.route.type": router, "transforms.route.regex": "t",
                                             "transforms.route.replacement": "u"}}
    if router.endswith("TimestampRouter"):
        del definition["config"]["transforms.route.regex"], definition["config"]["transforms.route.replacement"]
    with pytest.raises(ConfigError, match=r"connector 's3-x', key 'transforms.route.type'.*routes records to other topics"):
        validate(definition)


# --- monthly manifest ----------------------------------------------------------------------------


def test_the_month_manifest_lists_the_objects_and_is_reproducible(flow):
    flow.produce([envelope(sale(i, f"2018-{10 if i < 5 else 11}-02T00:00:00Z")) for i in range(7)])
    flow.run(**{"flush.size": 2})
    foreign_key = f"topics/{flow.topic}/year=2018/month=10/written-elsewhere.json.gz"
    foreign = gzip.compress(b'{"a":1}\n{"a":2}\n{"a":3}')  # no metadata, no final newline
    flow.s3.put_object(Bucket=flow.bucket, Key=foreign_key, Body=foreign)

    # Without Kafka the topic's life is not checked: the object written elsewhere (no metadata) counts.
    manifest = write_month_manifest(validate(flow.definition()), flow.s3, None, 2018, 10)

    key = f"manifests/{flow.name}/year=2018/month=10/manifest.json"
    stored = flow.s3.get_object(Bucket=flow.bucket, Key=key)["Body"].read()
    assert manifest == {"key": key, **json.loads(stored)}
    objects = {k: v for k, v in flow.objects().items() if "/month=10/" in k}
    entries = manifest["topics"][flow.topic]["objects"]
    assert [e["key"] for e in entries] == sorted(objects)
    for e in entries:
        body = objects[e["key"]]
        assert e["size"] == len(body) and e["sha256"] == hashlib.sha256(body).hexdigest()
        assert e["records"] == (3 if e["key"] == foreign_key else len(lines(body)))
    assert (manifest["month"], manifest["records"], manifest["objects"]) == ("2018-10", 8, 4)
    assert manifest["topics"][flow.topic]["records"] == 8

    write_month_manifest(validate(flow.definition()), flow.s3, None, 2018, 10)
    assert flow.s3.get_object(Bucket=flow.bucket, Key=key)["Body"].read() == stored


def test_the_manifest_operator_checks_the_month(flow, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from airconnect.operators import MonthManifestOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_TEST", json.dumps({
        "conn_type": "aws", "login": "airconnect", "password": "airconnect-secret",
        "extra": {"endpoint_url": S3_ENDPOINT, "region_name": "us-east-1"}}))
    flow.config["aws.conn.id"] = "aws_test"
    flow.produce([envelope(sale(1, "2018-09-02T00:00:00Z"))])
    flow.run()

    op = MonthManifestOperator(task_id="manifest", connector=flow.definition(), month="2018-9")
    with pytest.raises(AirflowFailException, match="'2018-9'"):
        op.execute({})
    op.month = "2018-09"
    result = op.execute({})
    assert result == {"key": f"manifests/{flow.name}/year=2018/month=09/manifest.json", "records": 1, "objects": 1}


# ---- Parquet --------------------------------------------------------------------------------------------------

PARQUET = {"format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat"}
# What the JDBC source writes: a typed struct with an exact decimal and a UTC timestamp.
ROW_SCHEMA = (
    '{"type":"struct","optional":false,"name":"pos.sales","fields":['
    '{"type":"int64","optional":false,"field":"sale_id"},'
    '{"type":"string","optional":true,"field":"item_id"},'
    '{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,'
    '"parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"amount"},'
    '{"type":"string","optional":false,"name":"io.airconnect.Timestamp","version":1,"field":"sold_at"}]}'
)


def row_envelope(sale_id: int, amount: str, sold_at: str, item: str | None = "ITEM001", schema: str = ROW_SCHEMA) -> bytes:
    item_json = "null" if item is None else json.dumps(item)
    return (f'{{"schema":{schema},"payload":{{"sale_id":{sale_id},"item_id":{item_json},'
            f'"amount":{amount},"sold_at":"{sold_at}"}}}}').encode()


def test_parquet_objects_keep_types_exact_and_are_byte_identical_when_exported_again(kafka, s3, bucket, second_bucket,
                                                                                      unique):
    import datetime as dt
    import io
    from decimal import Decimal

    import pyarrow.parquet as pq

    flow = Flow(kafka, s3, bucket, unique)
    flow.produce([row_envelope(1, "12.50", "2018-10-31T23:59:59.999999Z"), row_envelope(2, "0.10", "2018-11-01T00:00:00Z", None),
                  row_envelope(3, "99999999.99", "2018-11-15T10:00:00.123456Z")])
    result = flow.run(**PARQUET)
    assert result["records"] == 3
    objects = flow.objects()
    oct_key = f"topics/{flow.topic}/year=2018/month=10/{flow.topic}+0+0000000000.parquet"
    nov_key = f"topics/{flow.topic}/year=2018/month=11/{flow.topic}+0+0000000001.parquet"
    assert sorted(objects) == [oct_key, nov_key]
    table = pq.read_table(io.BytesIO(objects[nov_key]))
    assert str(table.schema.field("amount").type) == "decimal128(12, 2)"
    assert str(table.schema.field("sold_at").type) == "timestamp[us, tz=UTC]"
    assert table.to_pylist() == [
        {"sale_id": 2, "item_id": None, "amount": Decimal("0.10"),
         "sold_at": dt.datetime(2018, 11, 1, tzinfo=dt.timezone.utc)},
        {"sale_id": 3, "item_id": "ITEM001", "amount": Decimal("99999999.99"),
         "sold_at": dt.datetime(2018, 11, 15, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)},
    ]
    assert s3.head_object(Bucket=bucket, Key=nov_key)["Metadata"]["records"] == "2"
    # Exported again from the start into another bucket: the same bytes.
    reset_offsets(validate(flow.definition(**PARQUET)), flow.store, flow.kafka)
    flow.config["s3.bucket.name"] = second_bucket
    flow.run(**PARQUET)
    assert flow.objects(second_bucket) == objects


def test_parquet_starts_a_new_object_when_the_schema_changes(kafka, s3, bucket, unique):
    import io

    import pyarrow.parquet as pq

    flow = Flow(kafka, s3, bucket, unique)
    wider = ROW_SCHEMA.replace(']}', ',{"type":"int32","optional":true,"field":"quantity"}]}')
    flow.produce([row_envelope(1, "1.00", "2018-10-01T00:00:00Z"), row_envelope(2, "2.00", "2018-10-02T00:00:00Z"),
                  row_envelope(3, "3.00", "2018-10-03T00:00:00Z", schema=wider)])
    flow.run(**PARQUET)
    objects = flow.objects()
    assert sorted(k.rsplit("+", 1)[1] for k in objects) == ["0000000000.parquet", "0000000002.parquet"]
    new = pq.read_table(io.BytesIO(objects[next(k for k in objects if k.endswith("0000000002.parquet"))]))
    assert new.column_names == ["sale_id", "item_id", "amount", "sold_at", "quantity"]


def test_parquet_needs_each_records_schema(kafka, s3, bucket, unique):
    flow = Flow(kafka, s3, bucket, unique)
    flow.produce([row_envelope(1, "1.00", "2018-10-01T00:00:00Z"), b'{"sale_id": 2, "sold_at": "2018-10-02T00:00:00Z"}'])
    with pytest.raises(DataError, match=r"@1: ParquetFormat needs each record's schema"):
        flow.run(**PARQUET)
    with pytest.raises(ConfigError, match="key 's3.compression.type': must be 'none' with ParquetFormat"):
        validate(flow.definition(**PARQUET, **{"s3.compression.type": "gzip"}))


# ---- sinks sharing a bucket, a topic's earlier life, errors that name the connector ---------------------------
# A bakery's till rolls of its own: receipts rung up in March 2019 (not the tutorial's sales).

BAKERY_SCHEMA = (
    '{"type":"struct","optional":false,"name":"bakery.till","fields":['
    '{"type":"int64","optional":false,"field":"receipt"},'
    '{"type":"string","optional":false,"field":"sku"},'
    '{"type":"int32","optional":false,"field":"qty"},'
    '{"type":"string","optional":false,"field":"rung_up_at"}]}'
)
BAKERY = {"timestamp.field": "rung_up_at"}


def till(receipt: int, day: int, sku: str = "PAN-07", qty: int = 3) -> bytes:
    return (f'{{"schema":{BAKERY_SCHEMA},"payload":{{"receipt":{receipt},"sku":"{sku}","qty":{qty},'
            f'"rung_up_at":"2019-03-{day:02d}T07:30:00Z"}}}}').encode()


@pytest.fixture
def aws_conn(monkeypatch) -> str:
    """An Airflow AWS Connection to the test endpoint, for the operators."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_BAKERY", json.dumps({
        "conn_type": "aws", "login": "airconnect", "password": "airconnect-secret",
        "extra": {"endpoint_url": S3_ENDPOINT, "region_name": "us-east-1"}}))
    return "aws_bakery"


def kafka_topic_id(kafka: dict[str, Any], topic: str) -> str:
    """The topic's id as Kafka prints it (kafka-topics.sh --describe: URL-safe base64, no padding)."""
    import base64

    from confluent_kafka import TopicCollection

    admin = AdminClient(kafka)
    tid = admin.describe_topics(TopicCollection([topic]), request_timeout=15)[topic].result().topic_id
    value = ((tid.get_most_significant_bits() & (2**64 - 1)) << 64) | (tid.get_least_significant_bits() & (2**64 - 1))
    return base64.urlsafe_b64encode(value.to_bytes(16, "big")).rstrip(b"=").decode()


def recreate_topic(kafka: dict[str, Any], topic: str) -> None:
    """Delete ``topic`` and create it again, empty (a new life: a new topic id)."""
    import time

    from confluent_kafka import KafkaError, KafkaException

    admin = AdminClient(kafka)
    admin.delete_topics([topic], operation_timeout=30)[topic].result()
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                operation_timeout=30)[topic].result()
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_two_sinks_in_one_bucket_each_write_their_own_manifest(kafka, s3, bucket, unique, aws_conn):
    from airconnect.operators import MonthManifestOperator

    flow = Flow(kafka, s3, bucket, unique)
    flow.produce([till(r, 1 + r) for r in range(5)])
    json_sink = {"name": f"bakery-json-{unique}", "config": {
        **flow.config, **BAKERY, "aws.conn.id": aws_conn, "topics.dir": f"json-{unique}"}}
    parquet_sink = {"name": f"bakery-parquet-{unique}", "config": {
        **flow.config, **BAKERY, **PARQUET, "aws.conn.id": aws_conn, "topics.dir": f"parquet-{unique}",
        "flush.size": "2"}}
    assert run(json_sink, MemoryStore(), kafka, s3_client=s3)["records"] == 5
    assert run(parquet_sink, MemoryStore(), kafka, s3_client=s3)["records"] == 5

    results = {d["name"]: MonthManifestOperator(task_id=f"m-{d['name']}", connector=d, month="2019-03").execute({})
               for d in (json_sink, parquet_sink)}

    for definition, folder, objects in ((json_sink, f"json-{unique}", 1), (parquet_sink, f"parquet-{unique}", 3)):
        name = definition["name"]
        key = f"manifests/{name}/year=2019/month=03/manifest.json"
        assert results[name] == {"key": key, "records": 5, "objects": objects}
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert manifest["connector"] == name
        listed = [o["key"] for o in manifest["topics"][flow.topic]["objects"]]
        in_bucket = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/")["Contents"])
        assert listed == in_bucket and len(listed) == objects  # this sink's objects, and only them
        assert manifest["records"] == 5 and manifest["stale"] == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="manifests/year=")  # no shared manifest


class _Warnings(logging.Handler):
    """The WARNING lines of a logger (Airflow's logging setup may keep them from pytest's caplog)."""

    def __init__(self, name: str):
        super().__init__(logging.WARNING)
        self.logger, self.lines = logging.getLogger(name), []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _Warnings:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self)


def test_a_recreated_topic_leaves_stale_objects_that_the_manifest_excludes_and_remove_stale_objects_deletes(
        kafka, s3, bucket, unique, aws_conn):
    from airconnect.operators import MonthManifestOperator

    flow = Flow(kafka, s3, bucket, unique)
    flow.config.update({**BAKERY, "aws.conn.id": aws_conn, "flush.size": "2"})
    flow.produce([till(100 + r, 1 + r, qty=5) for r in range(7)])  # first life: 7 receipts, objects at 0, 2, 4, 6
    flow.run()
    first_life = kafka_topic_id(kafka, flow.topic)
    assert sorted(flow.objects()) == [flow.key(2019, 3, o) for o in (0, 2, 4, 6)]

    # airconnect reset <sink> --delete-topics; the topic comes back with fewer records; the sink runs again.
    reset_offsets(validate(flow.definition()), flow.store, kafka)
    recreate_topic(kafka, flow.topic)
    flow.produce([till(200 + r, 10 + r, qty=1) for r in range(3)])  # second life: 3 receipts, objects at 0, 2
    assert flow.run()["records"] == 3
    now = kafka_topic_id(kafka, flow.topic)
    assert now != first_life
    fresh, stale = [flow.key(2019, 3, 0), flow.key(2019, 3, 2)], [flow.key(2019, 3, 4), flow.key(2019, 3, 6)]
    assert sorted(flow.objects()) == fresh + stale
    assert all(flow.metadata(k)["kafka-topic-id"] == now for k in fresh)
    assert all(flow.metadata(k)["kafka-topic-id"] == first_life for k in stale)

    with _Warnings("airconnect.connectors.s3") as warnings:
        result = MonthManifestOperator(task_id="m", connector=flow.definition(), month="2019-03").execute({})

    assert (result["records"], result["objects"]) == (3, 2)  # the topic as it is now: 3 records
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=result["key"])["Body"].read())
    assert [o["key"] for o in manifest["topics"][flow.topic]["objects"]] == fresh
    assert manifest["topics"][flow.topic]["records"] == 3 and manifest["records"] == 3
    assert [(s["key"], s["topic_id"]) for s in manifest["stale"]] == [(k, first_life) for k in stale]
    warning = "\n".join(warnings.lines)
    assert f"connector '{flow.name}'" in warning and all(k in warning for k in stale)

    # The forecast reading this sink skips what its manifest calls stale: 3 loaves, not 3 + 3 x 5.
    from dataclasses import replace

    from airconnect_retail.sales_forecast import monthly_units, settings_for

    settings = replace(settings_for(validate(flow.definition())), item_field="sku", quantity_field="qty")
    assert monthly_units(s3, settings, "2019-03") == ({("PAN-07", "EC"): {"2019-03": 3.0}}, 2)

    from airconnect.connectors.s3.manifest import remove_stale_objects

    assert remove_stale_objects(validate(flow.definition()), s3, kafka) == stale
    assert sorted(flow.objects()) == fresh
    assert remove_stale_objects(validate(flow.definition()), s3, kafka) == []  # nothing left to remove


def test_every_s3_error_names_the_connector_and_the_key(flow, aws_conn):
    import boto3
    from airflow.sdk.exceptions import AirflowFailException
    from botocore.config import Config

    from airconnect.operators import MonthManifestOperator, S3SinkOperator

    flow.config.update({**BAKERY, "aws.conn.id": aws_conn})
    flow.produce([till(1, 4)])
    missing = f"airconnect-missing-{uuid.uuid4().hex[:8]}"
    where = f"connector '{flow.name}', key 's3.bucket.name': "

    with pytest.raises(ConfigError) as caught:  # permanent: a retry cannot create the bucket
        flow.run(**{"s3.bucket.name": missing})
    assert str(caught.value).startswith(where) and f"bucket '{missing}'" in str(caught.value)
    assert (caught.value.connector, caught.value.key) == (flow.name, "s3.bucket.name")
    for op in (S3SinkOperator(connector=flow.definition(**{"s3.bucket.name": missing})),
               MonthManifestOperator(task_id="m", connector=flow.definition(**{"s3.bucket.name": missing}),
                                     month="2019-03")):
        with pytest.raises(AirflowFailException, match=rf"^{where}.*bucket '{missing}'"):  # failed, not retried
            op.execute({})
    assert flow.saved_offsets() == {}

    down = boto3.client("s3", endpoint_url="http://127.0.0.1:9", aws_access_key_id="x", aws_secret_access_key="y",
                        region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    with pytest.raises(TransientError, match=rf"^connector '{flow.name}', key 'aws.conn.id': .*could not be reached"):
        flow.run(client=down)

    flow.produce([b'{"schema":null,"payload":{"receipt":2,"sku":"PAN-01","qty":1}}'])  # no rung_up_at
    with pytest.raises(DataError, match=rf"^connector '{flow.name}', key 'timestamp.field': record {flow.topic}\[0\]@1"):
        flow.run()
