"""Connector definitions: Kafka Connect's documents work unchanged; bad ones name the key."""

from __future__ import annotations

import json

import pytest

from airconnect.core.errors import ConfigError
from airconnect.core.registry import load_definitions, read_definitions, validate

TUTORIAL_SOURCE = {"name": "load-zaiko-data",
                   "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                              "file": "/zaiko/latest.txt", "topic": "zaiko-data"}}
TUTORIAL_SINK = {"name": "sink-zaiko-data",
                 "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                            "file": "/ec/zaiko-latest.txt", "topics": "zaiko-data"}}


def test_the_tutorials_documents_load_unchanged_from_a_folder(tmp_path):
    (tmp_path / "load.json").write_text(json.dumps(TUTORIAL_SOURCE))
    (tmp_path / "sink.json").write_text(json.dumps(TUTORIAL_SINK))
    found = {c.name: c for c in load_definitions(tmp_path)}
    assert found["load-zaiko-data"]["file"] == "/zaiko/latest.txt"
    assert found["load-zaiko-data"]["topic"] == "zaiko-data"
    assert found["load-zaiko-data"].kind == "source"
    assert found["sink-zaiko-data"]["topics"] == ["zaiko-data"]
    assert found["sink-zaiko-data"].kind == "sink"
    # Connect's defaults: JsonConverter with schemas
    assert found["load-zaiko-data"]["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert found["load-zaiko-data"]["value.converter.schemas.enable"] is True


def test_airconnect_class_names_and_flat_shape_work():
    cfg = validate({"name": "x", "connector.class": "airconnect.FileSource", "file": "/a", "topic": "t", "batch.size": "5"})
    assert cfg["batch.size"] == 5 and cfg.cls.name == "airconnect.FileSource"


def test_relative_paths_resolve_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRCONNECT_DATA_DIR", str(tmp_path))
    cfg = validate({"name": "x", "config": {"connector.class": "FileStreamSource", "file": "zaiko/latest.txt", "topic": "t"}})
    assert cfg["file"] == str(tmp_path / "zaiko" / "latest.txt")


def test_env_config_provider_syntax(monkeypatch):
    monkeypatch.setenv("ZAIKO_FILE", "/srv/zaiko.txt")
    cfg = validate({"name": "x", "config": {"connector.class": "FileStreamSource", "file": "${env:ZAIKO_FILE}", "topic": "t"}})
    assert cfg["file"] == "/srv/zaiko.txt"
    monkeypatch.delenv("ZAIKO_FILE")
    with pytest.raises(ConfigError, match=r"connector 'x', key 'file': .*ZAIKO_FILE.*not set"):
        validate({"name": "x", "config": {"connector.class": "FileStreamSource", "file": "${env:ZAIKO_FILE}", "topic": "t"}})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"connector.class": "FileStreamSource", "file": "/a"}, r"connector 'bad', key 'topic': is required"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": ""}, r"key 'topic': is required"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": "no spaces"}, r"key 'topic': expected a Kafka topic name"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": "t", "topik": "x"}, r"key 'topik': is not a key of airconnect.FileSource \(did you mean 'topic'\?\)"),
        ({"connector.class": "org.apache.kafka.connect.file.FileStreamSorceConnector", "file": "/a", "topic": "t"}, r"key 'connector.class': unknown connector class .*did you mean 'org.apache.kafka.connect.file.FileStreamSourceConnector'"),
        ({"file": "/a", "topic": "t"}, r"key 'connector.class': is required"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": "t", "batch.size": "lots"}, r"key 'batch.size': expected an integer >= 1, got 'lots'"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": "t", "batch.size": 0}, r"key 'batch.size': expected an integer >= 1"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": "t", "value.converter": "io.confluent.connect.avro.AvroConverter"}, r"key 'value.converter': expected one of"),
        ({"connector.class": "FileStreamSource", "file": "/a", "topic": "t", "value.converter.schemas.enable": "yes"}, r"key 'value.converter.schemas.enable': expected true or false"),
        ({"connector.class": "FileStreamSink", "file": "/a"}, r"key 'topics': is required"),
        ({"connector.class": "FileStreamSink", "file": "/a", "topics": "a,,b c"}, r"key 'topics': expected a comma-separated list"),
    ],
)
def test_bad_definitions_name_the_connector_and_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        validate({"name": "bad", "config": config})


def test_a_definition_without_a_name_is_refused():
    with pytest.raises(ConfigError, match="every connector needs a 'name'"):
        validate({"config": {"connector.class": "FileStreamSource", "file": "/a", "topic": "t"}})


def test_a_broken_file_is_named(tmp_path):
    (tmp_path / "broken.json").write_text('{"name": "x", ')
    with pytest.raises(ConfigError, match="broken.json is not valid JSON"):
        load_definitions(tmp_path)


def test_the_same_name_twice_is_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(TUTORIAL_SOURCE))
    (tmp_path / "b.json").write_text(json.dumps([TUTORIAL_SOURCE]))
    with pytest.raises(ConfigError, match="connector 'load-zaiko-data', key 'name': is defined twice"):
        load_definitions(tmp_path)


