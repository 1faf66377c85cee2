"""The ``scaling_tasks`` case (issue #13): what ``tasks.max`` buys under Airflow's CeleryExecutor.

A JDBC source over 4 tables (``size`` rows in all) and an S3 sink over a 4-partition topic
(``size`` records), each at 1, 2 and 4 tasks. Two variants, interleaved:

- ``celery`` (the measurement the targets apply to): Airflow with the CeleryExecutor
  (tests/celery_stack.py: scheduler, API server, DAG processor, two Celery workers w1 and w2 of
  concurrency 2, so 4 tasks can run at once, Redis as the broker), one DAG per connector
  definition built by ``airconnect.tasks.connector_task`` (tasks.max > 1: the split task, then one
  mapped task per share), one DAG run each. Time: from the first connector task's ``start_date``
  to the last one's ``end_date`` (Airflow's task instances; the split task before them is left
  out, the task processes' start-up and the gaps between the mapped tasks' starts are in). Peak
  RSS and USS (its own pages, not those shared with the worker it was forked from): each task
  process (title ``airflow worker -- <task instance id>``), sampled every 0.5 s.
- ``procs``: the same split (:func:`airconnect.core.split.task_configs`), each share run by
  ``airconnect.core.runtime.run`` in a spawned process of its own, all at once, no Airflow: the
  connector's own scaling, so the difference to ``celery`` is what Airflow's scheduling costs.
  Time from the first share's start to the last one's end; peak RSS: each process's ``VmHWM``.

For every run the records are counted: the source's topics (read_committed) against the rows,
the S3 objects' lines against the topic's records (a miscount stops the case). While a run
goes, the CPU seconds of each service (the task processes, the Celery workers and Airflow's
services, Kafka, PostgreSQL, moto's S3 server, Redis, everything else) and the machine's busy
cores are sampled (psutil): what bounds the ratio when it falls short of the cores.

Targets (``celery``): at least 1.6x at 2 tasks (2 cores: 2x is the physical limit), and at 4
tasks every record once (the counts).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/celery_stack.py, shared with test_celery_tasks.py

TASKS = (1, 2, 4)
TABLES = 4
PARTITIONS = 4
MIN_AT_2 = 1.6
SAMPLE_S = 0.5
WORKERS = ("w1", "w2")
CONCURRENCY = 2  # per worker: 4 task slots in all
TASK_TITLE = "airflow worker -- "  # the task process's title (airflow.sdk task_runner), then the TI's id

DAG_FILE = '''"""scaling_tasks benchmark: one DAG per connector in $AIRCONNECT_SCALING_DEFINITIONS."""
import json
import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from airconnect.core.registry import validate
from airconnect.tasks import connector_task

for definition in json.loads(Path(os.environ["AIRCONNECT_SCALING_DEFINITIONS"]).read_text()):
    config = validate(definition)
    with DAG(f"scaling_{config.name}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
             max_active_runs=1, tags=["airconnect"]) as dag:
        connector_task(config)
    globals()[dag.dag_id] = dag
'''


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------- CPU and memory sampling

class Sampler:
    """Samples every process on the machine every ``SAMPLE_S`` seconds while a run goes: CPU seconds
    per service (a process's last CPU time minus its first, or minus 0 if it started within the
    window), the machine's busy CPU seconds, and each task process's peak RSS."""

    def __init__(self, roots: dict[str, list[int]]):
        self.roots = roots  # group -> pids that, with their descendants, belong to it; an earlier group wins
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.task_rss: dict[str, float] = {}  # task instance id (celery) or pid (procs) -> peak RSS MB
        self.task_uss: dict[str, float] = {}  # the same, peak USS (unique set size) MB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        import psutil

        self.t0, self.cpu0 = time.time(), psutil.cpu_times()
        self._tick()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import psutil

        self._stop.set()
        self._thread.join()
        self._tick()
        self.t1, self.cpu1 = time.time(), psutil.cpu_times()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._tick()

    def _classify(self, p: Any, family: dict[int, str]) -> str:
        cmd = " ".join(p.info["cmdline"] or ())
        if cmd.startswith(TASK_TITLE):
            return "tasks"
        if p.pid in family:
            return family[p.pid]
        if p.pid == os.getpid():
            return "bench (sampling, polling)"
        name = p.info["name"] or ""
        if name == "postgres":
            return "postgresql"
        if name == "java" and "kafka.Kafka" in cmd:
            return "kafka"
        if "moto_server" in cmd:
            return "s3 (moto)"
        if name == "redis-server":
            return "redis"
        args = p.info["cmdline"] or [name]
        if name.startswith("python") and len(args) > 1:  # a Python program: its script or module (pytest, ...)
            rest = [a for a in args[1:] if not a.startswith("-")]
            name = os.path.basename(rest[0]) if rest else name
        return f"other: {name}"

    def _tick(self) -> None:
        import psutil

        family: dict[int, str] = {}
        for group, pids in self.roots.items():
            for pid in pids:
                if pid != os.getpid():
                    family.setdefault(pid, group)
                try:
                    for child in psutil.Process(pid).children(recursive=True):
                        family.setdefault(child.pid, group)
                except psutil.NoSuchProcess:
                    continue
        for p in psutil.process_iter(["name", "cmdline", "cpu_times", "memory_info", "create_time"]):
            ct, mem = p.info["cpu_times"], p.info["memory_info"]
            if ct is None or mem is None:
                continue
            cpu = ct.user + ct.system
            if p.pid not in self.first:
                self.first[p.pid] = cpu if (p.info["create_time"] or 0) < getattr(self, "t0", 0) - 1 else 0.0
            self.last[p.pid] = cpu
            group = self._classify(p, family)
            if self.group.get(p.pid) != "tasks":  # a task process keeps its group once its title is set
                self.group[p.pid] = group
            cmd = " ".join(p.info["cmdline"] or ())
            key = cmd[len(TASK_TITLE):].strip() if cmd.startswith(TASK_TITLE) else (
                str(p.pid) if group == "tasks" else None)
            if key:
                self.task_rss[key] = max(self.task_rss.get(key, 0.0), mem.rss / 1024 / 1024)
                try:  # what the task adds: its pages shared with the process it was forked from left out
                    uss = p.memory_full_info().uss / 1024 / 1024
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.task_uss[key] = max(self.task_uss.get(key, 0.0), uss)

    def cpu_seconds(self) -> dict[str, float]:
        """Service -> CPU seconds in the window; ``other`` is the sum of the ``other: <program>`` entries
        (whatever else ran on the machine), of which the two largest are kept."""
        out: dict[str, float] = {}
        for pid, last in self.last.items():
            g = self.group.get(pid, "other: ?")
            out[g] = out.get(g, 0.0) + max(0.0, last - self.first.get(pid, last))
        others = sorted(((k, v) for k, v in out.items() if k.startswith("other: ")), key=lambda kv: -kv[1])
        for k, _ in others[2:]:
            del out[k]
        out["other"] = sum(v for _, v in others)
        busy = sum(getattr(self.cpu1, f) - getattr(self.cpu0, f) for f in ("user", "system", "nice", "irq", "softirq", "steal")
                   if hasattr(self.cpu1, f))
        out["machine busy"] = busy
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _cpu_line(cpu: dict[str, float], seconds: float) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if v >= 0.5 and k != "machine busy") + \
        f" CPU s over {seconds:.1f} s ({cpu.get('machine busy', 0) / seconds if seconds else 0:.2f} cores busy)"


# ---------------------------------------------------------------------- data

def _pg(bench: Any) -> Any:
    import psycopg2

    return psycopg2.connect(host=bench.pg["host"], port=bench.pg["port"], user=bench.pg["user"],
                            password=bench.pg["password"], dbname="ec")


def _tables(bench: Any, rows: int) -> list[str]:
    names = [bench.name("tasks").replace("-", "_") for _ in range(TABLES)]
    conn = _pg(bench)
    with conn, conn.cursor() as cur:
        for t in names:
            cur.execute(f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, item_id TEXT NOT NULL, quantity INT NOT NULL, "
                        "unit_price NUMERIC(12,2) NOT NULL, ordered_at TIMESTAMPTZ NOT NULL)")
            cur.execute(f"INSERT INTO {t} SELECT g, 'ITEM' || (g % 500), 1 + g % 7, (g % 10000) / 100.0, "
                        f"TIMESTAMPTZ '2018-01-01' + g * INTERVAL '1 second' FROM generate_series(1, {rows}) g")
            cur.execute(f"ANALYZE {t}")
    conn.close()
    return names


def _drop(bench: Any, tables: list[str]) -> None:
    conn = _pg(bench)
    with conn, conn.cursor() as cur:
        for t in tables:
            cur.execute(f"DROP TABLE IF EXISTS {t}")
    conn.close()


def _fill_topic(bench: Any) -> str:
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    topic = bench.name("tasks-sales")
    bench.admin().create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)])[topic].result()
    bench.topics.append(topic)
    schema = ('{"type":"struct","optional":false,"fields":[{"type":"int64","optional":false,"field":"id"},'
              '{"type":"string","optional":false,"field":"item_id"},{"type":"string","optional":false,"field":"sold_at"}]}')
    p = Producer({"bootstrap.servers": bench.bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "compression.type": "lz4"})
    for i in range(bench.size):
        value = f'{{"schema":{schema},"payload":{{"id":{i},"item_id":"ITEM{i % 500:03d}","sold_at":"2018-{1 + i % 12:02d}-15T10:00:00Z"}}}}'
        while True:
            try:
                p.produce(topic, value.encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return topic


def _count_topics(bench: Any, topics: list[str]) -> int:
    """Committed records on ``topics`` (read_committed, to the end of every partition)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": bench.name("count"), "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    n = 0
    try:
        tps = [TopicPartition(t, p, 0) for t in topics for p in c.list_topics(t, timeout=10).topics[t].partitions]
        c.assign(tps)
        done: set[tuple[str, int]] = set()
        idle = 0
        while len(done) < len(tps) and idle < 200:
            msgs = c.consume(10000, timeout=0.2)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                if m.error():
                    done.add((m.topic(), m.partition()))
                else:
                    n += 1
    finally:
        c.close()
    return n


