"""The REST API in Kafka Connect's shape (airconnect.rest), against the real Kafka and Airflow's DB.

Most tests call the FastAPI app in-process with FastAPI's TestClient. Authentication is
Airflow's (``rest.check_access`` runs Airflow's ``get_user`` and ``requires_access_dag``); these
tests replace that one dependency through FastAPI's ``dependency_overrides``::

    rest.app.dependency_overrides[rest.check_access] = lambda: None

One test starts the real ``airflow api-server`` on a free port and checks that it mounts the
app at /airconnect, answers with a JWT from ``POST /auth/token`` and refuses without one.

The module's connectors are created over REST (``POST /connectors``) with unique names and
topics, so each runs in its own DAG ``connector_<name>``; the tests parse that DAG file in
process (:func:`parse_runtime_dags`, what the DAG processor does on the API's priority parsing
request) and delete the connectors, their DAGs and offsets afterwards. One definition lives in
a file of a temporary connectors folder: a file's connector answers 409 to changes over REST.
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

from helpers import store_runtime_dags

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def parse_runtime_dags() -> None:
    """Parse dags/runtime_connectors.py and store its DAGs, as the DAG processor does."""
    store_runtime_dags()


def forget(name: str) -> None:
    """Remove a connector created here: its definition, DAG and offsets."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound

    from airconnect import definitions_db
    from airconnect.hooks import VariableStore

    definitions_db.remove(name)
    VariableStore().delete(f"airconnect.offsets.{name}")
    try:
        delete_dag(definitions_db.runtime_dag_id(name))
    except DagNotFound:
        pass


@pytest.fixture(scope="module")
def airflow_db():
    """The project's Airflow DB, migrated."""
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT)


@pytest.fixture(scope="module")
def names():
    u = uuid.uuid4().hex[:10]
    return {"source": f"load-rest-{u}", "sink": f"sink-rest-{u}", "topic": f"zaiko-rest-{u}", "file": f"file-rest-{u}"}


def _source(names) -> dict:
    return {"name": names["source"], "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "file": "zaiko/latest.txt", "topic": names["topic"]}}


def _sink(names) -> dict:
    return {"name": names["sink"], "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "file": "ec/zaiko-latest.txt", "topics": names["topic"]}}


@pytest.fixture(scope="module")
def env(tmp_path_factory, names, airflow_db):
    """A file connector in a temporary folder, the source and the sink created over REST (their DAGs parsed)."""
    from fastapi.testclient import TestClient

    from airconnect import rest

    base = tmp_path_factory.mktemp("rest")
    defs, data = base / "connectors", base / "data"
    defs.mkdir()
    (data / "zaiko").mkdir(parents=True)
    (data / "zaiko" / "latest.txt").write_text("ITEM001,SHOP001,929,2018-10-01 01:01:01\n")
    (defs / "file.json").write_text(json.dumps({"name": names["file"], "config": {
        "connector.class": "FileStreamSource", "file": "zaiko/latest.txt", "topic": names["topic"]}}))
    saved = {k: os.environ.get(k) for k in ("AIRCONNECT_CONNECTORS_DIR", "AIRCONNECT_DATA_DIR")}
    os.environ["AIRCONNECT_CONNECTORS_DIR"] = str(defs)
    os.environ["AIRCONNECT_DATA_DIR"] = str(data)
    rest.app.dependency_overrides[rest.check_access] = lambda: None
    try:
        for body in (_source(names), {**_sink(names), "initial_state": "PAUSED"}):
            r = TestClient(rest.app).post("/connectors", json=body)
            assert r.status_code == 201, r.text
    finally:
        rest.app.dependency_overrides.clear()
    parse_runtime_dags()
    yield {"defs": defs, "data": data}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for name in (names["source"], names["sink"]):
        forget(name)


@pytest.fixture
def client(env):
    from fastapi.testclient import TestClient

    from airconnect import rest

    rest.app.dependency_overrides[rest.check_access] = lambda: None
    try:
        yield TestClient(rest.app)
    finally:
        rest.app.dependency_overrides.clear()


def _delete_runs(dag_id: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(TaskInstance).where(TaskInstance.dag_id == dag_id))
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id))


