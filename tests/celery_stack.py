"""Airflow on the CeleryExecutor on this machine, for a test module or a benchmark: one scheduler,
API server and DAG processor, Celery workers with names of their own (``w1@host``, ...), a Redis
broker (the stack's, else one started here) and the metadata database in a PostgreSQL database
of its own (Airflow refuses SQLite with a distributed executor). Used by
tests/integration/test_celery_tasks.py and benchmarks/scaling_tasks_case.py.

::

    with CeleryAirflow(home, dags_folder, extra_env) as af:   # started, healthy, the DAGs parsed
        run_id = af.trigger("my_dag")
        af.finished("my_dag", run_id, timeout=600)
        af.task_instances("my_dag", run_id)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
SERVICES = ("api-server", "scheduler", "dag-processor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def kill_tree(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to a process we started and every process under it (a Celery worker's pool and its
    task processes)."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def wait(what: str, check: Callable[[], Any], timeout: float, tails: Callable[[], str] = lambda: "") -> Any:
    """``check()``'s first truthy value, polled every 0.5 s; TimeoutError (with ``tails()``) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s\n{tails()}")
        time.sleep(0.5)


class CeleryAirflow:
    """Starts on ``__enter__`` (database, Redis if needed, ``airflow db migrate``, the services, the
    workers; waits until healthy and until ``dag_ids`` are parsed), stops and drops everything on
    ``__exit__``. The workers take tasks from a queue of their own (``queue``), so a second Airflow
    on the same Redis never takes them."""

    def __init__(self, home: Path, dags: Path, env: dict[str, str] | None = None, *,
                 workers: Iterable[str] = ("w1", "w2"), concurrency: int = 1, dag_ids: Iterable[str] = (),
                 pg_port: str | None = None, redis_port: int | None = None):
        self.u = uuid.uuid4().hex[:8]
        self.home, self.dags = home, dags
        self.workers = tuple(workers)
        self.concurrency = concurrency
        self.dag_ids = tuple(dag_ids)
        self.pg_port = pg_port or os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
        self.redis_port = redis_port or int(os.environ.get("AIRCONNECT_REDIS_PORT", "6379"))
        self.queue = f"airconnect-{self.u}"
        self.db = f"airflow_celery_{self.u}"
        self.extra_env = dict(env or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = home / "service-logs"
        self.http: Any = None
        self.meta: Any = None

    # ------------------------------------------------------------------ start / stop

    def _admin(self) -> Any:
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airconnect", password="airconnect",
                                 dbname="ec")
        admin.autocommit = True
        return admin

    def __enter__(self) -> CeleryAirflow:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        import httpx
        import psycopg2

        self.logs.mkdir(parents=True, exist_ok=True)
        admin = self._admin()
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db}")
        admin.close()
        self._db_created = True
        redis_port = self.redis_port
        if not port_open(redis_port):  # the stack's Redis (scripts/stack.sh start redis), else one of our own
            redis_port = free_port()
            redis_dir = self.home / "redis"
            redis_dir.mkdir(exist_ok=True)
            self.procs["redis"] = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", str(redis_dir), "--save", ""],
                stdout=(redis_dir / "redis.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        (self.home / "passwords.json").write_text('{"admin": "admin"}')
        port = free_port()
        pg = f"airconnect:airconnect@127.0.0.1:{self.pg_port}/{self.db}"
        env = {k: v for k, v in os.environ.items()
               if k not in ("AIRFLOW_CONFIG", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__LOGGING__BASE_LOG_FOLDER")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,  # these workers only
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airconnect.tasks.worker_hostname",
            **self.extra_env,
        })
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=600)
        if migrate.returncode != 0:
            raise RuntimeError("airflow db migrate failed\n" + migrate.stdout[-3000:] + migrate.stderr[-3000:])

        def start(name: str, args: list[str], extra: dict[str, str] | None = None) -> None:
            with (self.logs / f"{name}.out").open("ab") as log:
                self.procs[name] = subprocess.Popen(args, cwd=ROOT, env={**env, **(extra or {})}, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

        for svc in SERVICES:
            start(svc, [AIRFLOW, svc] + (["--host", "127.0.0.1", "--port", str(port)] if svc == "api-server" else []))
        for w in self.workers:
            start(w, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{w}@%h", "--concurrency",
                      str(self.concurrency), "--queues", self.queue, "--skip-serve-logs", "--without-mingle",
                      "--without-gossip"],
                  {"AIRCONNECT_WORKER_HOSTNAME": f"{w}@{socket.gethostname()}"})
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            dead = {s: p.returncode for s, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"services exited: {dead}\n{self.tails()}")
            try:
                health = httpx.get(f"{base}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            return all((health.get(k) or {}).get("status") == "healthy"
                       for k in ("metadatabase", "scheduler", "dag_processor"))

        wait("Airflow healthy", healthy, 240, self.tails)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "admin"},
                           timeout=30).json()["access_token"]
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        for dag_id in self.dag_ids:
            wait(f"the DAG {dag_id} parsed", lambda: self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200,  # noqa: B023
                 180, self.tails)
        self.meta = psycopg2.connect(f"postgresql://{pg}")
        self.meta.autocommit = True

    def stop(self) -> None:
        if self.meta is not None:
            self.meta.close()
            self.meta = None
        for p in self.procs.values():
            kill_tree(p, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                kill_tree(p, signal.SIGKILL)
                p.wait(10)
        self.procs.clear()
        if getattr(self, "_db_created", False):
            admin = self._admin()
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
            admin.close()
            self._db_created = False
        shutil.rmtree(self.home / "redis", ignore_errors=True)

    def tails(self) -> str:
        """The last lines of each service's and worker's log."""
        return "\n".join(f"----- {name} -----\n" + "\n".join(
            (self.logs / f"{name}.out").read_text(errors="replace").splitlines()[-25:])
            for name in (*SERVICES, *self.workers) if (self.logs / f"{name}.out").exists())

    # ------------------------------------------------------------------ runs

    def trigger(self, dag_id: str) -> str:
        r = self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        if r.status_code != 200:
            raise RuntimeError(f"triggering {dag_id}: {r.status_code} {r.text}")
        return str(r.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        with self.meta.cursor() as cur:
            cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
            row = cur.fetchone()
        return row[0] if row else None

    def task_instances(self, dag_id: str, run_id: str, mapped_only: bool = True) -> list[dict[str, Any]]:
        """The run's task instances (the mapped ones only, unless ``mapped_only`` is False): task_id,
        map_index, state, hostname, try_number, start_date, end_date, id (what the task process's
        title names: ``airflow worker -- <id>``)."""
        with self.meta.cursor() as cur:
            cur.execute("SELECT task_id, map_index, state, hostname, try_number, start_date, end_date, id::text "
                        "FROM task_instance WHERE dag_id = %s AND run_id = %s" + (" AND map_index >= 0" if mapped_only else "")
                        + " ORDER BY task_id, map_index", (dag_id, run_id))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def finished(self, dag_id: str, run_id: str, timeout: float) -> None:
        """Waits for the run's end; RuntimeError unless it succeeded."""
        state = wait(f"run {run_id} of {dag_id} finished",
                     lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s, timeout, self.tails)
        if state != "success":
            raise RuntimeError(f"run {run_id} of {dag_id}: {state}: {self.task_instances(dag_id, run_id, False)}\n"
                               f"{self.tails()}")