def test_the_definition_round_trips_as_connect_shows_it():
    cfg = validate(TUTORIAL_SOURCE)
    assert cfg.definition() == {"name": "load-zaiko-data", "config": {**TUTORIAL_SOURCE["config"], "name": "load-zaiko-data"}}
    assert validate(cfg.definition()).values == cfg.values


def test_the_shipped_definitions_are_valid():
    names = {c.name for c in load_definitions()}
    assert {"load-zaiko-data", "sink-zaiko-data"} <= names


def test_every_error_of_a_definition_is_reported_at_once():
    bad = {"name": "load-tenpo", "config": {"connector.class": "FileStreamSource", "file": "zaiko/tenpo.csv",
                                            "topik": "tenpo", "batch.size": "many", "csv.fields": "-2"}}
    with pytest.raises(ConfigError) as err:
        validate(bad)
    message = str(err.value)
    for expected in ("connector 'load-tenpo', key 'topik': is not a key of airconnect.FileSource (did you mean 'topic'?)",
                     "connector 'load-tenpo', key 'batch.size': expected an integer >= 1, got 'many'",
                     "connector 'load-tenpo', key 'csv.fields': expected an integer >= 0, got '-2'",
                     "connector 'load-tenpo', key 'topic': is required"):
        assert expected in message
    assert [e.key for e in err.value.errors] == ["topik", "topic", "batch.size", "csv.fields"]


def test_every_invalid_definition_of_a_folder_is_reported_at_once(tmp_path):
    (tmp_path / "a-good.json").write_text(json.dumps(TUTORIAL_SOURCE))
    (tmp_path / "b-typo.json").write_text(json.dumps(
        {"name": "sink-tenpo", "config": {"connector.class": "FileStreamSink", "file": "ec/tenpo.txt", "topicz": "t"}}))
    (tmp_path / "c-class.json").write_text(json.dumps({"name": "jdbc-uriage", "config": {"connector.class": "JdbcSauce"}}))
    (tmp_path / "d-broken.json").write_text('{"name": "s3-uriage", ')
    found = read_definitions(tmp_path)
    assert [c.name for c in found.configs] == ["load-zaiko-data"]
    assert [(e.connector, e.key) for e in found.errors] == [
        ("sink-tenpo", None), ("jdbc-uriage", "connector.class"), (None, None)]
    assert [e.connector_class for e in found.errors] == ["airconnect.FileSink", None, None]
    with pytest.raises(ConfigError) as err:
        load_definitions(tmp_path)
    message = str(err.value)
    assert "key 'topicz': is not a key of airconnect.FileSink" in message
    assert "connector 'jdbc-uriage', key 'connector.class': unknown connector class 'JdbcSauce'" in message
    assert "d-broken.json is not valid JSON" in message


def test_the_topics_a_jdbc_source_is_managed_by_are_the_sanitised_ones_it_writes():
    """reset --delete-topics, the reset guard, `airconnect list` and REST /topics look at these."""
    cfg = validate({"name": "jdbc-uriage", "config": {
        "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "pos", "mode": "bulk",
        "table.whitelist": "Sales Table,sales$2018", "topic.prefix": "pos."}})
    assert cfg.topics == ["pos.Sales_Table", "pos.sales_2018"]


@pytest.mark.parametrize("key, value, expected", [
    ("producer.override.linger.ms", "50", "per-connector client overrides are not supported"),
    ("consumer.override.max.poll.records", "10", "per-connector client overrides are not supported"),
    ("key.converter", "org.apache.kafka.connect.storage.StringConverter", "expected one of 'org.apache.kafka.connect.json.JsonConverter'"),
    ("header.converter", "org.apache.kafka.connect.json.JsonConverter", "expected one of 'org.apache.kafka.connect.storage.StringConverter'"),
])
def test_a_key_airconnect_would_not_honour_is_refused(key, value, expected):
    """Every declared key is honoured or refused: nothing is accepted and then ignored."""
    with pytest.raises(ConfigError) as err:
        validate({"name": "load-tenpo", "config": {**TUTORIAL_SOURCE["config"], key: value}})
    assert f"connector 'load-tenpo', key '{key}': " in str(err.value) and expected in str(err.value)


def test_tasks_max_splits_tables_into_disjoint_tasks_and_a_file_stays_one_task():
    from airconnect.core.split import task_configs

    jdbc = validate({"name": "jdbc-uriage", "config": {
        "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "pos", "mode": "bulk",
        "table.whitelist": "uriage,zaiko,tenpo", "topic.prefix": "pos.", "tasks.max": "2"}})
    assert task_configs(jdbc) == [{"task": 0, "tables": ["uriage", "tenpo"]}, {"task": 1, "tables": ["zaiko"]}]
    assert len(task_configs(jdbc, max_tasks=9)) == 3  # never more tasks than tables
    with pytest.raises(ConfigError, match="connector 'load-tenpo', key 'tasks.max': must be 1: a local file"):
        validate({"name": "load-tenpo", "config": {**TUTORIAL_SOURCE["config"], "tasks.max": "2"}})
    with pytest.raises(ConfigError, match="key 'topic.creation.default.partitions': expected an integer >= 1, or -1"):
        validate({"name": "jdbc-uriage", "config": {**jdbc.raw, "topic.creation.default.partitions": "0"}})
