"""Test helpers: read a topic back with a plain consumer, build definitions."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

ROOT = Path(__file__).resolve().parents[1]


def read_topic(kafka: dict[str, Any], topic: str, *, committed_only: bool = True, timeout: float = 15.0) -> list[bytes | None]:
    """Every record value of ``topic`` from the beginning to the current end, as a plain consumer sees it.

    With ``committed_only``, records of a transaction still open (or whose commit markers have
    not arrived) are waited for, up to ``timeout``."""
    c = Consumer({
        **kafka, "group.id": f"test-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "enable.partition.eof": True,
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        "fetch.wait.max.ms": 20,  # the end of each partition is known 20 ms after its last record, not 500
    })
    try:
        md = c.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return []
        parts = sorted(t.partitions)
        # Each partition's end as of now, the high watermark (a read_committed consumer's
        # watermarks stop at the last stable offset, and read_committed is librdkafka's default).
        ends = {p: 0 for p in parts}
        if committed_only:
            probe = Consumer({**kafka, "group.id": f"test-reader-{uuid.uuid4().hex}", "isolation.level": "read_uncommitted"})
            try:
                ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in parts}
            finally:
                probe.close()
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        values: list[bytes | None] = []
        done: set[int] = set()
        empty_polls = 0
        while len(done) < len(parts) and empty_polls < int(timeout * 10):
            msg = c.poll(0.1)
            if msg is None:
                empty_polls += 1
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    # read_committed ends at the last stable offset: short of the high watermark
                    # while a commit's markers are still on their way (after a broker restart,
                    # seconds). Done only when nothing is left behind it.
                    if msg.offset() >= ends[msg.partition()]:
                        done.add(msg.partition())
                    continue
                raise RuntimeError(msg.error().str())
            values.append(msg.value())
        return values
    finally:
        c.close()


def file_source(name: str, path: str, topic: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                                     "file": str(path), "topic": topic, **extra}}


def file_sink(name: str, path: str, topics: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                                     "file": str(path), "topics": topics, **extra}}


def generator():
    """include/generate_sales.py as a module (schemas, connections, the known demand pattern)."""
    if "generate_sales" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "include" / "generate_sales.py"
        spec = importlib.util.spec_from_file_location("generate_sales", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["generate_sales"] = module
        spec.loader.exec_module(module)
    return sys.modules["generate_sales"]


def store_runtime_dags() -> None:
    """Parse dags/runtime_connectors.py and store its DAGs in Airflow's database, as the DAG processor
    does, after recording the DAG bundle as the processor does when it starts (on a fresh database
    the ``dag`` rows would otherwise refer to a bundle that is not there)."""
    from pathlib import Path

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    dags = Path(__file__).resolve().parents[1] / "dags"
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(dags / "runtime_connectors.py"), bundle_path=dags, bundle_name="dags-folder"),
                   "dags-folder", None)
