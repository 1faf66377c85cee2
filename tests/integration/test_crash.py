"""Nothing lost, nothing doubled: every connector SIGKILLed at many points, then run again.

Each connector runs as a real subprocess (tests/crash_child.py) against the real servers. A
round adds new input, runs a pass that dies -- at a named kill point (its n-th pass there:
mid-batch, after produce and before the commit, after the commit and before the offset is
saved, between file write and fsync, during and after an S3 upload, around the orders'
database commit) or at a random moment -- then runs passes until one finishes, and checks
the output (topic, file, bucket, table) equals what one clean run over all the input gives.
Each test reports how many kills its connector survived, and demands at least 50.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helpers import generator, read_topic

ROOT = Path(__file__).resolve().parents[2]
CHILD = str(ROOT / "tests" / "crash_child.py")
MIN_KILLS = 50


@dataclass
class Harness:
    """Runs passes of one connector as subprocesses and counts the kills it survived."""

    tmp: Path
    spec: dict[str, Any]
    rng: random.Random = field(default_factory=lambda: random.Random(int(os.environ.get("AIRCONNECT_CRASH_SEED", "7"))))
    kills: int = 0
    by_point: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec_path = self.tmp / "spec.json"
        self.spec.setdefault("store", str(self.tmp / "offsets.json"))
        self.spec_path.write_text(json.dumps(self.spec))

    def _start(self, failpoint: str | None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "AIRCONNECT_FAILPOINT"}
        if failpoint:
            env["AIRCONNECT_FAILPOINT"] = failpoint
        return subprocess.Popen([sys.executable, CHILD, str(self.spec_path)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def crash(self, failpoint: str | None = None, after: float | None = None) -> bool:
        """One pass that is meant to die; True if it was killed (a point not reached lets it finish)."""
        proc = self._start(failpoint)
        if after is not None:
            try:
                proc.wait(after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGKILL:
            self.kills += 1
            what = failpoint.split(":")[0] if failpoint else "random"
            self.by_point[what] = self.by_point.get(what, 0) + 1
            return True
        assert proc.returncode == 0, f"the pass to be killed ({failpoint or after}) failed instead:\n{out[-4000:]}"
        return False

    def finish(self) -> None:
        """Run again until a pass finishes (it must not fail)."""
        proc = self._start(None)
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"the pass after a kill failed:\n{out[-4000:]}"

    def rounds(self, points: list[str], grow: Callable[[int], None], check: Callable[[], None], *,
               random_kills: int, max_rounds: int = 150) -> None:
        """For each kill -- the named points first, then random moments until ``random_kills`` more
        passes were killed -- grow the input, kill a pass, run until one finishes, check the output."""
        i = 0

        def one_round(point: str | None, after: float | None) -> None:
            nonlocal i
            grow(i)
            i += 1
            self.crash(point, after)
            started = time.monotonic()
            self.finish()
            self.last_pass = time.monotonic() - started
            check()

        for point in points:
            one_round(point, None)
        want = max(self.kills + random_kills, MIN_KILLS + 2)  # (a point a pass did not reach killed nothing)
        self.last_pass = getattr(self, "last_pass", 1.0)
        while self.kills < want and i < max_rounds:
            one_round(None, self.rng.uniform(0.02, self.last_pass))  # somewhere within a pass's length
        name = self.spec.get("definition", {}).get("name") or "auto_order"
        print(f"\n{name}: survived {self.kills} kills in {i} rounds "
              f"({', '.join(f'{k} {v}' for k, v in sorted(self.by_point.items()))})")


def _points(names: list[str], hits: range) -> list[str]:
    return [f"{name}:{n}" for n in hits for name in names]


# ---------------------------------------------------------------------------------- file source


def test_file_source_survives_kills_at_every_point(tmp_path, kafka, unique):
    path = tmp_path / "latest.txt"
    path.write_bytes(b"")
    topic = f"crash-src-{unique}"
    h = Harness(tmp_path, {"kafka": kafka, "definition": {"name": f"crash-src-{unique}", "config": {
        "connector.class": "FileStreamSource", "file": str(path), "topic": topic, "batch.size": "50"}}})
    lines: list[str] = []

    def grow(i: int) -> None:
        new = [f"ITEM{i:03d},SHOP{j % 7:03d},{i * 1000 + j},2018-10-{1 + i % 28:02d} 01:01:01 お茶" for j in range(300)]
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in new))
        lines.extend(new)

    def check() -> None:
        got = [json.loads(v)["payload"] for v in read_topic(kafka, topic)]
        assert got == lines, f"{len(got)} records for {len(lines)} lines (first difference at " \
                             f"{next((i for i, (a, b) in enumerate(zip(got, lines)) if a != b), min(len(got), len(lines)))})"

    points = _points(["kafka.produced", "kafka.before_commit", "kafka.after_commit", "offsets.saved"], range(1, 8))
    h.rounds(points, grow, check, random_kills=30)
    assert h.kills >= MIN_KILLS, h.by_point


# ---------------------------------------------------------------------------------- file sink


def test_file_sink_survives_kills_at_every_point(tmp_path, kafka, unique):
    from confluent_kafka import Producer

    topic = f"crash-sink-{unique}"
    out = tmp_path / "ec" / "zaiko-latest.txt"
    h = Harness(tmp_path, {"kafka": kafka, "definition": {"name": f"crash-sink-{unique}", "config": {
        "connector.class": "FileStreamSink", "file": str(out), "topics": topic, "checkpoint.records": "100"}}})
    from airconnect.core.kafka_client import Admin

    Admin(kafka).ensure_topic(topic, partitions=3)
    expected: dict[int, list[str]] = {0: [], 1: [], 2: []}
    producer = Producer({**kafka, "enable.idempotence": True})

    def grow(i: int) -> None:
        for j in range(600):
            line = f"ITEM{i:03d},SHOP{j % 3:03d},{j},2018-10-03 03:00:00 在庫"
            producer.produce(topic, json.dumps({"schema": {"type": "string", "optional": False}, "payload": line}),
                             partition=j % 3)
            expected[j % 3].append(line)
        assert producer.flush(30) == 0

    def check() -> None:
        written = out.read_text(encoding="utf-8").splitlines()
        # Lines of one partition keep their order; partitions interleave as the consumer reads them.
        for p, lines in expected.items():
            mine = [w for w in written if w.split(",")[1] == f"SHOP{p:03d}"]
            assert mine == lines, f"partition {p}: {len(mine)} lines written for {len(lines)} records"
        assert len(written) == sum(len(v) for v in expected.values())

    points = _points(["file_sink.written", "file_sink.fsynced", "offsets.saved"], range(1, 9))
    h.rounds(points, grow, check, random_kills=30)
    assert h.kills >= MIN_KILLS, h.by_point


# ---------------------------------------------------------------------------------- JDBC source


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_jdbc_source_survives_kills_at_every_point(tmp_path, kafka, unique, kind):
    gen = generator()
    table = f"crash_{unique}"
    conn = gen.connect_pg() if kind == "postgres" else gen.connect_mysql()
    url = gen.default_pg_dsn() if kind == "postgres" else gen.default_mysql_url()
    idcol = "id BIGSERIAL PRIMARY KEY" if kind == "postgres" else "id BIGINT AUTO_INCREMENT PRIMARY KEY"
    ts = "TIMESTAMPTZ(6)" if kind == "postgres" else "DATETIME(6)"
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} ({idcol}, item VARCHAR(16) NOT NULL, price NUMERIC(12,2) NOT NULL, "
                f"updated_at {ts} NOT NULL)")
    conn.commit()
    topic_prefix = f"crash-{unique}."
    h = Harness(tmp_path, {"kafka": kafka, "resources": {"db": url}, "definition": {
        "name": f"crash-jdbc-{unique}", "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "unused",
            "mode": "timestamp+incrementing", "table.whitelist": table, "timestamp.column.name": "updated_at",
            "incrementing.column.name": "id", "topic.prefix": topic_prefix, "batch.max.rows": "100"}}})
    t0 = dt.datetime(2018, 10, 1, tzinfo=dt.timezone.utc)
    count = 0

    def grow(i: int) -> None:
        nonlocal count
        rows = []
        for j in range(400):
            when = t0 + dt.timedelta(minutes=count // 3)  # three rows share each timestamp
            rows.append((f"ITEM{j % 40:03d}", Decimal(f"{count % 1000}.{count % 100:02d}"),
                         when if kind == "postgres" else when.replace(tzinfo=None)))
            count += 1
        cur.executemany(f"INSERT INTO {table} (item, price, updated_at) VALUES (%s, %s, %s)", rows)
        conn.commit()

    def check() -> None:
        got = [json.loads(v)["payload"]["id"] for v in read_topic(kafka, topic_prefix + table)]
        assert sorted(got) == list(range(1, count + 1)), f"{len(got)} records, {len(set(got))} distinct, for {count} rows"

    try:
        points = _points(["kafka.produced", "kafka.before_commit", "kafka.after_commit", "offsets.saved"], range(1, 6))
        h.rounds(points, grow, check, random_kills=32)
        assert h.kills >= MIN_KILLS, h.by_point
    finally:
        cur.execute(f"DROP TABLE {table}")
        conn.commit()
        conn.close()


# ---------------------------------------------------------------------------------- S3 sink


def test_s3_sink_survives_kills_at_every_point(tmp_path, kafka, unique):
    import boto3
    from confluent_kafka import Producer

    from airconnect.core.kafka_client import Admin

    s3_args = {"endpoint_url": f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}",
               "aws_access_key_id": "airconnect", "aws_secret_access_key": "airconnect-secret", "region_name": "us-east-1"}
    s3 = boto3.client("s3", **s3_args)
    topic = f"crash-s3-{unique}"
    Admin(kafka).ensure_topic(topic, partitions=2)

    def sink(bucket: str, name: str) -> dict[str, Any]:
        return {"name": name, "config": {
            "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic, "s3.bucket.name": bucket,
            "aws.conn.id": "unused", "flush.size": "150", "timestamp.field": "sold_at",
            "s3.compression.type": "gzip", "s3.part.size": str(5 * 1024 * 1024), "checkpoint.records": "200"}}

    crashed, clean = f"crash-{unique}", f"clean-{unique}"
    for b in (crashed, clean):
        s3.create_bucket(Bucket=b)
    h = Harness(tmp_path, {"kafka": kafka, "resources": {"s3": s3_args}, "definition": sink(crashed, f"crash-s3-{unique}")})
    producer = Producer({**kafka, "enable.idempotence": True})
    n = 0

    def grow(i: int) -> None:
        nonlocal n
        for _ in range(500):
            month = 1 + (n // 700) % 12  # records walk through the months; a month spans rounds
            producer.produce(topic, json.dumps({"sale_id": n, "item_id": f"ITEM{n % 40:03d}", "quantity": n % 9 + 1,
                                                "sold_at": f"2018-{month:02d}-15T10:00:00.000000Z"}), partition=n % 2)
            n += 1
        assert producer.flush(30) == 0

    bodies: dict[tuple[str, str, str], bytes] = {}  # (bucket, key, ETag) -> body: each round reads only new objects

    def objects(bucket: str) -> dict[str, bytes]:
        listed = [(o["Key"], o["ETag"]) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in page.get("Contents", [])]
        for key, etag in listed:
            if (bucket, key, etag) not in bodies:
                bodies[(bucket, key, etag)] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return {key: bodies[(bucket, key, etag)] for key, etag in listed}

    def records(bucket: str) -> list[int]:
        import gzip

        return sorted(json.loads(line)["sale_id"] for body in objects(bucket).values()
                      for line in gzip.decompress(body).splitlines())

    def check() -> None:
        got = records(crashed)
        assert got == list(range(n)), f"{len(got)} records in S3, {len(set(got))} distinct, for {n} produced"

    points = _points(["s3.object_uploaded", "offsets.saved"], range(1, 10))
    h.rounds(points, grow, check, random_kills=36)
    assert h.kills >= MIN_KILLS, h.by_point
    # And the objects themselves are those of one clean pass over the same records.
    (tmp_path / "clean").mkdir()
    Harness(tmp_path / "clean", {"kafka": kafka, "resources": {"s3": s3_args},
                                 "definition": sink(clean, f"clean-s3-{unique}")}).finish()
    assert records(clean) == records(crashed)


# ---------------------------------------------------------------------------------- orders


def test_the_order_writer_survives_kills_at_every_point(tmp_path, kafka, unique):
    import psycopg2
    from confluent_kafka import Producer

    gen = generator()
    admin = psycopg2.connect(gen.default_pg_dsn())
    admin.autocommit = True
    db = f"crash_ao_{unique}"
    admin.cursor().execute(f"CREATE DATABASE {db}")
    dsn = gen.default_pg_dsn()  # a URL, or key='value' pairs
    url = dsn.rsplit("/", 1)[0] + f"/{db}" if dsn.startswith("postgresql://") else dsn.replace("dbname='ec'", f"dbname='{db}'")
    inventory, orders_topic = f"crash-zaiko-{unique}", f"crash-orders-{unique}"
    items = [f"ITEM{i:03d}" for i in range(1, 41)]
    forecast = {"month": "2018-11", "series": [{"item_id": item, "shop_id": f"SHOP{s:03d}", "units": 30.0 + i}
                                               for i, item in enumerate(items) for s in range(1, 6)]}
    h = Harness(tmp_path, {"kafka": kafka, "auto_order": {
        "db": url, "forecast": forecast,
        "view": {"name": f"crash-view-{unique}", "config": {
            **json.loads((ROOT / "include" / "connectors" / "jdbc-inventory-view.json").read_text())["config"],
            "topics": inventory}},
        "item_master": str(ROOT / "include" / "items.csv"),
        "publisher": {"name": f"crash-orders-{unique}", "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "unused",
            "mode": "incrementing", "query": "SELECT order_id, item_id, shop_id, quantity FROM auto_orders",
            "incrementing.column.name": "order_id", "topic.prefix": orders_topic}}}})
    producer = Producer({**kafka, "enable.idempotence": True})
    stock: dict[tuple[str, str], int] = {}

    def grow(i: int) -> None:
        # Each round: stock falls to 0 for a few new (item, shop) pairs, so each round orders something.
        for k in range(4):
            item, shop = items[(i * 4 + k) % 40], f"SHOP{1 + (i * 4 + k) // 40 % 5:03d}"
            for level in (500, 0):
                stock[(item, shop)] = level
                line = f"{item},{shop},{level},2018-10-31 {10 + i % 10:02d}:{k:02d}:{0 if level else 1:02d}"
                producer.produce(inventory, json.dumps({"schema": {"type": "string", "optional": False}, "payload": line}))
        assert producer.flush(30) == 0

    def check() -> None:
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT item_id, shop_id, COUNT(*) FROM auto_orders GROUP BY item_id, shop_id")
            per_pair = {(i, s): c for i, s, c in cur.fetchall()}
            cur.execute("SELECT order_id FROM auto_orders ORDER BY order_id")
            ids = [r[0] for r in cur.fetchall()]
        conn.close()
        # Exactly one order for every pair whose stock ran out (one open order covers it; never a second).
        assert per_pair == {k: 1 for k, v in stock.items() if v == 0}
        published = sorted(json.loads(v)["payload"]["order_id"] for v in read_topic(kafka, orders_topic))
        assert published == ids, f"{len(published)} published for {len(ids)} orders"

    try:
        points = _points(["jdbc_sink.written", "jdbc_sink.committed", "orders.inserted", "orders.committed",
                          "kafka.before_commit", "kafka.after_commit"], range(1, 3))
        points += _points(["offsets.saved"], range(1, 6))
        h.rounds(points, grow, check, random_kills=34)
        assert h.kills >= MIN_KILLS, h.by_point
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
