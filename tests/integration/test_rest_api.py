"""The REST API in Kafka Connect's shape (airconnect.rest), against the real Kafka and Airflow's DB.

Most tests call the FastAPI app in-process with FastAPI's TestClient. Authentication is
Airflow's (``rest.check_access`` runs Airflow's ``get_user`` and ``requires_access_dag``); these
tests replace that one dependency through FastAPI's ``dependency_overrides``::

    rest.app.dependency_overrides[rest.check_access] = lambda: None

One test starts the real ``airflow api-server`` on a free port and checks that it mounts the
app at /airconnect, answers with a JWT from ``POST /auth/token`` and refuses without one.

The connectors are written to a temporary folder with unique names and topics; they belong to
``inventory_sync`` (file connectors), whose paused flag is restored and whose runs made here
are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "inventory_sync"


@pytest.fixture(scope="module")
def airflow_db():
    """The project's Airflow DB, migrated, with inventory_sync parsed (as the DAG processor would)."""
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT)
    from airflow.models.dag import DagModel

    if DagModel.get_current(DAG_ID) is None:
        env = {k: v for k, v in os.environ.items() if k not in ("AIRCONNECT_CONNECTORS_DIR", "AIRCONNECT_DATA_DIR")}
        subprocess.run([AIRFLOW, "dags", "reserialize"], check=True, capture_output=True, cwd=ROOT, env=env)
    assert DagModel.get_current(DAG_ID) is not None, "inventory_sync is not in Airflow's DB"


