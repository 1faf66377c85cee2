"""The Airflow overhead case: ``airflow dags test inventory_sync`` for one new line, and the
append-to-EC-file latency with a running scheduler, against Kafka Connect's standalone worker
(FileStreamSource + FileStreamSink, which polls the file every second) running at the same time,
appends alternating between the two.

Airflow runs in its own home (``$AIRCONNECT_BENCH_AIRFLOW_HOME``, default
``.stack/airflow-bench``) with its API server on ``$AIRCONNECT_BENCH_API_PORT`` (default 8850),
on the repository's dags/ and plugins/, and connector definitions of its own (unique topic and
files), so it never touches another Airflow on the machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import connect as kc

ROOT = Path(__file__).resolve().parents[1]
SPACING_S = 3.0  # pause after a line arrived before the next append
TIMEOUT_S = 120.0


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _env(home: Path, port: int, connectors: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        # The database in this home, whatever an airflow.cfg written by another checkout says.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRCONNECT_API_PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRCONNECT_CONNECTORS_DIR": str(connectors),
        "AIRCONNECT_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT / "plugins") + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
    })
    return env


def _airflow(env: dict[str, str], *args: str, log: Path) -> float:
    t0 = time.monotonic()
    with log.open("a") as out:
        rc = subprocess.run(["airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        raise SystemExit(f"airflow {' '.join(args)} failed (exit {rc}); log: {log}")
    return time.monotonic() - t0


def _wait_line(path: Path, marker: bytes, since: float) -> float:
    while time.monotonic() - since < TIMEOUT_S:
        if path.exists() and marker in path.read_bytes()[-4096:]:
            return time.monotonic() - since
        time.sleep(0.02)
    raise SystemExit(f"{marker!r} did not reach {path} within {TIMEOUT_S:.0f} s")


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def _deferred(home: Path) -> bool:
    try:
        db = sqlite3.connect(str(home / "airflow.db"), timeout=5)
        try:
            return bool(db.execute("select count(*) from task_instance where dag_id='inventory_sync' "
                                   "and state='deferred'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return False


def run(bench: Any) -> dict[str, Any]:
    home = Path(os.environ.get("AIRCONNECT_BENCH_AIRFLOW_HOME", ROOT / ".stack" / "airflow-bench"))
    port = int(os.environ.get("AIRCONNECT_BENCH_API_PORT", "8850"))
    work = bench.work / "airflow"
    connectors, data = work / "connectors", work / "data"
    connectors.mkdir(parents=True, exist_ok=True)
    (data / "ec").mkdir(parents=True, exist_ok=True)
    topic = bench.name("zaiko")
    bench.topics.append(topic)
    (connectors / "load.json").write_text(json.dumps({"name": bench.name("load-zaiko"), "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "file": "zaiko/latest.txt", "topic": topic}}))
    (connectors / "sink.json").write_text(json.dumps({"name": bench.name("sink-zaiko"), "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "file": "ec/zaiko-latest.txt", "topics": topic}}))
    inventory, ec = data / "zaiko" / "latest.txt", data / "ec" / "zaiko-latest.txt"
    inventory.parent.mkdir(parents=True, exist_ok=True)
    env = _env(home, port, connectors, data)
    env["AIRCONNECT_INVENTORY_SYNC_CONNECTORS"] = f"{bench.name('load-zaiko')},{bench.name('sink-zaiko')}"  # the DAG's
    log = work / "airflow.log"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "passwords.json").exists():
        (home / "passwords.json").write_text('{"admin": "admin"}')
    _say(f"airflow: `airflow db migrate` in {home} (creates the metadata database the first time)")
    _airflow(env, "db", "migrate", log=log)

    # 1. airflow dags test inventory_sync, one new line each time.
    inventory.write_text("ITEM001,SHOP001,929,2018-10-01 01:01:01\nITEM002,SHOP001,480,2018-10-01 01:01:01\n"
                         "ITEM001,SHOP001,25,2018-10-02 02:02:02\nITEM003,SHOP001,6902,2018-10-02 02:02:02\n")
    _say("airflow: a first `airflow dags test inventory_sync` (not timed: creates the topic and the offsets)")
    _airflow(env, "dags", "test", "inventory_sync", log=log)
    dags_test: list[float] = []
    for i in range(bench.reps + 1):
        _append(inventory, f"ITEM{100 + i:03d},SHOP001,{i},2018-10-03 03:00:00")
        wall = _airflow(env, "dags", "test", "inventory_sync", log=log)
        if ec.read_bytes() != inventory.read_bytes():
            raise SystemExit(f"airflow dags test: {ec} differs from {inventory}; log: {log}")
        dags_test.append(wall)
        _say(f"airflow: `airflow dags test inventory_sync` for one new line took {wall:.1f} s")

    # 2. Latency with a running scheduler, appends alternating with a Kafka Connect worker.
    c_in, c_out = work / "connect-in.txt", work / "connect-out.txt"
    c_in.write_text("ITEM001,SHOP001,929,2018-10-01 01:01:01\n")
    services = [str(ROOT / "scripts" / "airflow-services.sh")]
    _say(f"airflow: starting the API server (port {port}), scheduler, triggerer and DAG processor in {home}")
    try:
        subprocess.run([*services, "start"], env=env, check=True, cwd=ROOT)
    except BaseException:
        subprocess.run([*services, "stop"], env=env, cwd=ROOT)
        raise
    return _latency(bench, env, home, services, work, inventory, ec, c_in, c_out, dags_test, log)


def _latency(bench: Any, env: dict[str, str], home: Path, services: list[str], work: Path, inventory: Path,
             ec: Path, c_in: Path, c_out: Path, dags_test: list[float], log: Path) -> dict[str, Any]:
    ours: list[float] = []
    theirs: list[float] = []
    connect_topic = bench.name("connect-zaiko")
    bench.topics.append(connect_topic)
    try:
        _airflow(env, "dags", "unpause", "inventory_sync", log=log)
        with kc.ConnectWorker(work / "connect", bench.bootstrap,
                              [kc.file_source(bench.name("connect-load"), c_in, connect_topic),
                               kc.file_sink(bench.name("connect-sink"), c_out, connect_topic)]) as worker:
            _say("airflow: waiting for the first continuous run to wait on the inventory file, "
                 "and for Kafka Connect's first line")
            t0 = time.monotonic()
            while not _deferred(home):
                if time.monotonic() - t0 > 180:
                    raise SystemExit(f"inventory_sync never deferred on the file within 180 s; logs in {home / 'logs'}")
                time.sleep(0.5)
            _wait_line(c_out, b"ITEM001,SHOP001,929", time.monotonic())
            for i in range(bench.args.appends):
                marker = f"ITEM9{i:02d},SHOP002,{i},2018-10-04 04:00:00"
                _append(inventory, marker)
                ours.append(_wait_line(ec, marker.encode(), time.monotonic()))
                _append(c_in, marker)
                theirs.append(_wait_line(c_out, marker.encode(), time.monotonic()))
                _say(f"airflow: append {i + 1}/{bench.args.appends}: airconnect (scheduler) {ours[-1]:.2f} s, "
                     f"Kafka Connect {theirs[-1]:.2f} s")
                time.sleep(SPACING_S)
            connect_rss = worker.peak_rss_mb()
    finally:
        subprocess.run(["airflow", "dags", "pause", "inventory_sync"], env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([*services, "stop"], env=env, cwd=ROOT)
    if ec.read_bytes() != inventory.read_bytes():
        raise SystemExit(f"the EC file {ec} differs from {inventory} after the appends")
    p50, p95 = _pct(ours, 0.5), _pct(ours, 0.95)
    c50, c95 = _pct(theirs, 0.5), _pct(theirs, 0.95)
    dt_med = statistics.median(dags_test)
    return {
        "dags_test_seconds": dags_test,
        "latency_airconnect_s": ours,
        "latency_connect_s": theirs,
        "connect_peak_rss_mb": connect_rss,
        "spacing_s": SPACING_S,
        "figures": {
            "`airflow dags test inventory_sync`, one new line (median)": f"{dt_med:.1f} s",
            "append-to-EC latency, scheduler running (p50 / p95)": f"{p50:.2f} s / {p95:.2f} s over {len(ours)} appends",
            "Kafka Connect standalone, same appends (p50 / p95)": f"{c50:.2f} s / {c95:.2f} s",
            "ratio p95 airconnect / Kafka Connect": f"{p95 / c95:.1f}x",
        },
        "ratios": {"p95 latency airconnect/connect": p95 / c95, "p50 latency airconnect/connect": p50 / c50},
        "targets": {f"p95 append-to-EC latency <= {MAX_P95}": p95 <= MAX_P95},
    }


MAX_P95 = 5.0
