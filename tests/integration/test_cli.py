"""The airconnect CLI's offsets --set, lag and list, in-process against the real Kafka and Airflow's DB."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from airconnect.cli import main
from helpers import store_runtime_dags

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT)


@pytest.fixture
def cli(tmp_path, unique, kafka, airflow_db, monkeypatch):
    """A source and a sink on a fresh topic holding 4 records; ``cli.run(*args)`` -> (code, out, err)."""
    topic = f"zaiko-cli-{unique}"
    defs = tmp_path / "connectors"
    defs.mkdir()
    (defs / "load.json").write_text(json.dumps({"name": f"load-{unique}", "config": {
        "connector.class": "FileStreamSource", "file": "zaiko/latest.txt", "topic": topic}}))
    (defs / "sink.json").write_text(json.dumps({"name": f"sink-{unique}", "config": {
        "connector.class": "FileStreamSink", "file": "ec/out.txt", "topics": topic}}))
    monkeypatch.setenv("AIRCONNECT_CONNECTORS_DIR", str(defs))
    monkeypatch.setenv("AIRCONNECT_DATA_DIR", str(tmp_path / "data"))
    producer = Producer(kafka)
    for i in range(4):
        producer.produce(topic, f"line {i}".encode())
    assert producer.flush(15) == 0

    class Cli:
        source, sink = f"load-{unique}", f"sink-{unique}"

        def __init__(self):
            self.topic = topic

        def run(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            monkeypatch.setattr(sys, "stdout", out)
            monkeypatch.setattr(sys, "stderr", err)
            if stdin is not None:
                monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
            try:
                code = main(list(args))
            finally:
                monkeypatch.setattr(sys, "stdout", sys.__stdout__)
                monkeypatch.setattr(sys, "stderr", sys.__stderr__)
            return code, out.getvalue(), err.getvalue()

    c = Cli()
    yield c
    from airconnect.hooks import VariableStore

    for name in (c.source, c.sink):
        VariableStore().delete(f"airconnect.offsets.{name}")


def _variable(name: str):
    from airconnect.hooks import VariableStore

    raw = VariableStore().get(f"airconnect.offsets.{name}")
    return None if raw is None else json.loads(raw)


def test_offsets_set_from_a_file_patches_the_variable(cli, tmp_path):
    doc = {"offsets": [{"partition": {"filename": "/d/zaiko/latest.txt"}, "offset": {"position": 40}}]}
    f = tmp_path / "offsets.json"
    f.write_text(json.dumps(doc))
    code, out, err = cli.run("offsets", cli.source, "--set", str(f))
    assert code == 0, err
    assert f"The offsets for connector '{cli.source}' have been altered successfully" in out
    assert _variable(cli.source) == doc
    assert json.loads(out[out.index("{"):]) == doc  # then prints the new offsets
    # PATCH semantics: other partitions stay; null removes one.
    cli.run("offsets", cli.source, "--set", "-",
            stdin='{"offsets": [{"partition": {"filename": "/other"}, "offset": {"position": 1}}]}')
    assert len(_variable(cli.source)["offsets"]) == 2
    cli.run("offsets", cli.source, "--set", "-", stdin='{"offsets": [{"partition": {"filename": "/other"}, "offset": null}]}')
    assert _variable(cli.source) == doc


@pytest.mark.parametrize("text, expected", [
    ("not json", "is not JSON"),
    ('{"offsets": [{"partition": {"filename": "/f"}, "offset": {"position": "x"}}]}', "position='x'"),
    ('[{"partition": {"filename": "/f"}, "offset": {"position": 1}}]', 'expected {"offsets"'),
    ('{"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": {"kafka_offset": 1}}]}',
     "the connector is a source"),
])
def test_offsets_set_refuses_a_bad_document_and_changes_nothing(cli, text, expected):
    code, out, err = cli.run("offsets", cli.source, "--set", "-", stdin=text)
    assert code == 2
    assert expected in err, err
    assert _variable(cli.source) is None


def test_lag_of_sinks_and_list_shows_it(cli):
    code, out, err = cli.run("lag")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split("\t") == ["connector", "group", "topic", "partition", "committed", "end", "lag"]
    assert lines[1].split("\t") == [cli.sink, f"connect-{cli.sink}", cli.topic, "0", "-", "4", "4"]

    doc = {"offsets": [{"partition": {"kafka_topic": cli.topic, "kafka_partition": 0}, "offset": {"kafka_offset": 3}}]}
    code, out, err = cli.run("offsets", cli.sink, "--set", "-", stdin=json.dumps(doc))
    assert code == 0, err
    code, out, err = cli.run("lag", cli.sink)
    assert out.strip().splitlines()[1].split("\t") == [cli.sink, f"connect-{cli.sink}", cli.topic, "0", "3", "4", "1"]

    from airconnect.core.kafka_client import committed_group_offsets
    from airconnect.hooks import kafka_config

    # --set on a sink also moves its consumer group, as Kafka Connect's PATCH does.
    assert committed_group_offsets(kafka_config(), f"connect-{cli.sink}", cli.topic) == {0: 3}

    code, out, err = cli.run("list")
    assert code == 0, err
    rows = {line.split("\t")[0]: line.split("\t") for line in out.strip().splitlines()}
    assert rows[cli.sink][-1] == "lag=1"
    assert not any(col.startswith("lag=") for col in rows[cli.source])


def test_lag_refuses_sources_and_unknown_names(cli):
    code, _, err = cli.run("lag", cli.source)
    assert code == 2 and "is a source" in err
    code, _, err = cli.run("lag", "nope")
    assert code == 2 and "no connector named 'nope'" in err


def test_validate_reports_every_invalid_definition_and_the_others_still_work(cli, tmp_path):
    defs = Path(os.environ["AIRCONNECT_CONNECTORS_DIR"])
    (defs / "bad-1.json").write_text(json.dumps({"name": "load-hanbai", "config": {
        "connector.class": "FileStreamSource", "file": "hanbai.csv", "topic": "hanbai", "batch.size": "0"}}))
    (defs / "bad-2.json").write_text(json.dumps({"name": "sink-hanbai", "config": {
        "connector.class": "FileStreamSink", "file": str(tmp_path), "topics": "hanbai"}}))
    code, out, err = cli.run("validate")
    assert code == 2
    assert f"ok  {cli.source}" in out and f"ok  {cli.sink}" in out
    assert "connector 'load-hanbai', key 'batch.size': expected an integer >= 1, got '0'" in err
    assert "connector 'sink-hanbai', key 'file': expected a file, but it is a directory" in err
    assert "2 invalid definition(s), 2 valid" in err
    # The valid connectors can still be managed; the invalid one says why it cannot.
    code, out, _ = cli.run("offsets", cli.sink)
    assert code == 0 and '"offsets"' in out
    code, _, err = cli.run("offsets", "load-hanbai")
    assert code == 2 and "key 'batch.size'" in err


def test_a_reset_that_would_deliver_twice_asks_for_a_flag(tmp_path, kafka, unique, airflow_db, monkeypatch):
    """A source reset while its topic still holds what it delivered re-sends every line into it:
    refused, unless the topics go too (--delete-topics) or --redeliver says it is meant."""
    from airconnect.core.runtime import run
    from airconnect.hooks import VariableStore
    from helpers import read_topic

    data = tmp_path / "data"
    (data / "hanbai").mkdir(parents=True)
    (data / "hanbai" / "uriage.csv").write_text("판매-1,서울점,3\n판매-2,부산점,5\n")
    defs = tmp_path / "connectors"
    defs.mkdir()
    topic = f"uriage-{unique}"
    definition = {"name": f"load-uriage-{unique}", "config": {
        "connector.class": "FileStreamSource", "file": "hanbai/uriage.csv", "topic": topic}}
    (defs / "load.json").write_text(json.dumps(definition))
    monkeypatch.setenv("AIRCONNECT_CONNECTORS_DIR", str(defs))
    monkeypatch.setenv("AIRCONNECT_DATA_DIR", str(data))
    assert run(definition, VariableStore(), kafka)["records"] == 2
    name = definition["name"]
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["reset", name]) == 2
    assert f"connector '{name}': a reset would deliver everything again into topic {topic} (not empty" in err.getvalue()
    assert "--redeliver" in err.getvalue() and "--delete-topics" in err.getvalue()
    assert VariableStore().get(f"airconnect.offsets.{name}") is not None  # nothing was reset
    assert run(definition, VariableStore(), kafka)["records"] == 0
    assert main(["reset", name, "--redeliver"]) == 0
    assert run(definition, VariableStore(), kafka)["records"] == 2
    assert len(read_topic(kafka, topic)) == 4  # asked for: twice
    assert main(["reset", name, "--delete-topics"]) == 0
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    assert run(definition, VariableStore(), kafka)["records"] == 2
    assert len(read_topic(kafka, topic)) == 2  # the topic's new life holds each line once


def test_a_sink_reset_with_its_topics_can_remove_their_objects_from_the_bucket(tmp_path, kafka, unique, airflow_db,
                                                                             monkeypatch):
    """After reset --delete-topics the bucket would keep the topic's old life; --delete-stale-objects removes it."""
    from airconnect.core.runtime import run
    from airconnect.hooks import VariableStore, s3_client

    client = s3_client("aws_forecast")
    bucket = f"airconnect-cli-{unique}"
    client.create_bucket(Bucket=bucket)
    topic = f"pan-uriage-{unique}"
    producer = Producer(kafka)
    for i, day in enumerate(("2019-03-01", "2019-03-02", "2019-04-05")):
        producer.produce(topic, json.dumps({"pan": f"食パン-{i}", "sold_at": f"{day}T08:00:00Z"}).encode())
    assert producer.flush(15) == 0
    definition = {"name": f"s3-pan-{unique}", "config": {
        "connector.class": "io.confluent.connect.s3.S3SinkConnector", "topics": topic, "s3.bucket.name": bucket,
        "aws.conn.id": "aws_forecast", "timestamp.field": "sold_at", "value.converter.schemas.enable": "false"}}
    defs = tmp_path / "connectors"
    defs.mkdir()
    (defs / "s3.json").write_text(json.dumps(definition))
    monkeypatch.setenv("AIRCONNECT_CONNECTORS_DIR", str(defs))
    assert run(definition, VariableStore(), kafka, s3_client=client)["records"] == 3

    def keys() -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]

    assert len(keys()) == 2  # March and April
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert main(["reset", definition["name"], "--delete-topics", "--delete-stale-objects"]) == 0
    finally:
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    assert f"{definition['name']}: deleted 2 stale object(s) from s3://{bucket}" in out.getvalue()
    assert keys() == []
    client.delete_bucket(Bucket=bucket)