def _delete_topics(bench: Any, topics: list[str]) -> None:
    if not topics:
        return
    for f in bench.admin().delete_topics(topics, operation_timeout=30).values():
        try:
            f.result()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _count_lines(s3: Any, bucket: str, prefix: str) -> int:
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            n += s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().count(b"\n")
    return n


# ---------------------------------------------------------------------- the two variants

def _task(kind: str, definition: dict[str, Any], share: dict[str, Any], kafka: dict[str, Any],
          db: dict[str, Any], s3: dict[str, str]) -> dict[str, Any]:
    """procs: one task in its own process, its share of the connector; its records and peak RSS."""
    from airconnect.core.offsets import MemoryStore
    from airconnect.core.registry import validate
    from airconnect.core.runtime import run

    config = validate(definition).for_task(share)
    resources: dict[str, Any] = {}
    if kind == "jdbc":
        import psycopg2

        resources["connect"] = lambda: psycopg2.connect(host=db["host"], port=db["port"], user=db["user"],
                                                        password=db["password"], dbname="ec")
    else:
        import boto3

        resources["s3_client"] = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                                              aws_secret_access_key=s3["secret"], region_name="us-east-1")
    started = time.time()
    out = run(config, MemoryStore(), kafka, **resources)  # offsets: each task's partitions are its own
    # VmHWM, not getrusage's ru_maxrss: a spawned process's ru_maxrss keeps the high-water mark of
    # the forked copy of this bench process from before its exec.
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    return {"records": out["records"], "started": started, "ended": time.time(), "peak_rss_mb": hwm / 1024}


