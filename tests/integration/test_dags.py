"""The DAGs: every one imports cleanly, follows the project's policy, and flow 1 runs from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import read_topic

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _dagbag(connectors_dir: Path | None = None):
    from airflow.dag_processing.dagbag import DagBag

    if connectors_dir is not None:
        os.environ["AIRCONNECT_CONNECTORS_DIR"] = str(connectors_dir)
    try:
        return DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        os.environ.pop("AIRCONNECT_CONNECTORS_DIR", None)


def test_every_dag_imports_and_follows_policy():
    bag = _dagbag()
    assert bag.import_errors == {}
    assert "inventory_sync" in bag.dags
    for dag_id, dag in bag.dags.items():
        assert "airconnect" in dag.tags, dag_id
        assert dag.max_active_runs == 1 or dag_id not in ("inventory_sync",), dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_inventory_sync_is_built_from_the_definitions():
    dag = _dagbag().dags["inventory_sync"]
    assert {t.task_id for t in dag.tasks} == {"wait-load-zaiko-data", "load-zaiko-data", "sink-zaiko-data"}
    assert dag.get_task("sink-zaiko-data").upstream_task_ids == {"load-zaiko-data"}


def test_an_invalid_definition_is_an_import_error_naming_connector_and_key(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps(
        {"name": "load-zaiko-data", "config": {"connector.class": "FileStreamSource", "file": "/z", "topik": "zaiko-data"}}))
    bag = _dagbag(tmp_path)
    errors = "\n".join(bag.import_errors.values())
    assert "connector 'load-zaiko-data', key 'topik': is not a key of airconnect.FileSource (did you mean 'topic'?)" in errors


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT)


def test_airflow_dags_test_runs_one_pass(tmp_path, kafka, unique, airflow_db):
    topic = f"zaiko-data-{unique}"
    defs = tmp_path / "connectors"
    defs.mkdir()
    # The tutorial's documents, pointed elsewhere through data only (relative paths, a new topic).
    (defs / "load.json").write_text(json.dumps({"name": f"load-{unique}", "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector", "file": "zaiko/latest.txt", "topic": topic}}))
    (defs / "sink.json").write_text(json.dumps({"name": f"sink-{unique}", "config": {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector", "file": "ec/zaiko-latest.txt", "topics": topic}}))
    data = tmp_path / "data"
    (data / "zaiko").mkdir(parents=True)
    inventory = data / "zaiko" / "latest.txt"
    inventory.write_text("ITEM001,SHOP001,929,2018-10-01 01:01:01\nITEM002,SHOP001,480,2018-10-01 01:01:01\n")
    env = {**os.environ, "AIRCONNECT_CONNECTORS_DIR": str(defs), "AIRCONNECT_DATA_DIR": str(data),
           "AIRCONNECT_INVENTORY_SYNC_CONNECTORS": f"load-{unique},sink-{unique}"}
    proc = subprocess.run([AIRFLOW, "dags", "test", "inventory_sync"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (data / "ec" / "zaiko-latest.txt").read_bytes() == inventory.read_bytes()
    assert len(read_topic(kafka, topic)) == 2

    from airflow.models import Variable

    offsets = json.loads(Variable.get(f"airconnect.offsets.load-{unique}"))
    assert offsets["offsets"][0]["offset"]["position"] == inventory.stat().st_size


def test_a_bad_definition_breaks_only_the_dags_that_run_it_and_every_one_is_reported(tmp_path):
    for f in (ROOT / "include" / "connectors").glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    # Two broken definitions at once: an S3 sink with a misspelt key, a connector of no known class.
    s3 = json.loads((tmp_path / "s3-forecast.json").read_text())
    s3["config"]["s3.bucket.nmae"] = s3["config"].pop("s3.bucket.name")
    (tmp_path / "s3-forecast.json").write_text(json.dumps(s3))
    (tmp_path / "zz-unknown.json").write_text(json.dumps(
        {"name": "sink-hanbai", "config": {"connector.class": "com.example.NoSuchSink", "topics": "hanbai"}}))
    bag = _dagbag(tmp_path)
    broken = {Path(f).stem: e for f, e in bag.import_errors.items()}
    # Flow 1 does not use an S3 sink, nor does auto_order (its forecasts come through a JDBC sink): they load.
    for dag_id in ("inventory_sync", "auto_order"):
        assert dag_id in bag.dags and dag_id not in broken, dag_id
    # The DAGs that run the S3 sink name it and its key.
    for dag_file in ("monthly_forecast_export", "sales_forecast"):
        assert "connector 's3-forecast', key 's3.bucket.nmae': is not a key" in broken[dag_file], dag_file
    # One place lists every invalid definition, the one no DAG runs included.
    listed = broken["connector_definitions"]
    assert "connector 's3-forecast', key 's3.bucket.nmae'" in listed
    assert "connector 'sink-hanbai', key 'connector.class': unknown connector class 'com.example.NoSuchSink'" in listed


def test_a_new_definition_rewires_no_dag_and_a_dags_connectors_are_named(tmp_path):
    for f in (ROOT / "include" / "connectors").glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "load-hanbai.json").write_text(json.dumps({"name": "load-hanbai", "config": {
        "connector.class": "FileStreamSource", "file": "hanbai/uriage.csv", "topic": "hanbai"}}))
    bag = _dagbag(tmp_path)
    assert bag.import_errors == {}
    assert {t.task_id for t in bag.dags["inventory_sync"].tasks} == {"wait-load-zaiko-data", "load-zaiko-data",
                                                                      "sink-zaiko-data"}
    (tmp_path / "load-zaiko-data.json").unlink()  # a connector the DAG names is gone: its import error says so
    errors = "\n".join(_dagbag(tmp_path).import_errors.values())
    assert "connector 'load-zaiko-data': the DAG inventory_sync runs it, but no definition has this name" in errors
    assert "AIRCONNECT_INVENTORY_SYNC_CONNECTORS" in errors


def test_auto_order_whose_connectors_do_not_read_its_topics_is_an_import_error(tmp_path, monkeypatch):
    # The forecast topic moved without the forecasts sink's `topics`: the DAG would have no task at all.
    for f in (ROOT / "include" / "connectors").glob("*.json"):
        (tmp_path / f.name).write_text(f.read_text())
    monkeypatch.setenv("AIRCONNECT_FORECAST_TOPIC", "uriage-yosoku")
    bag = _dagbag(tmp_path)
    errors = {Path(f).stem: e for f, e in bag.import_errors.items()}
    assert "auto_order" in errors, bag.import_errors
    assert "reads the forecast topic 'uriage-yosoku'" in errors["auto_order"]
    assert "jdbc-sales-forecasts" in errors["auto_order"]
