"""airconnect's benchmark runner. Use benchmarks/run.sh, which starts the local stack first.

Each case runs its variants interleaved (airconnect, baseline, ..., airconnect, baseline, ...),
each Python variant in its own process (benchmarks/worker.py) so that its peak RSS is its own.
Ratios compare medians of the same run: the machine is shared and noisy, absolute numbers are
not comparable between runs. Results: a table on stdout and benchmarks/results/<run id>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import connect as kc  # noqa: E402

ALL_CASES = ("file_source", "file_sink", "jdbc_pg", "jdbc_mariadb", "s3_sink", "scaling", "scaling_tasks", "airflow",
             "jdbc_sink_pg", "jdbc_sink_mariadb", "cdc_pg", "cdc_mariadb")
MB = 1024 * 1024

# Targets from issue #6.
MIN_VS_MINIMAL = 0.8
MIN_VS_CONNECT = 1.0
MIN_VS_BARE_FETCH = 0.8  # issue #15: the JDBC source against a bare server-side cursor fetch of the same rows
MAX_RSS_GROWTH = 1.25  # peak RSS at 5x the input over peak RSS at 1x ("independent of input size")
MAX_P95_LATENCY_S = 5.0


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.size: int = args.size
        self.reps: int = args.reps
        self.run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self.tag = "bench-" + self.run_id[-6:]
        self.bootstrap = os.environ.get("AIRCONNECT_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        self.data = Path(os.environ.get("AIRCONNECT_DATA_DIR", ROOT / "data")) / "bench"
        self.work = self.data / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)
        self.runs: list[dict[str, Any]] = []
        self.summary: dict[str, dict[str, Any]] = {}
        self.topics: list[str] = []
        self.pg = {"kind": "postgres", "host": "127.0.0.1", "port": int(os.environ.get("AIRCONNECT_POSTGRES_PORT", 5432)),
                   "user": "airconnect", "password": "airconnect"}
        self.maria = {"kind": "mysql", "host": "127.0.0.1", "port": int(os.environ.get("AIRCONNECT_MARIADB_PORT", 3306)),
                      "user": "airconnect", "password": "airconnect"}
        self.s3 = {"endpoint": f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}",
                   "key": "airconnect", "secret": "airconnect-secret"}

    # ------------------------------------------------------------------ helpers

    def name(self, what: str) -> str:
        return f"{self.tag}-{what}-{uuid.uuid4().hex[:4]}"

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        if not hasattr(self, "_admin"):
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def create_topic(self, topic: str) -> str:
        from confluent_kafka.admin import NewTopic

        self.admin().create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1)])[topic].result()
        self.topics.append(topic)
        return topic

    def drop_topics(self) -> None:
        if self.topics:
            for f in self.admin().delete_topics(self.topics, operation_timeout=30).values():
                try:
                    f.result()
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self.topics.clear()

    def end_offset(self, topic: str) -> int:
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-probe"})
        try:
            return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        finally:
            c.close()

    def record_times(self, topic: str, first: int, last: int) -> tuple[float, float]:
        """CreateTime (s) of the records at offsets ``first`` and ``last``."""
        from confluent_kafka import Consumer, TopicPartition

        out = []
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-probe", "enable.auto.commit": False})
        try:
            for off in (first, last):
                c.assign([TopicPartition(topic, 0, off)])
                msg = None
                deadline = time.monotonic() + 20
                while msg is None and time.monotonic() < deadline:
                    msg = c.poll(0.5)
                    if msg is not None and msg.error():
                        msg = None
                out.append(msg.timestamp()[1] / 1000 if msg is not None else float("nan"))
        finally:
            c.close()
        return out[0], out[1]

    def worker(self, case: str, variant: str, rep: int, spec: dict[str, Any]) -> dict[str, Any]:
        label = f"{case} {variant} #{rep + 1}"
        spec = {"bootstrap": self.bootstrap, "variant": variant, "label": label, **spec}
        if variant == "airconnect" and case in self.args.profile:
            spec["profile"] = str(self.work / f"{case}-{rep + 1}.prof")
        say(f"{label}: running")
        env = dict(os.environ)
        env["PYTHONPATH"] = self.args.airconnect_plugins
        proc = subprocess.run([sys.executable, str(HERE / "worker.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{label} failed (exit {proc.returncode}); see the lines above")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if spec.get("profile"):
            out["profile"] = spec["profile"]
            say(f"{label}: cProfile dump {spec['profile']} (python -m pstats)")
        return out

    def record(self, case: str, variant: str, rep: int, out: dict[str, Any]) -> dict[str, Any]:
        row = {"case": case, "variant": variant, "rep": rep + 1, **out}
        secs = out["seconds"]
        row["records_per_s"] = out["records"] / secs if secs > 0 else None
        row["mb_per_s"] = out["bytes"] / MB / secs if out.get("bytes") and secs > 0 else None
        self.runs.append(row)
        say(f"{case} {variant} #{rep + 1}: {out['records']:,} records in {secs:.2f} s = {row['records_per_s']:,.0f} records/s"
            + (f", {row['mb_per_s']:.1f} MB/s" if row["mb_per_s"] else "")
            + (f", peak RSS {out['peak_rss_mb']:.0f} MB" if out.get("peak_rss_mb") else ""))
        return row

    def medians(self, case: str) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for variant in sorted({r["variant"] for r in self.runs if r["case"] == case}):
            rows = [r for r in self.runs if r["case"] == case and r["variant"] == variant]
            med: dict[str, float | None] = {}
            for k in ("records_per_s", "mb_per_s", "peak_rss_mb", "seconds", "records"):
                vals = [r[k] for r in rows if r.get(k) is not None]
                med[k] = statistics.median(vals) if vals else None
            out[variant] = med
        return out

    def summarize_throughput(self, case: str, baselines: tuple[str, ...]) -> None:
        med = self.medians(case)
        ours = med["airconnect"]["records_per_s"]
        s: dict[str, Any] = {"medians": med, "ratios": {}, "targets": {}}
        for b in baselines:
            if b in med and med[b]["records_per_s"]:
                ratio = ours / med[b]["records_per_s"]
                s["ratios"][f"airconnect/{b}"] = ratio
                if b == "floor":
                    continue  # a reference (what fetching and delivering cost), not a target
                goal = {"minimal": MIN_VS_MINIMAL, "minimal_copy": MIN_VS_MINIMAL, "bare": MIN_VS_BARE_FETCH}.get(b, MIN_VS_CONNECT)
                s["targets"][f">= {goal}x {b}"] = ratio >= goal
        self.summary[case] = s

    # ------------------------------------------------------------------ inputs

    def inventory_file(self) -> Path:
        """``size`` inventory lines (item, shop, stock, time), about 40 bytes each; kept between runs."""
        path = self.data / f"inventory-{self.size}.txt"
        if path.exists():
            return path
        say(f"writing {self.size:,} inventory lines to {path}")
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            chunk = []
            for i in range(self.size):
                s = i % 86400
                chunk.append(f"ITEM{i % 997 + 1:03d},SHOP{i % 10 + 1:03d},{(i * 7919) % 10000},"
                             f"2018-10-{i // 86400 % 28 + 1:02d} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}\n")
                if len(chunk) == 100000:
                    f.writelines(chunk)
                    chunk.clear()
            f.writelines(chunk)
        tmp.rename(path)
        return path

    def generator(self) -> Any:
        if "generate_sales" not in sys.modules:
            spec = importlib.util.spec_from_file_location("generate_sales", ROOT / "include" / "generate_sales.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules["generate_sales"] = module
            spec.loader.exec_module(module)
        return sys.modules["generate_sales"]

    def sales_db(self, kind: str, rows: int) -> dict[str, Any]:
        """A database of its own (bench_ec*, bench_pos*) holding about ``rows`` sales rows, made by
        include/generate_sales.py (25 months) and kept between runs of the same size."""
        gen = self.generator()
        rpm = max(1, rows // 25)
        if kind == "postgres":
            import psycopg2

            dbname = f"bench_ec_{rows}"
            admin = psycopg2.connect(host=self.pg["host"], port=self.pg["port"], user=self.pg["user"],
                                     password=self.pg["password"], dbname="ec")
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if not cur.fetchone():
                    cur.execute(f'CREATE DATABASE "{dbname}"')
            admin.close()
            db = {**self.pg, "database": dbname, "table": "ec_order_lines", "ts": "updated_at", "inc": "line_id"}
            conn = gen.connect_pg(f"host={db['host']} port={db['port']} user={db['user']} password={db['password']} dbname={dbname}")
            make = gen.generate_ec
        else:
            import MySQLdb

            dbname = f"bench_pos_{rows}"
            admin = MySQLdb.connect(host=self.maria["host"], port=self.maria["port"], user=self.maria["user"],
                                    passwd=self.maria["password"])
            admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{dbname}`")
            admin.close()
            db = {**self.maria, "database": dbname, "table": "pos_sales", "ts": "updated_at", "inc": "sale_id"}
            conn = gen.connect_mysql(f"mysql://{db['user']}:{db['password']}@{db['host']}:{db['port']}/{dbname}")
            make = gen.generate_pos
        try:
            cur = conn.cursor()
            cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (rows_per_month INT, done INT)")
            cur.execute("SELECT rows_per_month FROM bench_meta WHERE done = 1")
            found = cur.fetchone()
            conn.commit()
            if not found or found[0] != rpm:
                say(f"generating about {rows:,} sales rows into {kind} database {dbname} (include/generate_sales.py)")
                cur.execute("DELETE FROM bench_meta")
                conn.commit()
                make(conn, months=25, rows_per_month=rpm, reset=True, batch_size=20000,
                     progress=lambda m: say("  " + m))
                cur = conn.cursor()
                cur.execute("INSERT INTO bench_meta VALUES (%s, 1)", (rpm,))
                conn.commit()
            cur = conn.cursor()
            cur.execute(f"SELECT COUNT(*) FROM {db['table']}")
            db["rows"] = int(cur.fetchone()[0])
            conn.commit()
        finally:
            conn.close()
        say(f"{kind} database {dbname}: {db['rows']:,} rows in {db['table']}")
        return db

    def fill_sink_topic(self, inventory: Path) -> str:
        topic = self.create_topic(self.name("sink-in"))
        say(f"filling {topic} with the {self.size:,} inventory lines as JsonConverter records")
        self.worker("prepare", "minimal", 0, {"kind": "file_source", "file": str(inventory), "topic": topic})
        return topic

    def fill_sales_topic(self) -> str:
        """``size`` records shaped like the JDBC source's ec_order_lines records, over 25 months."""
        from confluent_kafka import Producer

        topic = self.create_topic(self.name("s3-in"))
        say(f"filling {topic} with {self.size:,} sales records (JsonConverter envelope, 25 months)")
        schema = ('{"type":"struct","fields":[{"type":"int64","optional":false,"field":"line_id"},'
                  '{"type":"int64","optional":false,"field":"order_id"},{"type":"string","optional":false,"field":"item_id"},'
                  '{"type":"int32","optional":false,"field":"quantity"},{"type":"bytes","optional":false,'
                  '"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2",'
                  '"connect.decimal.precision":"12"},"field":"unit_price"},{"type":"string","optional":false,'
                  '"name":"io.airconnect.Timestamp","version":1,"field":"ordered_at"}],"optional":false,"name":"ec_order_lines"}')
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "batch.num.messages": 10000,
                      "queue.buffering.max.messages": 200000})
        start = dt.datetime(2016, 10, 1, tzinfo=dt.timezone.utc)
        span = (dt.datetime(2018, 11, 1, tzinfo=dt.timezone.utc) - start).total_seconds()
        for i in range(self.size):
            ts = (start + dt.timedelta(seconds=span * i / self.size)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            value = (f'{{"schema":{schema},"payload":{{"line_id":{i + 1},"order_id":{i // 2 + 1},'
                     f'"item_id":"ITEM{i % 997 + 1:03d}","quantity":{i % 4 + 1},"unit_price":{(i * 37) % 5000 + 99}.{i % 100:02d},'
                     f'"ordered_at":"{ts}"}}}}').encode()
            while True:
                try:
                    p.produce(topic, value)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 10000 == 0:
                p.poll(0)
        p.flush(60)
        return topic

    # ------------------------------------------------------------------ cases

    def case_file_source(self) -> None:
        inventory = self.inventory_file()
        nbytes = inventory.stat().st_size
        for rep in range(self.reps):
            topic = self.create_topic(self.name("fs-air"))
            name = self.name("fs")
            out = self.worker("file_source", "airconnect", rep, {"kind": "file_source", "definition": {
                "name": name, "config": {"connector.class": "FileStreamSourceConnector", "file": str(inventory),
                                         "topic": topic}}})
            self.record("file_source", "airconnect", rep, out)
            topic = self.create_topic(self.name("fs-min"))
            self.record("file_source", "minimal", rep,
                        self.worker("file_source", "minimal", rep, {"kind": "file_source", "file": str(inventory), "topic": topic}))
            self.record("file_source", "connect", rep, self.connect_source(rep, inventory, nbytes))
            self.drop_topics()
        self.summarize_throughput("file_source", ("minimal", "connect"))

    def connect_source(self, rep: int, inventory: Path, nbytes: int) -> dict[str, Any]:
        topic = self.create_topic(self.name("fs-connect"))
        say(f"file_source connect #{rep + 1}: starting a Kafka Connect standalone worker (FileStreamSource)")
        with kc.ConnectWorker(self.work / f"connect-source-{rep}", self.bootstrap,
                              [kc.file_source(self.name("connect-fs"), inventory, topic)]) as w:
            last, last_say = 0, time.monotonic()
            deadline = time.monotonic() + max(300, self.size / 2000)
            while last < self.size:
                if not w.alive() or time.monotonic() > deadline:
                    raise SystemExit(f"Kafka Connect's source did not finish ({last} records):\n{w.tail()}")
                time.sleep(0.2)
                last = self.end_offset(topic)
                if time.monotonic() - last_say >= 5:
                    last_say = time.monotonic()
                    say(f"  file_source connect #{rep + 1}: {last:,} records so far")
            wall = time.monotonic() - w.started
            rss = w.peak_rss_mb()
        t_first, t_last = self.record_times(topic, 0, self.size - 1)
        return {"records": self.size, "bytes": nbytes, "seconds": t_last - t_first, "wall_seconds": wall,
                "peak_rss_mb": rss, "timing": "first to last record's CreateTime (JVM and connector start excluded)"}

    def case_file_sink(self) -> None:
        inventory = self.inventory_file()
        expected = inventory.read_bytes()
        topic = self.fill_sink_topic(inventory)
        for rep in range(self.reps):
            for variant in ("airconnect", "minimal", "connect"):
                out_file = self.work / f"sink-{variant}-{rep}.txt"
                if variant == "connect":
                    out = self.connect_sink(rep, topic, out_file, len(expected))
                elif variant == "airconnect":
                    out = self.worker("file_sink", variant, rep, {"kind": "file_sink", "definition": {
                        "name": self.name("fsink"), "config": {"connector.class": "FileStreamSinkConnector",
                                                               "file": str(out_file), "topics": topic}}})
                else:
                    out = self.worker("file_sink", variant, rep, {"kind": "file_sink", "file": str(out_file),
                                                                 "topic": topic, "group": self.name("min-sink")})
                out["output_identical"] = out_file.read_bytes() == expected
                if not out["output_identical"]:
                    raise SystemExit(f"file_sink {variant}: {out_file} differs from {inventory}")
                self.record("file_sink", variant, rep, out)
                out_file.unlink()
        self.drop_topics()
        self.summarize_throughput("file_sink", ("minimal", "connect"))

    def connect_sink(self, rep: int, topic: str, out_file: Path, nbytes: int) -> dict[str, Any]:
        say(f"file_sink connect #{rep + 1}: starting a Kafka Connect standalone worker (FileStreamSink)")
        with kc.ConnectWorker(self.work / f"connect-sink-{rep}", self.bootstrap,
                              [kc.file_sink(self.name("connect-fsink"), out_file, topic)]) as w:
            first = None
            size, last_say = 0, time.monotonic()
            deadline = time.monotonic() + max(300, self.size / 2000)
            while size < nbytes:
                if not w.alive() or time.monotonic() > deadline:
                    raise SystemExit(f"Kafka Connect's sink did not finish ({size} bytes):\n{w.tail()}")
                time.sleep(0.02)
                size = out_file.stat().st_size if out_file.exists() else 0
                if size and first is None:
                    first = time.monotonic()
                if time.monotonic() - last_say >= 5:
                    last_say = time.monotonic()
                    say(f"  file_sink connect #{rep + 1}: {size / MB:.1f} of {nbytes / MB:.1f} MB written")
            done = time.monotonic()
            rss = w.peak_rss_mb()
        return {"records": self.size, "bytes": nbytes, "seconds": done - first, "wall_seconds": done - w.started,
                "peak_rss_mb": rss, "timing": "first to last byte in the file (JVM start and group join excluded)"}

    def jdbc_definition(self, db: dict[str, Any], prefix: str) -> dict[str, Any]:
        """The shape of include/connectors/jdbc-ec-sales.json and jdbc-pos-sales.json."""
        return {"name": self.name("jdbc"), "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "unused-in-the-core",
            "mode": "timestamp+incrementing", "table.whitelist": db["table"], "timestamp.column.name": db["ts"],
            "incrementing.column.name": db["inc"], "timestamp.delay.interval.ms": "5000",
            "timestamp.lookback.ms": "60000", "topic.prefix": prefix}}

    def run_jdbc(self, case: str, db: dict[str, Any],
                 variants: tuple[str, ...] = ("airconnect", "minimal", "bare")) -> None:
        """The source, the minimal loop and the bare fetch (the database's speed), interleaved."""
        for rep in range(self.reps):
            for variant in variants:
                if variant == "airconnect":
                    prefix = self.name("jdbc") + "."
                    self.topics.append(prefix + db["table"])
                    spec = {"kind": "jdbc", "db": db, "definition": self.jdbc_definition(db, prefix)}
                elif variant == "bare":
                    spec = {"kind": "jdbc", "db": db}
                elif variant == "floor":
                    spec = {"kind": "jdbc", "db": db, "topic": self.create_topic(self.name("jdbc-floor"))}
                else:
                    spec = {"kind": "jdbc", "db": db, "topic": self.create_topic(self.name("jdbc-min"))}
                out = self.worker(case, variant, rep, spec)
                if out["records"] != db["rows"]:
                    raise SystemExit(f"{case} {variant}: {out['records']} records, expected {db['rows']}")
                self.record(case, variant, rep, out)
                self.drop_topics()

    def case_jdbc_pg(self) -> None:
        self.run_jdbc("jdbc_pg", self.sales_db("postgres", self.size), ("airconnect", "minimal", "bare", "floor"))
        self.summarize_throughput("jdbc_pg", ("minimal", "bare", "floor"))
        floor, bare = (self.summary["jdbc_pg"]["medians"][v]["records_per_s"] for v in ("floor", "bare"))
        if floor and bare:
            # What a source could reach at all here: fetching and delivering, nothing encoded.
            self.summary["jdbc_pg"]["ratios"]["floor/bare"] = floor / bare

    def case_jdbc_mariadb(self) -> None:
        self.run_jdbc("jdbc_mariadb", self.sales_db("mysql", self.size))
        self.summarize_throughput("jdbc_mariadb", ("minimal", "bare"))

    def case_s3_sink(self) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3["endpoint"], aws_access_key_id=self.s3["key"],
                          aws_secret_access_key=self.s3["secret"], region_name="us-east-1")
        bucket = self.tag + "-s3"
        s3.create_bucket(Bucket=bucket)
        topic = self.fill_sales_topic()
        try:
            for rep in range(self.reps):
                for variant in ("airconnect", "minimal"):
                    topics_dir = f"{variant}-{rep}"
                    common = {"kind": "s3_sink", "s3": self.s3, "bucket": bucket, "topic": topic}
                    if variant == "airconnect":
                        spec = {**common, "definition": {"name": self.name("s3"), "config": {
                            "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic,
                            "s3.bucket.name": bucket, "topics.dir": topics_dir, "flush.size": "50000",
                            "timestamp.field": "ordered_at", "timezone": "UTC"}}}
                    else:
                        spec = {**common, "topics_dir": topics_dir, "flush_size": 50000, "timestamp_field": "ordered_at",
                                "group": self.name("min-s3")}
                    out = self.worker("s3_sink", variant, rep, spec)
                    objects = self.clear_prefix(s3, bucket, topics_dir + "/")
                    out["objects"] = objects
                    self.record("s3_sink", variant, rep, out)
        finally:
            self.clear_prefix(s3, bucket, "")
            s3.delete_bucket(Bucket=bucket)
            self.drop_topics()
        self.summarize_throughput("s3_sink", ("minimal",))

    @staticmethod
    def clear_prefix(s3: Any, bucket: str, prefix: str) -> int:
        """Delete the objects under ``prefix`` (moto keeps them in memory); return how many there were."""
        n = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
            n += len(keys)
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        return n

    def case_scaling(self) -> None:
        small, large = self.sales_db("postgres", self.size), self.sales_db("postgres", 5 * self.size)
        for rep in range(self.reps):
            for label, db in (("1x", small), ("5x", large)):
                prefix = self.name("scale") + "."
                self.topics.append(prefix + db["table"])
                out = self.worker("scaling", "airconnect", rep, {"kind": "jdbc", "db": db,
                                                                 "definition": self.jdbc_definition(db, prefix)})
                self.record("scaling", label, rep, out)
                self.drop_topics()
        med = self.medians("scaling")
        rows = med["5x"]["records"] / med["1x"]["records"]
        time_ratio = med["5x"]["seconds"] / med["1x"]["seconds"]
        rss_ratio = med["5x"]["peak_rss_mb"] / med["1x"]["peak_rss_mb"]
        self.summary["scaling"] = {
            "medians": med, "rows_ratio": rows,
            "ratios": {"time 5x/1x per row (1.0 = linear)": time_ratio / rows, "peak RSS 5x/1x": rss_ratio},
            "targets": {f"peak RSS 5x/1x <= {MAX_RSS_GROWTH}": rss_ratio <= MAX_RSS_GROWTH},
        }

    def case_jdbc_sink_pg(self) -> None:
        import jdbc_sink_case

        jdbc_sink_case.run(self, "postgres")

    def case_jdbc_sink_mariadb(self) -> None:
        import jdbc_sink_case

        jdbc_sink_case.run(self, "mysql")

    def case_cdc_pg(self) -> None:
        import cdc_case

        cdc_case.run(self)

    def case_cdc_mariadb(self) -> None:
        import cdc_case

        cdc_case.run(self, "mariadb")

    def case_scaling_tasks(self) -> None:
        import scaling_tasks_case

        scaling_tasks_case.run(self)

    def case_airflow(self) -> None:
        import airflow_case

        self.summary["airflow"] = airflow_case.run(self)

    # ------------------------------------------------------------------ report

    def table(self) -> str:
        lines = [f"airconnect benchmarks, run {self.run_id}: size {self.size:,}, {self.reps} interleaved rep(s), "
                 f"medians; {os.cpu_count()} CPU(s) shared", ""]
        head = f"{'case':<13} {'variant':<12} {'records':>10} {'records/s':>11} {'MB/s':>7} {'peak RSS MB':>11} {'ratio':>24}"
        lines += [head, "-" * len(head)]
        for case, s in self.summary.items():
            if case == "airflow":
                continue
            for variant, m in s["medians"].items():
                ratio = ""
                if case != "scaling" and variant != "airconnect":
                    r = s["ratios"].get(f"airconnect/{variant}")
                    ratio = f"airconnect/{variant} {r:.2f}x" if r else ""
                mbs = f"{m['mb_per_s']:.1f}" if m["mb_per_s"] else "-"
                lines.append(f"{case:<13} {variant:<12} {m['records'] or 0:>10,.0f} {m['records_per_s'] or 0:>11,.0f} "
                             f"{mbs:>7} {m['peak_rss_mb'] or 0:>11.0f} {ratio:>24}")
            if "floor/bare" in s["ratios"]:
                lines.append(f"{'':<13} floor/bare {s['ratios']['floor/bare']:.2f}x: fetching and delivering the rows, nothing encoded")
            if case in ("scaling", "scaling_tasks"):
                for k, v in s["ratios"].items():
                    lines.append(f"{'':<13} {k}: {v:.2f}")
        if "airflow" in self.summary:
            a = self.summary["airflow"]
            lines.append("")
            for k, v in a["figures"].items():
                lines.append(f"airflow       {k}: {v}")
        lines += ["", "targets:"]
        for case, s in self.summary.items():
            for k, ok in s.get("targets", {}).items():
                lines.append(f"  {'met   ' if ok else 'MISSED'} {case}: {k}")
        return "\n".join(lines)

    def save(self) -> Path:
        out = HERE / "results" / f"{self.run_id}.json"
        out.parent.mkdir(exist_ok=True)
        doc = {"run_id": self.run_id, "size": self.size, "reps": self.reps, "cases": list(self.summary),
               "cpus": os.cpu_count(), "python": sys.version.split()[0],
               "airconnect_plugins": self.args.airconnect_plugins, "commit": _commit(),
               "started_utc": self.run_id[:16], "summary": self.summary, "runs": self.runs}
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/run.sh", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1_000_000, help="records/rows per case (default %(default)s)")
    p.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated, from {','.join(ALL_CASES)}")
    p.add_argument("--reps", type=int, default=2, help="interleaved repetitions of each variant (default %(default)s)")
    p.add_argument("--appends", type=int, default=None,
                   help="airflow case: appends timed with a running scheduler (default 20, or 5 when --size < 1000000)")
    p.add_argument("--profile", default="", help="comma-separated cases whose airconnect runs write a cProfile dump")
    p.add_argument("--airconnect-plugins", default=str(ROOT / "plugins"), metavar="DIR",
                   help="the plugins/ folder whose airconnect the workers run (default: this checkout's), "
                        "e.g. an older commit's, for before/after figures")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in ALL_CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(ALL_CASES)}")
    args.profile = {c.strip() for c in args.profile.split(",") if c.strip()}
    if args.appends is None:
        args.appends = 20 if args.size >= 1_000_000 else 5
    bench = Bench(args)
    say(f"run {bench.run_id}: size {args.size:,}, cases {', '.join(cases)}, {args.reps} rep(s), airconnect from "
        f"{args.airconnect_plugins}; work files in {bench.work}")
    t0 = time.monotonic()
    try:
        for case in cases:
            say(f"=== case {case}")
            getattr(bench, f"case_{case}")()
            bench.save()
    finally:
        bench.drop_topics()
    path = bench.save()
    print()
    print(bench.table())
    print()
    say(f"done in {time.monotonic() - t0:.0f} s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