def _roots(af: Any) -> dict[str, list[int]]:
    return {"celery workers": [af.procs[w].pid for w in WORKERS],
            "airflow services": [p.pid for s, p in af.procs.items() if s not in WORKERS and s != "redis"]}


def _run_procs(bench: Any, af: Any, kind: str, definition: dict[str, Any], kafka: dict[str, Any]) -> dict[str, Any]:
    from airconnect.core.registry import validate
    from airconnect.core.split import task_configs

    config = validate(definition)
    shares = task_configs(config, kafka)
    ctx = multiprocessing.get_context("spawn")  # each task a fresh process, as on a worker
    with Sampler({**_roots(af), "tasks": [os.getpid()]}) as sampler, ProcessPoolExecutor(len(shares), mp_context=ctx) as pool:
        futures = [pool.submit(_task, kind, config.definition(), share, kafka, bench.pg, bench.s3) for share in shares]
        results = [f.result() for f in futures]
    start, end = min(r["started"] for r in results), max(r["ended"] for r in results)
    return {"records": sum(r["records"] for r in results), "seconds": end - start, "tasks": len(shares),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "task_rss_mb": [round(r["peak_rss_mb"]) for r in results],
            "cpu_s": sampler.cpu_seconds(), "window_s": sampler.t1 - sampler.t0}