@pytest.fixture(scope="module")
def names():
    u = uuid.uuid4().hex[:10]
    return {"source": f"load-rest-{u}", "sink": f"sink-rest-{u}", "topic": f"zaiko-rest-{u}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, names, airflow_db):
    """Connector definitions and data in a temporary folder; the DAG's state restored afterwards."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    base = tmp_path_factory.mktemp("rest")
    defs, data = base / "connectors", base / "data"
    defs.mkdir()
    (data / "zaiko").mkdir(parents=True)
    (data / "zaiko" / "latest.txt").write_text("ITEM001,SHOP001,929,2018-10-01 01:01:01\n")
    (defs / "load.json").write_text(json.dumps({"name": names["source"], "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "file": "zaiko/latest.txt", "topic": names["topic"]}}))
    (defs / "sink.json").write_text(json.dumps({"name": names["sink"], "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "file": "ec/zaiko-latest.txt", "topics": names["topic"]}}))
    saved = {k: os.environ.get(k) for k in ("AIRCONNECT_CONNECTORS_DIR", "AIRCONNECT_DATA_DIR")}
    os.environ["AIRCONNECT_CONNECTORS_DIR"] = str(defs)
    os.environ["AIRCONNECT_DATA_DIR"] = str(data)
    with create_session() as session:
        was_paused = session.get(DagModel, DAG_ID).is_paused
        before = set(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == DAG_ID)).all())
    yield {"defs": defs, "data": data, "before_runs": before}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _delete_new_runs(before)
    with create_session() as session:
        session.get(DagModel, DAG_ID).is_paused = was_paused
    from airconnect.hooks import VariableStore

    for name in (names["source"], names["sink"]):
        VariableStore().delete(f"airconnect.offsets.{name}")


def _delete_new_runs(before: set[str]) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    with create_session() as session:
        new = [r for r in session.scalars(select(DagRun.run_id).where(DagRun.dag_id == DAG_ID)).all() if r not in before]
        if new:
            session.execute(delete(TaskInstance).where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id.in_(new)))
            session.execute(delete(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id.in_(new)))


@pytest.fixture
def client(env):
    from fastapi.testclient import TestClient

    from airconnect import rest

    rest.app.dependency_overrides[rest.check_access] = lambda: None
    try:
        yield TestClient(rest.app)
    finally:
        rest.app.dependency_overrides.clear()


@pytest.fixture
def no_active_runs(env, monkeypatch):
    """No queued or running run of the connectors' DAG, so offsets may change.

    A developer's Airflow DB may hold an active inventory_sync run of its own (e.g. one left by
    a stopped scheduler); then the test connectors are mapped to a DAG id without runs instead.
    """
    _delete_new_runs(env["before_runs"])
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airconnect import rest

    with create_session() as session:
        active = session.scalars(select(DagRun.run_id).where(
            DagRun.dag_id == DAG_ID, DagRun.state.in_(["queued", "running"]))).all()
    if active:
        for cls in ("airconnect.FileSource", "airconnect.FileSink"):
            monkeypatch.setitem(rest.DAG_OF_CLASS, cls, "airconnect_rest_test_without_runs")


def test_without_credentials_the_api_refuses(env):
    from fastapi.testclient import TestClient

    from airconnect import rest

    rest.app.dependency_overrides.clear()
    r = TestClient(rest.app).get("/connectors")
    assert r.status_code == 401


def test_root_names_version_and_kafka_cluster(client, kafka):
    import airconnect

    body = client.get("/").json()
    assert body["version"] == airconnect.__version__ and body["commit"] == ""
    assert isinstance(body["kafka_cluster_id"], str) and body["kafka_cluster_id"]


def test_connector_plugins_list_connect_and_airconnect_names(client):
    plugins = {p["class"]: p for p in client.get("/connector-plugins").json()}
    assert plugins["org.apache.kafka.connect.file.FileStreamSourceConnector"]["type"] == "source"
    assert plugins["org.apache.kafka.connect.file.FileStreamSinkConnector"]["type"] == "sink"
    assert plugins["airconnect.FileSource"]["type"] == "source"
    assert plugins["io.confluent.connect.jdbc.JdbcSourceConnector"]["type"] == "source"
    assert plugins["io.confluent.connect.s3.S3SinkConnector"]["type"] == "sink"
    assert all(set(p) == {"class", "type", "version"} for p in plugins.values())


def test_connectors_list_info_config_topics(client, names):
    assert sorted(client.get("/connectors").json()) == sorted([names["source"], names["sink"]])
    info = client.get(f"/connectors/{names['sink']}").json()
    assert info == {"name": names["sink"], "type": "sink", "tasks": [{"connector": names["sink"], "task": 0}],
                    "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                               "file": "ec/zaiko-latest.txt", "topics": names["topic"], "name": names["sink"]}}
    assert client.get(f"/connectors/{names['sink']}/config").json() == info["config"]
    assert client.get(f"/connectors/{names['source']}/topics").json() == {names["source"]: {"topics": [names["topic"]]}}
    expanded = client.get("/connectors", params=[("expand", "status"), ("expand", "info")]).json()
    assert set(expanded) == {names["source"], names["sink"]}
    assert expanded[names["sink"]]["info"] == info
    assert expanded[names["sink"]]["status"]["connector"]["state"] in ("RUNNING", "PAUSED", "FAILED")
    assert set(client.get("/connectors", params={"expand": "status"}).json()[names["source"]]) == {"status"}


def test_unknown_connector_is_a_404_in_connects_shape(client):
    for method, path in [("get", "/connectors/nope"), ("get", "/connectors/nope/status"),
                         ("put", "/connectors/nope/pause"), ("delete", "/connectors/nope/offsets")]:
        r = getattr(client, method)(path)
        assert r.status_code == 404
        assert r.json() == {"error_code": 404, "message": "Connector nope not found"}


def test_pause_and_resume_pause_the_dag(client, names):
    from airflow.models.dag import DagModel

    r = client.put(f"/connectors/{names['source']}/pause")
    assert r.status_code == 202
    assert DagModel.get_current(DAG_ID).is_paused
    status = client.get(f"/connectors/{names['source']}/status").json()
    assert status["connector"] == {"state": "PAUSED", "worker_id": "airflow"}
    assert status["tasks"] == [{"id": 0, "state": "PAUSED", "worker_id": "airflow"}]
    assert status["type"] == "source" and status["dag_id"] == DAG_ID
    assert client.put(f"/connectors/{names['source']}/resume").status_code == 202
    assert not DagModel.get_current(DAG_ID).is_paused
    assert client.get(f"/connectors/{names['source']}/status").json()["connector"]["state"] == "RUNNING"
    client.put(f"/connectors/{names['source']}/pause")


def test_a_failed_task_makes_the_connector_failed_with_its_error(client, names, env, tmp_path, monkeypatch):
    """The task's last try failed: FAILED, and the trace is the error from the task's log."""
    from airflow.configuration import conf
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import insert

    client.put(f"/connectors/{names['sink']}/resume")
    run_id = f"manual__rest-test-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    with create_session() as session:
        session.add(DagRun(dag_id=DAG_ID, run_id=run_id, run_type=DagRunType.MANUAL, state="failed",
                           run_after=now, triggered_by=DagRunTriggeredByType.TEST))
        session.flush()
        session.execute(insert(TaskInstance).values(
            id=uuid.uuid4(), dag_id=DAG_ID, task_id=names["sink"], run_id=run_id, map_index=-1, state="failed",
            try_number=1, max_tries=0, pool="default_pool", pool_slots=1, start_date=now, end_date=now,
            priority_weight=1))
    logs = tmp_path / "logs"
    folder = logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={names['sink']}"
    folder.mkdir(parents=True)
    (folder / "attempt=1.log").write_text(
        json.dumps({"level": "info", "event": "starting"}) + "\n"
        + json.dumps({"level": "error", "event": "Task failed with exception", "error_detail": [
            {"exc_type": "OffsetError", "exc_value": "the offsets of connector 'x' are not usable"}]}) + "\n")
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(logs))
    assert conf.get("logging", "base_log_folder") == str(logs)
    try:
        status = client.get(f"/connectors/{names['sink']}/status").json()
        assert status["connector"]["state"] == "FAILED"
        assert status["tasks"][0]["state"] == "FAILED"
        assert status["connector"]["trace"] == (
            "Task failed with exception\nOffsetError: the offsets of connector 'x' are not usable")
        # The source's task did not fail: it runs.
        assert client.get(f"/connectors/{names['source']}/status").json()["connector"]["state"] == "RUNNING"
    finally:
        client.put(f"/connectors/{names['sink']}/pause")
        _delete_new_runs(env["before_runs"])


def test_restart_triggers_a_run_and_offsets_cannot_change_while_it_is_active(client, names, env):
    r = client.post(f"/connectors/{names['source']}/restart")
    assert r.status_code == 202, r.text
    run_id = r.json()["dag_run_id"]
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=DAG_ID, run_id=run_id).one()
        assert run.state == "queued"
    body = {"offsets": [{"partition": {"filename": "/x"}, "offset": {"position": 1}}]}
    for method in ("patch", "delete"):
        kwargs = {"json": body} if method == "patch" else {}
        r = client.request(method.upper(), f"/connectors/{names['source']}/offsets", **kwargs)
        assert r.status_code == 409, r.text
        assert r.json()["error_code"] == 409 and "STOPPED" in r.json()["message"]
    _delete_new_runs(env["before_runs"])


def test_patch_get_and_delete_source_offsets(client, names, kafka, no_active_runs):
    from airconnect.hooks import VariableStore

    path = f"/connectors/{names['source']}/offsets"
    doc = {"offsets": [{"partition": {"filename": "/data/zaiko/latest.txt"}, "offset": {"position": 41}}]}
    r = client.patch(path, json=doc)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": f"The offsets for connector '{names['source']}' have been altered successfully"}
    assert json.loads(VariableStore().get(f"airconnect.offsets.{names['source']}")) == doc
    assert client.get(path).json() == doc
    # PATCH merges; a null offset removes that partition.
    client.patch(path, json={"offsets": [{"partition": {"filename": "/other"}, "offset": {"position": 2}}]})
    assert len(client.get(path).json()["offsets"]) == 2
    client.patch(path, json={"offsets": [{"partition": {"filename": "/other"}, "offset": None}]})
    assert client.get(path).json() == doc
    r = client.delete(path)
    assert r.status_code == 200, r.text
    assert client.get(path).json() == {"offsets": []}
    assert VariableStore().get(f"airconnect.offsets.{names['source']}") is None


@pytest.mark.parametrize("body, expected", [
    ({"offset": []}, "expected {\"offsets\""),
    ({"offsets": []}, "'offsets' is empty"),
    ({"offsets": [{"partition": {"filename": "/f"}}]}, "needs both 'partition' and 'offset'"),
    ({"offsets": [{"partition": {"filename": "/f"}, "offset": {"position": -1}}]}, "position=-1"),
    ({"offsets": [{"partition": {"filename": "/f"}, "offset": {"position": "7"}}]}, "position='7'"),
    ({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": {"kafka_offset": 1}}]}, "the connector is a source"),
    ({"offsets": [{"partition": {"table": "t"}, "offset": {"timestamp": 1}}]}, "not a JDBC source"),
])
def test_patch_refuses_malformed_offsets(client, names, body, expected, no_active_runs):
    r = client.patch(f"/connectors/{names['source']}/offsets", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == 400 and expected in r.json()["message"], r.json()["message"]


def test_sink_offsets_include_the_group_and_lag_counts_records(client, names, kafka, no_active_runs):
    producer = Producer(kafka)
    for i in range(5):
        producer.produce(names["topic"], f"line {i}".encode())
    assert producer.flush(15) == 0
    path = f"/connectors/{names['sink']}/offsets"
    doc = {"offsets": [{"partition": {"kafka_topic": names["topic"], "kafka_partition": 0}, "offset": {"kafka_offset": 2}}]}
    assert client.patch(path, json=doc).status_code == 200
    got = client.get(path).json()
    assert got["offsets"] == doc["offsets"]
    assert got["consumer_group"] == {"group_id": f"connect-{names['sink']}", "offsets": [
        {"kafka_topic": names["topic"], "kafka_partition": 0, "kafka_offset": 2}]}
    lag = client.get(f"/connectors/{names['sink']}/lag").json()
    assert lag == {"name": names["sink"], "group_id": f"connect-{names['sink']}", "total_lag": 3, "partitions": [
        {"topic": names["topic"], "partition": 0, "committed": 2, "end": 5, "lag": 3}]}
    r = client.get(f"/connectors/{names['source']}/lag")
    assert r.status_code == 400 and "source" in r.json()["message"]
    bad = {"offsets": [{"partition": {"kafka_topic": "elsewhere", "kafka_partition": 0}, "offset": {"kafka_offset": 1}}]}
    assert client.patch(path, json=bad).status_code == 400
    assert client.delete(path).status_code == 200
    assert client.get(path).json()["consumer_group"]["offsets"] == []
    assert client.get(f"/connectors/{names['sink']}/lag").json()["total_lag"] == 5


def test_validate_in_connects_shape(client):
    ok = client.put("/connector-plugins/FileStreamSourceConnector/config/validate", json={
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector", "name": "x",
        "file": "zaiko/latest.txt", "topic": "zaiko-data"}).json()
    assert ok["name"] == "airconnect.FileSource" and ok["error_count"] == 0
    assert ok["groups"] == ["Common", "airconnect.FileSource"]
    by_key = {c["value"]["name"]: c for c in ok["configs"]}
    assert by_key["topic"]["value"] == {"name": "topic", "value": "zaiko-data", "recommended_values": [],
                                        "errors": [], "visible": True}
    assert by_key["topic"]["definition"]["required"] is True and by_key["topic"]["definition"]["type"] == "STRING"
    assert by_key["batch.size"]["definition"]["default_value"] == "100000"
    assert by_key["value.converter"]["value"]["recommended_values"]

    bad = client.put("/connector-plugins/FileStreamSourceConnector/config/validate", json={
        "connector.class": "FileStreamSource", "file": "z.txt", "topik": "zaiko-data", "batch.size": "zero",
        "tasks.max": "2"}).json()
    errors = {c["value"]["name"]: c["value"]["errors"] for c in bad["configs"] if c["value"]["errors"]}
    assert errors == {
        "topic": ['Missing required configuration "topic" which has no default value.'],
        "topik": ["is not a key of airconnect.FileSource"],
        "batch.size": ["expected an integer >= 1, got 'zero'"],
    }
    assert bad["error_count"] == 3
    # Cross-key checks (a file connector has one task) come from core.config.validate.
    one = client.put("/connector-plugins/airconnect.FileSource/config/validate", json={
        "file": "z.txt", "topic": "t", "tasks.max": "2"}).json()
    assert one["error_count"] == 1
    assert [c["value"]["errors"] for c in one["configs"] if c["value"]["name"] == "tasks.max"] == [
        ["must be 1: a local file is read or written by one task (as in Kafka Connect)"]]
    r = client.put("/connector-plugins/NoSuchConnector/config/validate", json={})
    assert r.status_code == 404 and r.json()["error_code"] == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_airflow_api_server_serves_it_with_a_token(env, names, tmp_path):
    """The real `airflow api-server` mounts the plugin's app at /airconnect, behind Airflow's auth."""
    import httpx

    port = _free_port()
    run_env = {**os.environ, "AIRCONNECT_API_PORT": str(port),
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
               "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    pw = run_env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or str(Path(run_env["AIRFLOW_HOME"]) / "passwords.json")
    if not Path(pw).exists():
        pw = str(tmp_path / "passwords.json")
        Path(pw).write_text('{"admin": "admin"}')
    run_env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    run_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = pw
    log = (tmp_path / "api-server.log").open("wb")
    proc = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not start in 120 s"
            time.sleep(0.5)
        assert httpx.get(f"{base}/airconnect/connectors", timeout=30).status_code == 401
        assert httpx.get(f"{base}/airconnect/connectors", headers={"Authorization": "Bearer not-a-jwt"},
                         timeout=30).status_code in (401, 403)
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
        assert token.status_code in (200, 201), token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        r = httpx.get(f"{base}/airconnect/connectors", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        assert sorted(r.json()) == sorted([names["source"], names["sink"]])
        status = httpx.get(f"{base}/airconnect/connectors/{names['sink']}/status", headers=headers, timeout=30).json()
        assert status["connector"]["state"] in ("RUNNING", "PAUSED", "FAILED") and status["dag_id"] == DAG_ID
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


# (Last in the module: it leaves a record on the connectors' topic, which the lag test counts.)
def test_a_source_reset_into_a_topic_that_holds_its_records_answers_409(client, names, kafka, no_active_runs):
    from confluent_kafka import Producer

    from airconnect.hooks import VariableStore

    producer = Producer(kafka)
    producer.produce(names["topic"], b"tenpo-7,ok")
    assert producer.flush(15) == 0
    path = f"/connectors/{names['source']}/offsets"
    doc = {"offsets": [{"partition": {"filename": "/data/zaiko/latest.txt"}, "offset": {"position": 41}}]}
    assert client.patch(path, json=doc).status_code == 200
    r = client.delete(path)
    assert r.status_code == 409, r.text
    assert r.json()["error_code"] == 409
    assert f"topic {names['topic']} (not empty" in r.json()["message"] and "redeliver=true" in r.json()["message"]
    assert client.get(path).json() == doc  # unchanged
    r = client.delete(path, params={"redeliver": "true"})
    assert r.status_code == 200, r.text
    assert VariableStore().get(f"airconnect.offsets.{names['source']}") is None
