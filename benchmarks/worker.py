"""One measured run, in its own process, so its peak RSS is its own.

    python benchmarks/worker.py '<json spec>'

The spec names a case and a variant (``airconnect`` or ``minimal``) and its inputs. Progress
lines go to stderr; the last line on stdout is the result as JSON: records, bytes, seconds
(the work itself, client set-up included, interpreter start-up excluded) and peak_rss_mb
(VmHWM of this process). ``"profile": path`` writes a cProfile dump of the work.

The ``bare`` JDBC variant is the database's speed: the source's query fetched and dropped.
The ``minimal`` variants are the practical ceiling in Python: the same input and the same
output bytes where the case has an output file, with none of airconnect's guarantees
(no transactions, no offsets journal, one commit at the end).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

ENVELOPE_HEAD = b'{"schema":{"type":"string","optional":false},"payload":'
log = logging.getLogger("bench")


class Ticker:
    """Progress lines every few seconds: records done and the rate."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.count = 0
        self.t0 = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%d records so far, %.0f records/s", self.count, self.count / (now - self.t0))


def peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM, which belongs to the memory image exec() made.
    (``ru_maxrss`` is not used: Linux carries the parent's peak over into it across the fork.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kafka_conf(spec: dict[str, Any]) -> dict[str, Any]:
    return {"bootstrap.servers": spec["bootstrap"]}


def minimal_conf(spec: dict[str, Any]) -> dict[str, Any]:
    """The minimal loops' client settings: what airconnect's clients get by default too
    (kafka_client.client_config), so that a loop's client starts as fast as airconnect's."""
    return {**kafka_conf(spec), "reconnect.backoff.ms": 20}


# ----------------------------------------------------------------------------- airconnect

def _run_connector(spec: dict[str, Any], **resources: Any) -> dict[str, Any]:
    from airconnect.core.offsets import MemoryStore
    from airconnect.core.runtime import run

    res = run(spec["definition"], MemoryStore(), kafka_conf(spec), **resources)
    return {"records": res["records"], "bytes": res.get("bytes")}


def airconnect_file(spec: dict[str, Any]) -> dict[str, Any]:
    return _run_connector(spec)


def airconnect_jdbc(spec: dict[str, Any]) -> dict[str, Any]:
    return _run_connector(spec, connect=lambda: db_connect(spec))


def airconnect_s3(spec: dict[str, Any]) -> dict[str, Any]:
    return _run_connector(spec, s3_client=s3_client(spec))


def db_connect(spec: dict[str, Any]) -> Any:
    db = spec["db"]
    if db["kind"] == "postgres":
        import psycopg2

        return psycopg2.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                                dbname=db["database"])
    import MySQLdb

    return MySQLdb.connect(host=db["host"], port=db["port"], user=db["user"], passwd=db["password"], db=db["database"],
                           charset="utf8mb4")


def s3_client(spec: dict[str, Any]) -> Any:
    import boto3

    s3 = spec["s3"]
    return boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                        aws_secret_access_key=s3["secret"], region_name="us-east-1")


# ----------------------------------------------------------------------------- minimal loops

def _producer(spec: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    # airconnect's batching settings, without transactions or idempotence.
    return Producer({**minimal_conf(spec), "linger.ms": 5, "batch.num.messages": 10000,
                     "queue.buffering.max.messages": 50000, "queue.buffering.max.kbytes": 16384})


def _produce(p: Any, topic: str, value: bytes, key: bytes | None = None) -> None:
    while True:
        try:
            p.produce(topic, value, key)
            return
        except BufferError:
            p.poll(0.05)


def minimal_file_source(spec: dict[str, Any]) -> dict[str, Any]:
    """Each line of the file, as JsonConverter's envelope, to the topic; flush at the end."""
    p = _producer(spec)
    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    topic, tick = spec["topic"], Ticker()
    n = nbytes = 0
    with open(spec["file"], "rb") as f:
        for line in f:
            nbytes += len(line)
            text = line[:-1].decode("utf-8") if line.endswith(b"\n") else line.decode("utf-8")
            _produce(p, topic, ENVELOPE_HEAD + enc(text).encode("utf-8") + b"}")
            n += 1
            if n % 10000 == 0:
                p.poll(0)
                tick.add(10000)
    p.flush(60)
    return {"records": n, "bytes": nbytes}


def _consumer(spec: dict[str, Any], group: str) -> Any:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**minimal_conf(spec), "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True, "isolation.level": "read_committed",
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 16 * 1024 * 1024,
                  # librdkafka's default 1000 ms stalls a loop that keeps up (see read_to_end)
                  "fetch.queue.backoff.ms": 10})
    md = c.list_topics(spec["topic"], timeout=15)
    parts = sorted(md.topics[spec["topic"]].partitions)
    c.assign([TopicPartition(spec["topic"], p, 0) for p in parts])
    return c, len(parts)


