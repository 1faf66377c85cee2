"""A JDBC sink's offsets live in its target database (``airconnect_sink_offsets``, committed with
the rows) and win at its start; KIP-875's reset and alter, and the offsets shown, must be those.

Through the ``airconnect`` CLI and the REST API (what a Kafka Connect user types), against the
real Kafka, PostgreSQL (Airflow Connection ``postgres_ec``) and Airflow's metadata DB (the
Variable). Each sink runs as its Airflow task would: ``operators.resources_for`` gives it the
DB-API factory of its ``db.conn.id``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from airconnect.cli import main
from airconnect.core import manage
from airconnect.core.data import INT32_SCHEMA, STRING_SCHEMA, Struct, from_connect, struct_schema
from airconnect.core.kafka_client import Admin, committed_group_offsets
from airconnect.core.registry import read_definitions, validate
from airconnect.core.runtime import run
from helpers import generator

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
ITEM = struct_schema([("id", INT32_SCHEMA), ("name", STRING_SCHEMA)], name="item")
N = 6


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT)


class Sink:
    """A JDBC sink (PostgreSQL ``ec``) defined in a connectors folder, its topic holding N items."""

    def __init__(self, tmp_path: Path, unique: str, kafka: dict[str, Any], monkeypatch: Any, *, regex: bool = False):
        self.name, self.topic, self.table = f"sink-offsets-{unique}", f"items-offsets-{unique}", f"items_offsets_{unique}"
        self.kafka = kafka
        self.definition = {"name": self.name, "config": {
            "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
            **({"topics.regex": f"items-offsets-{unique}.*"} if regex else {"topics": self.topic}),
            "db.conn.id": "postgres_ec", "table.name.format": self.table, "auto.create": "true"}}
        defs = tmp_path / "connectors"
        defs.mkdir()
        (defs / "sink.json").write_text(json.dumps(self.definition))
        monkeypatch.setenv("AIRCONNECT_CONNECTORS_DIR", str(defs))
        Admin(kafka).ensure_topic(self.topic, partitions=1)
        p = Producer(kafka)
        for i in range(N):
            p.produce(self.topic, from_connect(ITEM, Struct(ITEM, {"id": i, "name": f"item {i}"})), partition=0)
        assert p.flush(30) == 0
        self.conn = generator().connect_pg()

    def config(self):
        return validate(self.definition)

    def run(self) -> dict[str, Any]:
        from airconnect.hooks import VariableStore
        from airconnect.operators import resources_for

        config = self.config()
        return run(config, VariableStore(), self.kafka, **resources_for(config))

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        self.conn.commit()
        return rows

    def rows(self) -> list[tuple[Any, ...]]:
        return self.sql(f'SELECT id, name FROM "{self.table}" ORDER BY id, name')

    def db_offsets(self) -> list[tuple[Any, ...]]:
        return self.sql("SELECT topic, kafka_partition, next_offset FROM airconnect_sink_offsets WHERE connector = %s",
                        (self.name,))

    def variable(self) -> Any:
        from airconnect.hooks import VariableStore

        raw = VariableStore().get(f"airconnect.offsets.{self.name}")
        return None if raw is None else json.loads(raw)

    def cli(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
        try:
            code = main(list(args))
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
        return code, out.getvalue(), err.getvalue()

    def close(self) -> None:
        from airconnect.hooks import VariableStore

        self.sql(f'DROP TABLE IF EXISTS "{self.table}"')
        self.sql("DELETE FROM airconnect_sink_offsets WHERE connector = %s", (self.name,))
        VariableStore().delete(f"airconnect.offsets.{self.name}")
        self.conn.close()
        Admin(self.kafka).client.delete_topics([self.topic])


@pytest.fixture
def sink(tmp_path, unique, kafka, airflow_db, monkeypatch):
    s = Sink(tmp_path, unique, kafka, monkeypatch)
    assert s.run()["records"] == N
    assert len(s.rows()) == N
    yield s
    s.close()


def items(ids: list[int]) -> list[tuple[int, str]]:
    return [(i, f"item {i}") for i in ids]


def test_a_reset_writes_every_record_again_into_an_emptied_table(sink):
    code, _, err = sink.cli("reset", sink.name)  # insert mode: every row would be there twice
    assert code == 2
    assert f"table {sink.table} (not empty)" in err and "--redeliver" in err
    assert sink.db_offsets() == [(sink.topic, 0, N)]
    sink.sql(f'DELETE FROM "{sink.table}"')  # the user empties the table to reload it
    code, out, err = sink.cli("reset", sink.name)
    assert code == 0, err
    assert "reset successfully" in out
    assert sink.db_offsets() == []
    assert sink.variable() is None
    assert sink.run()["records"] == N
    assert sink.rows() == items(list(range(N)))
    assert sink.db_offsets() == [(sink.topic, 0, N)]


def test_an_alter_sets_the_database_offset_and_the_next_run_writes_from_there(sink):
    doc = {"offsets": [{"partition": {"kafka_topic": sink.topic, "kafka_partition": 0}, "offset": {"kafka_offset": 4}}]}
    code, out, err = sink.cli("offsets", sink.name, "--set", "-", stdin=json.dumps(doc))
    assert code == 0, err
    assert sink.db_offsets() == [(sink.topic, 0, 4)]
    assert committed_group_offsets(sink.kafka, manage.sink_group(sink.config()), sink.topic) == {0: 4}
    assert sink.run()["records"] == 2
    # insert mode, no key: exactly records 4 and 5 are written a second time
    assert sink.rows() == items([0, 1, 2, 3, 4, 4, 5, 5])


def test_offsets_shown_are_the_database_s_not_a_stale_variable(sink):
    from fastapi.testclient import TestClient

    from airconnect import rest
    from airconnect.hooks import VariableStore

    stale = {"offsets": [{"partition": {"kafka_topic": sink.topic, "kafka_partition": 0}, "offset": {"kafka_offset": 2}}]}
    VariableStore().set(f"airconnect.offsets.{sink.name}", json.dumps(stale))
    expected = [{"partition": {"kafka_topic": sink.topic, "kafka_partition": 0}, "offset": {"kafka_offset": N}}]
    code, out, err = sink.cli("offsets", sink.name)
    assert code == 0, err
    assert json.loads(out)["offsets"] == expected
    rest.app.dependency_overrides[rest.check_access] = lambda: None
    try:
        r = TestClient(rest.app).get(f"/connectors/{sink.name}/offsets")
        lag = TestClient(rest.app).get(f"/connectors/{sink.name}/lag")
    finally:
        rest.app.dependency_overrides.clear()
    assert r.status_code == 200, r.text
    assert r.json()["offsets"] == expected
    # the lag counts from the database's offsets too: nothing is left to write
    assert [(p["committed"], p["lag"]) for p in lag.json()["partitions"]] == [(N, 0)]


def test_a_reset_that_died_before_the_database_changed_resets_nothing(sink):
    """The database is the reset's commit point: it changes last. A reset killed after the Variable
    and the group were cleared, before the database's rows went, leaves the old offsets whole: the
    next run resumes after the committed rows (nothing twice) and repairs the Variable."""
    from airconnect.hooks import VariableStore

    manage.reset_named_offsets(sink.name, VariableStore(), sink.kafka, group=manage.sink_group(sink.config()))
    assert sink.variable() is None
    assert sink.run()["records"] == 0
    assert sink.rows() == items(list(range(N)))
    assert sink.variable()["offsets"][0]["offset"] == {"kafka_offset": N}


def test_a_reset_while_a_run_holds_the_connectors_lock_is_refused(sink):
    from airconnect.connectors.jdbc.dialect import dialect_of
    from airconnect.connectors.jdbc_sink.sql import SinkSql

    other = generator().connect_pg()
    try:
        cur = other.cursor()
        assert SinkSql(dialect_of(other)).try_lock(cur, sink.name)  # a run of the connector is writing
        code, _, err = sink.cli("reset", sink.name, "--redeliver")
        assert code == 2
        assert sink.name in err and "writing" in err
        assert sink.variable()["offsets"][0]["offset"] == {"kafka_offset": N}  # refused before anything changed
    finally:
        other.close()
    assert sink.db_offsets() == [(sink.topic, 0, N)]


def test_a_regex_sink_s_topics_are_the_cluster_s_matching_topics(tmp_path, unique, kafka, airflow_db, monkeypatch):
    from fastapi.testclient import TestClient

    from airconnect import rest
    from airconnect.sensors import TopicRecordsSensor

    s = Sink(tmp_path, unique, kafka, monkeypatch, regex=True)
    try:
        config = read_definitions().by_name()[s.name]
        assert manage.connector_topics(config, kafka) == [s.topic]
        rest.app.dependency_overrides[rest.check_access] = lambda: None
        try:
            r = TestClient(rest.app).get(f"/connectors/{s.name}/topics")
        finally:
            rest.app.dependency_overrides.clear()
        assert r.json() == {s.name: {"topics": [s.topic]}}
        assert TopicRecordsSensor(connector=s.definition)._state()[1] == [s.topic]  # what a run waits for
        code, out, err = s.cli("lag", s.name)
        assert code == 0, err
        assert f"{s.topic}\t0\t-\t{N}\t{N}" in out
        assert s.run()["records"] == N
        code, out, err = s.cli("lag", s.name)
        assert f"{s.topic}\t0\t{N}\t{N}\t0" in out
    finally:
        s.close()


def test_the_rest_api_s_reset_and_alter_reach_the_database(sink):
    """KIP-875 over REST (the connector STOPPED): PATCH sets the database's offset, DELETE removes it."""
    from fastapi.testclient import TestClient

    from airconnect import rest
    from airconnect.definitions_db import set_stopped

    path = f"/connectors/{sink.name}/offsets"
    doc = {"offsets": [{"partition": {"kafka_topic": sink.topic, "kafka_partition": 0}, "offset": {"kafka_offset": 5}}]}
    set_stopped(sink.name, True)
    rest.app.dependency_overrides[rest.check_access] = lambda: None
    try:
        client = TestClient(rest.app)
        assert client.patch(path, json=doc).status_code == 200
        assert sink.db_offsets() == [(sink.topic, 0, 5)]
        assert client.get(path).json()["offsets"] == doc["offsets"]
        assert client.delete(path, params={"redeliver": "true"}).status_code == 200
        assert sink.db_offsets() == []
        assert client.get(path).json()["offsets"] == []
    finally:
        rest.app.dependency_overrides.clear()
        set_stopped(sink.name, False)
    sink.sql(f'DELETE FROM "{sink.table}"')
    assert sink.run()["records"] == N
    assert sink.rows() == items(list(range(N)))