def _run_celery(bench: Any, af: Any, label: str, name: str) -> dict[str, Any]:
    from airconnect.task_status import SPLIT_TASK

    dag_id = f"scaling_{name}"
    with Sampler(_roots(af)) as sampler:
        run_id = af.trigger(dag_id)
        deadline = time.monotonic() + 1800
        said = time.monotonic()
        while (state := af.run_state(dag_id, run_id)) not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: run {run_id} not finished within 30 min\n{af.tails()}")
            if time.monotonic() - said >= 15:
                tis = af.task_instances(dag_id, run_id, mapped_only=False)
                _say(f"{label}: " + ", ".join(f"{t['task_id'].rsplit('.', 1)[-1]}"
                                              f"{'' if t['map_index'] < 0 else '[%d]' % t['map_index']} {t['state']}"
                                              for t in tis))
                said = time.monotonic()
            time.sleep(0.25)
    tis = af.task_instances(dag_id, run_id, mapped_only=False)
    if state != "success":
        raise SystemExit(f"{label}: run {run_id} {state}: {tis}\n{af.tails()}")
    work = [t for t in tis if not t["task_id"].endswith(f".{SPLIT_TASK}")]
    start, end = min(t["start_date"] for t in work), max(t["end_date"] for t in work)
    rss = [sampler.task_rss.get(t["id"], 0.0) for t in work]
    uss = [sampler.task_uss.get(t["id"], 0.0) for t in work]
    with af.meta.cursor() as cur:
        cur.execute("SELECT start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        run_start, run_end = cur.fetchone()
    return {"seconds": (end - start).total_seconds(), "tasks": len(work), "peak_rss_mb": max(rss),
            "task_rss_mb": [round(r) for r in rss], "task_uss_mb": [round(r) for r in uss],
            "hosts": sorted({(t["hostname"] or "").split("@")[0] for t in work}),
            "task_seconds": [round((t["end_date"] - t["start_date"]).total_seconds(), 1) for t in work],
            "first_task_start_after_run_start_s": round((start - run_start).total_seconds(), 1),
            "run_seconds": round((run_end - run_start).total_seconds(), 1),
            "cpu_s": sampler.cpu_seconds(), "window_s": sampler.t1 - sampler.t0}


# ---------------------------------------------------------------------- the case

def _definitions(bench: Any, tables: list[str], topic: str, bucket: str) -> dict[tuple[int, str, int], dict[str, Any]]:
    """(rep, kind, tasks) -> the connector definition (names, topics and folders of its own)."""
    out: dict[tuple[int, str, int], dict[str, Any]] = {}
    for rep in range(bench.reps):
        for tasks in TASKS:
            u = bench.name(f"{rep}-{tasks}").rsplit("-", 1)[-1]
            out[rep, "jdbc", tasks] = {"name": f"jdbc_{tasks}_{rep}_{u}", "config": {
                "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "scaling_pg",
                "kafka.conn.id": "scaling_kafka", "mode": "incrementing", "incrementing.column.name": "id",
                "table.whitelist": ",".join(tables), "topic.prefix": f"{bench.tag}-{u}-", "tasks.max": str(tasks)}}
            out[rep, "s3", tasks] = {"name": f"s3_{tasks}_{rep}_{u}", "config": {
                "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic,
                "kafka.conn.id": "scaling_kafka", "aws.conn.id": "scaling_s3", "s3.bucket.name": bucket,
                "topics.dir": f"{bench.tag}-{u}", "timestamp.field": "sold_at", "flush.size": "50000",
                "tasks.max": str(tasks)}}
    return out


def _celery(bench: Any, definitions: dict[tuple[int, str, int], dict[str, Any]]) -> Any:
    from celery_stack import CeleryAirflow

    home = bench.work / "celery-airflow"
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "scaling_tasks.py").write_text(DAG_FILE)
    (home / "definitions.json").write_text(json.dumps(list(definitions.values()), indent=1))
    pg, s3 = bench.pg, bench.s3
    env = {
        "AIRCONNECT_SCALING_DEFINITIONS": str(home / "definitions.json"),
        "AIRFLOW_CONN_SCALING_PG": f"postgresql://{pg['user']}:{pg['password']}@{pg['host']}:{pg['port']}/ec",
        "AIRFLOW_CONN_SCALING_KAFKA": json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": bench.bootstrap}}),
        "AIRFLOW_CONN_SCALING_S3": json.dumps({"conn_type": "aws", "login": s3["key"], "password": s3["secret"],
                                               "extra": {"endpoint_url": s3["endpoint"], "region_name": "us-east-1"}}),
        "PYTHONPATH": bench.args.airconnect_plugins + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
    }
    return CeleryAirflow(home, dags, env, workers=WORKERS, concurrency=CONCURRENCY,
                         dag_ids=[f"scaling_{d['name']}" for d in definitions.values()])


