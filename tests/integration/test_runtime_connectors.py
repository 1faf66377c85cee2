"""The DAGs of connectors created at runtime (dags/runtime_connectors.py) and a sink's wait for
records (TopicRecordsTrigger), against Airflow's DB and the real Kafka."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_db():
    """Airflow's DB, migrated (``airflow db migrate`` only when it is not: it costs a process start)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        from airflow.models import Variable

        Variable.get("airconnect.test.probe", default_var=None)
    except (OperationalError, ProgrammingError):
        subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=ROOT)


def test_one_dag_per_stored_connector_shaped_by_its_class(airflow_db, unique):
    from airflow.dag_processing.dagbag import DagBag

    from airconnect import definitions_db

    defs = {
        f"load-rt-{unique}": ({"connector.class": "FileStreamSource", "file": "a.txt", "topic": f"t-{unique}"}, "RUNNING"),
        f"sink-rt-{unique}": ({"connector.class": "FileStreamSink", "file": "b.txt", "topics": f"t-{unique}"}, "PAUSED"),
        f"jdbc-rt-{unique}": ({"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
                               "mode": "incrementing", "incrementing.column.name": "id", "table.whitelist": "sales",
                               "topic.prefix": f"rt-{unique}-", "poll.interval.ms": "2500"}, "STOPPED"),
    }
    try:
        for name, (config, state) in defs.items():
            definitions_db.save({"name": name, "config": config}, state)
        bag = DagBag(dag_folder=str(ROOT / "dags" / "runtime_connectors.py"), bundle_path=ROOT / "dags",
                     bundle_name="dags-folder")
        assert not bag.import_errors
        source, sink, jdbc = (bag.dags[f"connector_{n}"] for n in defs)
        assert {t.task_id: [u.task_id for u in t.upstream_list] for t in source.tasks} == {
            f"wait-load-rt-{unique}": [], f"load-rt-{unique}": [f"wait-load-rt-{unique}"]}
        assert type(source.get_task(f"wait-load-rt-{unique}")).__name__ == "FileChangeSensor"
        assert type(sink.get_task(f"wait-sink-rt-{unique}")).__name__ == "TopicRecordsSensor"
        assert [t.task_id for t in jdbc.tasks] == [f"jdbc-rt-{unique}"]
        assert type(source.timetable).__name__ == type(sink.timetable).__name__ == "ContinuousTimetable"
        assert jdbc.timetable.delta == timedelta(milliseconds=2500)  # poll.interval.ms
        assert (source.is_paused_upon_creation, sink.is_paused_upon_creation, jdbc.is_paused_upon_creation) == (
            False, True, True)
        assert all("airconnect-runtime" in d.tags and d.max_active_runs == 1 for d in (source, sink, jdbc))
    finally:
        for name in defs:
            definitions_db.remove(name)


def test_a_sink_waits_in_the_triggerer_until_its_topic_has_new_records(kafka, unique):
    from airconnect.triggers import TopicRecordsTrigger

    topic = f"rt-wait-{unique}"
    producer = Producer(kafka)
    producer.produce(topic, b"one")
    assert producer.flush(15) == 0

    async def first_event(positions: dict[str, int], max_wait: float) -> dict:
        trigger = TopicRecordsTrigger(kafka=kafka, topics=[topic], positions=positions, poll_interval=0.2,
                                      max_wait=max_wait)
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    # The record is beyond a sink that has read nothing: it fires at once.
    assert asyncio.run(first_event({}, 30)) == {"topics": [topic], "records": 1}
    # A sink that read it waits; a record produced meanwhile wakes it.

    async def produce_later() -> dict:
        waiting = asyncio.create_task(first_event({f"{topic}:0": 1}, 30))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        producer.produce(topic, b"two")
        producer.flush(15)
        return await waiting

    assert asyncio.run(produce_later()) == {"topics": [topic], "records": 1}
    # Nothing new within max_wait: it fires empty, so the run ends and the next one waits again.
    assert asyncio.run(first_event({f"{topic}:0": 2}, 1.0)) == {"topics": [topic], "records": 0}