def _consume_all(spec: dict[str, Any], group: str, each: Callable[[Any], None]) -> int:
    from confluent_kafka import KafkaError

    c, nparts = _consumer(spec, group)
    eof: set[int] = set()
    n, tick = 0, Ticker()
    try:
        while len(eof) < nparts:
            msgs = c.consume(10000, timeout=0.1)
            got = 0
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise RuntimeError(m.error().str())
                each(m)
                got += 1
            n += got
            tick.add(got)
        c.commit(asynchronous=False)
    finally:
        c.close()
    return n


def minimal_file_sink(spec: dict[str, Any]) -> dict[str, Any]:
    """Each record's payload as one line of the file; fsync once at the end."""
    loads = json.loads
    nbytes = 0
    with open(spec["file"], "ab") as f:
        write = f.write

        def each(m: Any) -> None:
            nonlocal nbytes
            doc = loads(m.value())
            line = (doc["payload"] if isinstance(doc, dict) else doc).encode("utf-8") + b"\n"
            nbytes += len(line)
            write(line)

        n = _consume_all(spec, spec["group"], each)
        f.flush()
        os.fsync(f.fileno())
    return {"records": n, "bytes": nbytes}


def _jdbc_cursor(spec: dict[str, Any], name: str) -> tuple[Any, Any, str]:
    """A connection in a UTC session and a server-side cursor fetching 10,000 rows at a time (the
    JDBC source's): psycopg2's named cursor or mysqlclient's SSCursor; and the quote character."""
    conn = db_connect(spec)
    db = spec["db"]
    if db["kind"] == "postgres":
        cur = conn.cursor()
        cur.execute("SET TIME ZONE 'UTC'")
        cur.close()
        cur = conn.cursor(name=name)
        cur.itersize = 10000
        q = '"'
    else:
        import MySQLdb.cursors

        cur = conn.cursor()
        cur.execute("SET time_zone = '+00:00'")
        cur.close()
        cur = conn.cursor(MySQLdb.cursors.SSCursor)
        q = "`"
    return conn, cur, q


def bare_jdbc(spec: dict[str, Any]) -> dict[str, Any]:
    """The database's speed: the same ordered query over the same server-side cursor, each fetch of
    10,000 rows made into Python values by the driver and dropped (no encoding, no Kafka)."""
    conn, cur, q = _jdbc_cursor(spec, "bench_bare")
    db = spec["db"]
    table, ts, inc = (q + x + q for x in (db["table"], db["ts"], db["inc"]))
    cur.execute(f"SELECT * FROM {table} ORDER BY {ts}, {inc}")
    n, tick = 0, Ticker()
    while True:
        rows = cur.fetchmany(10000)
        if not rows:
            break
        n += len(rows)
        tick.add(len(rows))
    cur.close()
    conn.close()
    return {"records": n, "bytes": None}


def minimal_jdbc(spec: dict[str, Any]) -> dict[str, Any]:
    """A server-side cursor over the same ordered query, each row as schemaless JSON, keyed by its id."""
    conn, cur, q = _jdbc_cursor(spec, "bench_stream")
    db = spec["db"]
    table, ts, inc = (q + x + q for x in (db["table"], db["ts"], db["inc"]))
    cur.execute(f"SELECT * FROM {table} ORDER BY {ts}, {inc}")
    p = _producer(spec)
    dumps = json.JSONEncoder(default=str, separators=(",", ":")).encode
    topic, tick = spec["topic"], Ticker()
    n = nbytes = 0
    cols: list[str] = []
    while True:
        rows = cur.fetchmany(10000)
        if not rows:
            break
        cols = cols or [d[0] for d in cur.description]  # (a named cursor describes after its first fetch)
        for row in rows:
            value = dumps(dict(zip(cols, row))).encode()
            nbytes += len(value)
            _produce(p, topic, value, str(row[0]).encode())
        n += len(rows)
        p.poll(0)
        tick.add(len(rows))
    p.flush(60)
    cur.close()
    conn.close()
    return {"records": n, "bytes": nbytes}