def _measure(bench: Any, af: Any, s3: Any, bucket: str, tables: list[str], outputs: list[str],
             d: dict[str, Any], kind: str, tasks: int, variant: str, rep: int) -> None:
    """One run of connector ``d`` in ``variant``: timed, sampled, its records counted and recorded."""
    label = f"scaling_tasks {variant} {kind} {tasks} task(s) #{rep + 1}"
    expected = TABLES * (bench.size // TABLES) if kind == "jdbc" else bench.size
    _say(f"{label}: running")
    defn = d
    if variant == "procs":  # the same connector under another name: offsets, topics and folder of its own
        defn = {"name": d["name"] + "_p", "config": {**d["config"]}}
        if kind == "jdbc":
            defn["config"]["topic.prefix"] += "p-"
        else:
            defn["config"]["topics.dir"] += "-p"
    written = [defn["config"]["topic.prefix"] + t for t in tables] if kind == "jdbc" else []
    outputs.extend(written)
    if variant == "celery":
        out = _run_celery(bench, af, label, defn["name"])
    else:
        out = _run_procs(bench, af, kind, defn, {"bootstrap.servers": bench.bootstrap})
    if kind == "jdbc":
        out["records"] = _count_topics(bench, written)
        _delete_topics(bench, written)
        outputs[:] = [t for t in outputs if t not in written]
    else:
        out["records"] = _count_lines(s3, bucket, defn["config"]["topics.dir"] + "/")
        bench.clear_prefix(s3, bucket, defn["config"]["topics.dir"] + "/")
    if out["records"] != expected:
        raise SystemExit(f"{label}: {out['records']:,} records, expected {expected:,} (lost or doubled)")
    bench.record("scaling_tasks", f"{kind}_{tasks}" + ("" if variant == "celery" else "_procs"), rep, out)
    _say(f"{label}: every record once; task RSS {out['task_rss_mb']} MB"
         + (f" (USS {out['task_uss_mb']} MB)" if out.get("task_uss_mb") else "")
         + (f", on {','.join(out['hosts'])}" if out.get("hosts") else "")
         + f"; {_cpu_line(out['cpu_s'], out['window_s'])}")


def run(bench: Any) -> None:
    """Run the case on ``bench`` (benchmarks/bench.py's Bench); fills ``bench.summary``."""
    import boto3

    rows = bench.size // TABLES
    s3 = boto3.client("s3", endpoint_url=bench.s3["endpoint"], aws_access_key_id=bench.s3["key"],
                      aws_secret_access_key=bench.s3["secret"], region_name="us-east-1")
    bucket = f"{bench.tag}-tasks"
    s3.create_bucket(Bucket=bucket)
    _say(f"scaling_tasks: {TABLES} tables of {rows:,} rows in PostgreSQL, a {PARTITIONS}-partition topic of "
         f"{bench.size:,} records")
    tables = _tables(bench, rows)
    outputs: list[str] = []  # the source runs' topics, deleted once counted (and at the end, whatever happened)
    try:
        topic = _fill_topic(bench)
        definitions = _definitions(bench, tables, topic, bucket)
        _say(f"scaling_tasks: starting Airflow with the CeleryExecutor ({len(WORKERS)} workers of concurrency "
             f"{CONCURRENCY}, {len(definitions)} DAGs) in {bench.work / 'celery-airflow'}")
        t0 = time.monotonic()
        with _celery(bench, definitions) as af:
            _say(f"scaling_tasks: Airflow up and the DAGs parsed in {time.monotonic() - t0:.0f} s")
            for rep in range(bench.reps):
                for tasks in TASKS:
                    for kind in ("jdbc", "s3"):
                        for variant in ("celery", "procs"):
                            _measure(bench, af, s3, bucket, tables, outputs, definitions[rep, kind, tasks], kind,
                                     tasks, variant, rep)
    finally:
        _drop(bench, tables)
        _delete_topics(bench, outputs)
        bench.drop_topics()
        bench.clear_prefix(s3, bucket, "")
        s3.delete_bucket(Bucket=bucket)
    _summarize(bench)


def _summarize(bench: Any) -> None:
    med = bench.medians("scaling_tasks")
    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    for kind in ("jdbc", "s3"):
        for suffix in ("", "_procs"):
            one = med[f"{kind}_1{suffix}"]["records_per_s"] or 0
            for tasks in TASKS[1:]:
                r = (med[f"{kind}_{tasks}{suffix}"]["records_per_s"] or 0) / one if one else 0
                ratios[f"{'procs' if suffix else 'celery'} {kind} {tasks} tasks / 1 task"] = r
        for tasks in TASKS:  # what Airflow's scheduling and task start-up cost, at each task count
            procs = med[f"{kind}_{tasks}_procs"]["records_per_s"] or 0
            ratios[f"celery/procs {kind} {tasks} task(s)"] = (med[f"{kind}_{tasks}"]["records_per_s"] or 0) / procs if procs else 0
        targets[f"celery {kind}: >= {MIN_AT_2}x at 2 tasks"] = ratios[f"celery {kind} 2 tasks / 1 task"] >= MIN_AT_2
        targets[f"celery {kind}: every record once at 4 tasks"] = True  # counted above: a miscount stops the case
    # What bounds the ratios: the cores each part got during the runs (medians over the repetitions),
    # and the task processes' CPU seconds per million records (flat: the work per record does not grow).
    cores: dict[str, dict[str, float]] = {}
    for variant in med:
        rows = [r for r in bench.runs if r["case"] == "scaling_tasks" and r["variant"] == variant and "cpu_s" in r]
        groups = {k for r in rows for k in r["cpu_s"] if not k.startswith("other: ")}
        per = {g: statistics.median(r["cpu_s"].get(g, 0.0) / r["window_s"] for r in rows) for g in groups}
        per["task CPU s per million records"] = statistics.median(r["cpu_s"].get("tasks", 0.0) * 1e6 / r["records"]
                                                                  for r in rows)
        cores[variant] = {k: round(v, 2) for k, v in sorted(per.items())}
    bench.summary["scaling_tasks"] = {"medians": med, "ratios": ratios, "targets": targets, "cores": cores,
                                      "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for variant, c in cores.items():
        _say(f"scaling_tasks {variant}: cores (median) tasks {c.get('tasks', 0):.2f}, kafka {c.get('kafka', 0):.2f}, "
             f"postgresql {c.get('postgresql', 0):.2f}, s3 (moto) {c.get('s3 (moto)', 0):.2f}, airflow "
             f"{c.get('airflow services', 0) + c.get('celery workers', 0):.2f}, other work {c.get('other', 0):.2f}, "
             f"machine busy {c.get('machine busy', 0):.2f} of {os.cpu_count()}; "
             f"{c['task CPU s per million records']:.1f} task CPU s per million records")
    print(json.dumps({"scaling_tasks": ratios}), flush=True)