def test_connectors_created_at_runtime_from_the_shell(cli, tmp_path, unique):
    """create/update/status/pause/resume/stop/restart/delete: the REST API's functions, from a shell."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound
    from airflow.models.dag import DagModel

    from airconnect import definitions_db

    def said(*args: str) -> tuple[int, str, str]:  # (Airflow's own log lines, if any, go first: the last line says it)
        code, out, err = cli.run(*args)
        return code, out.strip().splitlines()[-1] + "\n" if out.strip() else out, err

    def state(name: str) -> str:
        out = cli.run("status", name)[1]
        return json.loads(out[out.index("\n{") + 1 if not out.startswith("{") else 0:])["connector"]["state"]

    name = f"load-shell-{unique}"
    f = tmp_path / "def.json"
    f.write_text(json.dumps({"name": name, "config": {"connector.class": "FileStreamSource", "file": "zaiko/latest.txt",
                                                      "topic": cli.topic}}))
    try:
        assert said("create", "-f", str(f), "--initial-state", "PAUSED") == (
            0, f"created {name} (DAG connector_{name})\n", "")
        code, _, err = cli.run("create", "-f", str(f))
        assert code == 2 and err == f"airconnect: Connector {name} already exists\n"
        code, _, err = cli.run("create", "-f", str(tmp_path / "missing.json"))
        assert code == 2 and "missing.json" in err
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"name": f"bad-{unique}", "config": {"connector.class": "FileStreamSource"}}))
        code, _, err = cli.run("create", "-f", str(bad))
        assert code == 2 and "contains the following 2 error(s)" in err and "key 'file'" in err and "key 'topic'" in err
        # A file's connector is changed in its file.
        code, _, err = cli.run("delete", cli.source)
        assert code == 2 and "is managed by the file" in err
        assert state(name) == "UNASSIGNED"  # (not parsed yet)
        store_runtime_dags()
        assert DagModel.get_current(f"connector_{name}").is_paused
        assert state(name) == "PAUSED"
        assert cli.run("resume", name)[0] == 0 and not DagModel.get_current(f"connector_{name}").is_paused
        assert said("stop", name) == (0, f"stopped {name}\n", "")
        assert state(name) == "STOPPED"
        assert cli.run("pause", name)[0] == 0
        assert state(name) == "PAUSED"
        f.write_text(json.dumps({"name": name, "config": {"connector.class": "FileStreamSource",
                                                          "file": "zaiko/other.txt", "topic": cli.topic}}))
        assert said("update", "-f", str(f)) == (0, f"updated {name}\n", "")
        assert definitions_db.stored(name)["config"]["file"] == "zaiko/other.txt"
        code, out, _ = said("restart", name)
        assert (code, out) == (0, f"restarted {name}\n")
        assert said("delete", name) == (0, f"deleted {name} (its offsets stay)\n", "")
        assert definitions_db.stored(name) is None
        code, _, err = cli.run("status", name)
        assert code == 2 and err == f"airconnect: Connector {name} not found\n"
    finally:
        definitions_db.remove(name)
        try:
            delete_dag(f"connector_{name}")
        except DagNotFound:
            pass