def floor_jdbc(spec: dict[str, Any]) -> dict[str, Any]:
    """The physical floor of a PostgreSQL source on this machine: the same ordered rows fetched the
    cheapest way (COPY's text: one bytes object per row, no Python value made), each produced as a
    record of the source's size (its value envelope's schema before the row's text, the id as
    the key) with the source's batching and compression, nothing encoded, no transactions: what
    fetching and delivering the rows costs before any encoding."""
    import datetime as dt

    from airconnect.connectors.jdbc.dialect import DIALECTS
    from airconnect.connectors.jdbc.rows import _envelope_ends, describe_columns

    conn = db_connect(spec)
    db = spec["db"]
    cur = conn.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    cur.execute(f'SELECT * FROM "{db["table"]}" WHERE 1 = 0')
    columns = describe_columns(DIALECTS["postgres"], cur.description, dt.timezone.utc, {})
    head = _envelope_ends(columns, db["table"], True)[0].encode()
    p = _producer(spec)
    produce, topic, tick = p.produce, spec["topic"], Ticker()

    class Out:
        n = 0

        def write(self, line: bytes) -> None:
            try:
                produce(topic, head + line, line[:line.index(b"\t")])
            except BufferError:
                _produce(p, topic, head + line, line[:line.index(b"\t")])
            self.n += 1
            if self.n % 10000 == 0:
                tick.add(10000)

    out = Out()
    cur.copy_expert(f'COPY (SELECT * FROM "{db["table"]}" ORDER BY "{db["ts"]}", "{db["inc"]}") TO STDOUT', out)
    p.flush(60)
    cur.close()
    conn.close()
    return {"records": out.n, "bytes": None}


def minimal_s3(spec: dict[str, Any]) -> dict[str, Any]:
    """Each record's payload as one JSON line, in one object per month and 50,000 records, PUT."""
    s3 = s3_client(spec)
    bucket, prefix, topic = spec["bucket"], spec["topics_dir"], spec["topic"]
    flush = spec["flush_size"]
    loads = json.loads
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    open_objects: dict[str, tuple[int, list[bytes]]] = {}
    written = {"bytes": 0, "objects": 0}

    def put(month: str) -> None:
        first, lines = open_objects.pop(month)
        body = b"".join(lines)
        y, m = month.split("-")
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{topic}/year={y}/month={m}/{topic}+0+{first:010d}.json", Body=body)
        written["bytes"] += len(body)
        written["objects"] += 1

    def each(msg: Any) -> None:
        payload = loads(msg.value())["payload"]
        month = payload[spec["timestamp_field"]][:7]
        entry = open_objects.get(month)
        if entry is None:
            entry = open_objects[month] = (msg.offset(), [])
        entry[1].append(dumps(payload).encode("utf-8") + b"\n")
        if len(entry[1]) >= flush:
            put(month)

    n = _consume_all(spec, spec["group"], each)
    for month in sorted(open_objects):
        put(month)
    return {"records": n, **written}


VARIANTS: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("file_source", "airconnect"): airconnect_file,
    ("file_source", "minimal"): minimal_file_source,
    ("file_sink", "airconnect"): airconnect_file,
    ("file_sink", "minimal"): minimal_file_sink,
    ("jdbc", "airconnect"): airconnect_jdbc,
    ("jdbc", "minimal"): minimal_jdbc,
    ("jdbc", "bare"): bare_jdbc,
    ("jdbc", "floor"): floor_jdbc,
    ("s3_sink", "airconnect"): airconnect_s3,
    ("s3_sink", "minimal"): minimal_s3,
    ("jdbc_sink", "airconnect"): lambda spec: __import__("jdbc_sink_case").airconnect_sink(spec),
    ("jdbc_sink", "minimal"): lambda spec: __import__("jdbc_sink_case").minimal_sink(spec),
    ("jdbc_sink", "minimal_copy"): lambda spec: __import__("jdbc_sink_case").minimal_sink(spec),
}


def main() -> int:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"      [{spec['label']}] %(message)s")
    logging.getLogger("airconnect.librdkafka").setLevel(logging.WARNING)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    fn = VARIANTS[(spec["kind"], spec["variant"])]
    t0 = time.perf_counter()
    if spec.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        out = prof.runcall(fn, spec)
        prof.dump_stats(spec["profile"])
    else:
        out = fn(spec)
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = peak_rss_mb()
    if "airconnect" in sys.modules:
        out["airconnect_from"] = os.path.dirname(os.path.dirname(sys.modules["airconnect"].__file__))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