@pytest.fixture
def stopped(client, names):
    """Both connectors STOPPED (KIP-875), so their offsets may change; resumed afterwards... paused."""
    for name in (names["source"], names["sink"]):
        assert client.put(f"/connectors/{name}/stop").status_code == 202
    yield
    for name in (names["source"], names["sink"]):
        client.put(f"/connectors/{name}/pause")


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
    # Like Connect, a plugin is listed by its class names, once each: no short aliases or old module paths.
    listed = [p["class"] for p in client.get("/connector-plugins").json()]
    assert len(listed) == len(set(listed))
    assert not {"FileStreamSource", "FileStreamSinkConnector", "JdbcSink", "airconnect.core.file_sink.FileSink"} & set(listed)


def test_connectors_list_info_config_topics(client, names):
    # (The DB may hold other tests' connectors: this module's are there, with the folder's.)
    assert {names["source"], names["sink"], names["file"]} <= set(client.get("/connectors").json())
    info = client.get(f"/connectors/{names['sink']}").json()
    assert info == {"name": names["sink"], "type": "sink", "tasks": [{"connector": names["sink"], "task": 0}],
                    "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                               "file": "ec/zaiko-latest.txt", "topics": names["topic"], "name": names["sink"]}}
    assert client.get(f"/connectors/{names['sink']}/config").json() == info["config"]
    assert client.get(f"/connectors/{names['source']}/topics").json() == {names["source"]: {"topics": [names["topic"]]}}
    expanded = client.get("/connectors", params=[("expand", "status"), ("expand", "info")]).json()
    assert {names["source"], names["sink"]} <= set(expanded)
    assert expanded[names["sink"]]["info"] == info
    assert expanded[names["sink"]]["status"]["connector"]["state"] in ("RUNNING", "PAUSED", "FAILED")
    assert set(client.get("/connectors", params={"expand": "status"}).json()[names["source"]]) == {"status"}


def test_unknown_connector_is_a_404_in_connects_shape(client):
    for method, path in [("get", "/connectors/nope"), ("get", "/connectors/nope/status"),
                         ("put", "/connectors/nope/pause"), ("delete", "/connectors/nope/offsets"),
                         ("delete", "/connectors/nope"), ("put", "/connectors/nope/stop"),
                         ("get", "/connectors/nope/tasks/0/status"), ("patch", "/connectors/nope/config")]:
        r = client.request(method.upper(), path, **({"json": {"a": "b"}} if method == "patch" else {}))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json() == {"error_code": 404, "message": "Connector nope not found"}
    # Unknown paths, wrong methods and bodies of the wrong shape: Connect's shape too, never FastAPI's {"detail"}.
    r = client.get("/no/such/path")
    assert (r.status_code, r.json()) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
    r = client.post("/connector-plugins")
    assert (r.status_code, r.json()) == (405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"})
    r = client.put("/connector-plugins/FileStreamSource/config/validate", json=["not", "an", "object"])
    assert r.status_code == 400 and r.json()["error_code"] == 400
    r = client.post("/connectors", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error_code"] == 400 and "not JSON" in r.json()["message"]


def test_pause_and_resume_pause_the_dag(client, names):
    from airflow.models.dag import DagModel

    dag_id = f"connector_{names['source']}"
    r = client.put(f"/connectors/{names['source']}/pause")
    assert r.status_code == 202
    assert DagModel.get_current(dag_id).is_paused
    status = client.get(f"/connectors/{names['source']}/status").json()
    assert status["connector"] == {"state": "PAUSED", "worker_id": "airflow"}
    assert status["tasks"] == [{"id": 0, "state": "PAUSED", "worker_id": "airflow"}]
    assert status["type"] == "source" and status["dag_id"] == dag_id
    assert client.put(f"/connectors/{names['source']}/resume").status_code == 202
    assert not DagModel.get_current(dag_id).is_paused
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

    DAG_ID = f"connector_{names['sink']}"  # noqa: N806
    client.put(f"/connectors/{names['sink']}/resume")
    client.put(f"/connectors/{names['source']}/resume")
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
        assert client.get(f"/connectors/{names['sink']}/tasks/0/status").json() == status["tasks"][0]
        # The source's task did not fail: it runs.
        assert client.get(f"/connectors/{names['source']}/status").json()["connector"]["state"] == "RUNNING"
        # KIP-745: onlyFailed restarts the failed one only; the plain restart answers 204.
        r = client.post(f"/connectors/{names['source']}/restart", params={"onlyFailed": "true", "includeTasks": "true"})
        assert r.status_code == 202 and r.json()["dag_run_id"] is None and r.json()["connector"]["state"] == "RUNNING"
        r = client.post(f"/connectors/{names['sink']}/restart", params={"onlyFailed": "true", "includeTasks": "true"})
        assert r.status_code == 202 and r.json()["dag_run_id"] and r.json()["connector"]["state"] == "RESTARTING"
        assert client.post(f"/connectors/{names['sink']}/tasks/1/restart").json() == {
            "error_code": 404, "message": f"Task {names['sink']}-1 not found"}
    finally:
        client.put(f"/connectors/{names['sink']}/pause")
        client.put(f"/connectors/{names['source']}/pause")
        _delete_runs(DAG_ID)


def test_offsets_change_only_when_stopped_and_stop_ends_the_run(client, names, env):
    """As in Connect (KIP-875): altering or resetting offsets needs the STOPPED state; stopping
    pauses the DAG, ends its active run and shows STOPPED (with no tasks), unlike a pause."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    dag_id = f"connector_{names['source']}"
    r = client.post(f"/connectors/{names['source']}/restart")
    assert r.status_code == 204, r.text
    with create_session() as session:
        assert [run.state for run in session.query(DagRun).filter_by(dag_id=dag_id)] == ["queued"]
    body = {"offsets": [{"partition": {"filename": "/x"}, "offset": {"position": 1}}]}
    for method in ("patch", "delete"):
        r = client.request(method.upper(), f"/connectors/{names['source']}/offsets",
                           **({"json": body} if method == "patch" else {}))
        assert r.status_code == 400, r.text
        assert r.json() == {"error_code": 400, "message": (
            "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the "
            f"specified connector by issuing a 'PUT' request to the '/connectors/{names['source']}/stop' endpoint")}
    assert client.put(f"/connectors/{names['source']}/stop").status_code == 202
    try:
        with create_session() as session:
            assert [run.state for run in session.query(DagRun).filter_by(dag_id=dag_id)] == ["failed"]
        status = client.get(f"/connectors/{names['source']}/status").json()
        assert status["connector"]["state"] == "STOPPED" and status["tasks"] == []
        assert client.get(f"/connectors/{names['source']}").json()["tasks"] == []
        assert client.patch(f"/connectors/{names['source']}/offsets", json=body).status_code == 200
        client.patch(f"/connectors/{names['source']}/offsets",
                     json={"offsets": [{"partition": {"filename": "/x"}, "offset": None}]})
    finally:
        client.put(f"/connectors/{names['source']}/pause")
        _delete_runs(dag_id)
    assert client.get(f"/connectors/{names['source']}/status").json()["connector"]["state"] == "PAUSED"


def test_patch_get_and_delete_source_offsets(client, names, kafka, stopped):
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
def test_patch_refuses_malformed_offsets(client, names, body, expected, stopped):
    r = client.patch(f"/connectors/{names['source']}/offsets", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == 400 and expected in r.json()["message"], r.json()["message"]


def test_sink_offsets_include_the_group_and_lag_counts_records(client, names, kafka, stopped):
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


def test_create_conflicts_and_every_error_at_once(client, names, unique):
    name = f"load-new-{unique}"
    body = {"name": name, "config": {"connector.class": "FileStreamSource", "file": "zaiko/latest.txt",
                                     "topic": f"t-{unique}"}, "initial_state": "STOPPED"}
    try:
        r = client.post("/connectors", json=body)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/connectors/{name}"
        assert r.json() == {"name": name, "type": "source", "tasks": [], "config": {
            "connector.class": "FileStreamSource", "file": "zaiko/latest.txt", "topic": f"t-{unique}", "name": name}}
        assert client.post("/connectors", json=body).json() == {"error_code": 409, "message": f"Connector {name} already exists"}
        parse_runtime_dags()
        from airflow.models.dag import DagModel

        assert DagModel.get_current(f"connector_{name}").is_paused  # STOPPED: created paused, and says so
        assert client.get(f"/connectors/{name}/status").json()["connector"]["state"] == "STOPPED"
        # PUT .../config replaces (200), PATCH merges (KIP-477: null removes a key).
        r = client.put(f"/connectors/{name}/config", json={**body["config"], "batch.size": "7"})
        assert r.status_code == 200 and r.json()["config"]["batch.size"] == "7"
        r = client.patch(f"/connectors/{name}/config", json={"batch.size": None, "topic": f"u-{unique}"})
        assert r.status_code == 200, r.text
        assert client.get(f"/connectors/{name}/config").json() == {
            "connector.class": "FileStreamSource", "file": "zaiko/latest.txt", "topic": f"u-{unique}", "name": name}
        r = client.patch(f"/connectors/{name}/config", json={"batch.size": "zero"})
        assert r.status_code == 400 and "batch.size" in r.json()["message"]
        r = client.put(f"/connectors/{name}/config", json={**body["config"], "name": "other"})
        assert r.json() == {"error_code": 400, "message": (
            f"Connector name configuration (other) doesn't match connector name in the URL ({name})")}
    finally:
        forget(name)
    # Every error of the definition, in Connect's words.
    r = client.post("/connectors", json={"name": f"bad-{unique}", "config": {
        "connector.class": "FileStreamSource", "topik": "x", "batch.size": "zero"}})
    assert r.status_code == 400
    message = r.json()["message"]
    assert message.startswith("Connector configuration is invalid and contains the following 4 error(s):\n")
    for part in ("key 'topik': is not a key", "key 'file': is required", "key 'topic': is required",
                 "key 'batch.size': expected an integer"):
        assert part in message, message
    assert message.endswith("`/connector-plugins/{connectorType}/config/validate`")
    r = client.post("/connectors", json={**body, "name": f"x-{unique}", "initial_state": "SLEEPING"})
    assert r.status_code == 400 and "initial state" in r.json()["message"]
    assert client.get("/connectors").json().count(f"bad-{unique}") == 0


def test_a_file_connector_answers_409_naming_its_file(client, names, env):
    path = env["defs"] / "file.json"
    for method, url, kwargs in [
        ("POST", "/connectors", {"json": {"name": names["file"], "config": {"connector.class": "FileStreamSource",
                                                                            "file": "a", "topic": "b"}}}),
        ("PUT", f"/connectors/{names['file']}/config", {"json": {"connector.class": "FileStreamSource", "file": "a",
                                                                 "topic": "b"}}),
        ("PATCH", f"/connectors/{names['file']}/config", {"json": {"topic": "b"}}),
        ("DELETE", f"/connectors/{names['file']}", {}),
    ]:
        r = client.request(method, url, **kwargs)
        assert r.status_code == 409, (method, r.text)
        assert r.json()["message"] == (f"Connector {names['file']} is managed by the file {path}: change or remove "
                                       "that file (the connectors folder), not the connector over REST")
    # No parsed DAG names it (no file DAG runs it here): UNASSIGNED, saying so.
    status = client.get(f"/connectors/{names['file']}/status").json()
    assert status["connector"]["state"] == "UNASSIGNED" and "connectors_of" in status["connector"]["trace"]


def test_delete_keeps_the_offsets_and_stops_the_dag(client, unique):
    """As in Connect: DELETE removes the connector, not its offsets; one created again under the
    name resumes from them. Its DAG is paused and leaves the runtime DAG file."""
    from airflow.models.dag import DagModel

    from airconnect.hooks import VariableStore

    name = f"load-del-{unique}"
    body = {"name": name, "config": {"connector.class": "FileStreamSource", "file": "zaiko/latest.txt",
                                     "topic": f"t-{unique}"}}
    doc = {"offsets": [{"partition": {"filename": "/somewhere/latest.txt"}, "offset": {"position": 156}}]}
    try:
        assert client.post("/connectors", json=body).status_code == 201
        parse_runtime_dags()
        assert not DagModel.get_current(f"connector_{name}").is_paused  # RUNNING: created unpaused
        assert client.put(f"/connectors/{name}/stop").status_code == 202
        assert client.patch(f"/connectors/{name}/offsets", json=doc).status_code == 200
        r = client.delete(f"/connectors/{name}")
        assert r.status_code == 204 and r.content == b""
        assert name not in client.get("/connectors").json()
        assert client.delete(f"/connectors/{name}").json() == {"error_code": 404, "message": f"Connector {name} not found"}
        assert DagModel.get_current(f"connector_{name}").is_paused
        parse_runtime_dags()
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags" / "runtime_connectors.py"), bundle_path=ROOT / "dags",
                     bundle_name="dags-folder")
        assert f"connector_{name}" not in bag.dag_ids
        assert json.loads(VariableStore().get(f"airconnect.offsets.{name}")) == doc  # kept
        assert client.post("/connectors", json=body).status_code == 201
        assert client.get(f"/connectors/{name}/offsets").json() == doc  # the new one resumes from there
    finally:
        forget(name)


def test_an_invalid_stored_definition_breaks_only_its_own_dag(client, names, unique):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import Variable

    name = f"load-broken-{unique}"
    Variable.set(f"airconnect.connector.{name}", json.dumps({"name": name, "config": {
        "connector.class": "FileStreamSource", "file": "x.txt", "topic": "t", "batch.size": "${env:AIRCONNECT_NOT_SET_EVER}"}}))
    try:
        r = client.get(f"/connectors/{name}")
        assert r.status_code == 400 and name in r.json()["message"] and "AIRCONNECT_NOT_SET_EVER" in r.json()["message"]
        bag = DagBag(dag_folder=str(ROOT / "dags" / "runtime_connectors.py"), bundle_path=ROOT / "dags",
                     bundle_name="dags-folder")
        assert f"connector_{name}" not in bag.dag_ids and f"connector_{names['source']}" in bag.dag_ids
        assert not bag.import_errors
        errors = DagBag(dag_folder=str(ROOT / "dags" / "connector_definitions.py"), bundle_path=ROOT / "dags",
                        bundle_name="dags-folder").import_errors
        (error,) = errors.values()
        assert f"connector '{name}', key 'batch.size'" in error and "AIRCONNECT_NOT_SET_EVER" in error
    finally:
        forget(name)


def test_plugin_config_task_status_and_topics_reset(client, names):
    keys = client.get("/connector-plugins/org.apache.kafka.connect.file.FileStreamSinkConnector/config").json()
    by_name = {k["name"]: k for k in keys}
    assert by_name["file"]["required"] is True and by_name["file"]["group"] == "airconnect.FileSink"
    assert by_name["tasks.max"]["group"] == "Common" and by_name["tasks.max"]["default_value"] == "1"
    assert client.get("/connector-plugins/Nope/config").json() == {"error_code": 404, "message": "Unknown connector plugin Nope"}
    assert client.get(f"/connectors/{names['sink']}/tasks/0/status").json()["id"] == 0
    assert client.get(f"/connectors/{names['sink']}/tasks/3/status").status_code == 404
    assert client.put(f"/connectors/{names['sink']}/topics/reset").status_code == 202


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
        assert {names["source"], names["sink"], names["file"]} <= set(r.json())
        status = httpx.get(f"{base}/airconnect/connectors/{names['sink']}/status", headers=headers, timeout=30).json()
        assert status["connector"]["state"] in ("RUNNING", "PAUSED", "FAILED") and status["dag_id"] == f"connector_{names['sink']}"
        # Created and deleted through the real server: Location is under the app's prefix.
        created = f"load-served-{names['topic'][-10:]}"
        try:
            r = httpx.post(f"{base}/airconnect/connectors", headers=headers, timeout=30, json={"name": created, "config": {
                "connector.class": "FileStreamSource", "file": "zaiko/latest.txt", "topic": names["topic"]}})
            assert r.status_code == 201 and r.headers["location"] == f"/airconnect/connectors/{created}", r.text
            r = httpx.delete(f"{base}/airconnect/connectors/{created}", headers=headers, timeout=30)
            assert r.status_code == 204, r.text
        finally:
            forget(created)
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


# (Last in the module: it leaves a record on the connectors' topic, which the lag test counts.)
def test_a_source_reset_into_a_topic_that_holds_its_records_answers_409(client, names, kafka, stopped):
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
