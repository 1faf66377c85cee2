"""The tests' own reader (helpers.read_topic) must see every committed record.

A transaction's commit returns once the coordinator has logged it; the commit markers reach the
partitions a moment later (seconds, right after a cluster restart). Until then a read_committed
consumer finds the partition's end at the last stable offset, before the transaction's records.
A reader that stopped there reported a committed record as missing (CI, test_broker_failure,
right after every broker came back).
"""

from __future__ import annotations

import json
import threading

import pytest
from confluent_kafka import Producer

from airconnect.core.kafka_client import Admin
from helpers import read_topic

pytestmark = pytest.mark.integration


def test_a_record_whose_commit_markers_come_late_is_read(kafka, unique):
    topic = f"read-late-{unique}"
    Admin(kafka).ensure_topic(topic, partitions=1)
    producer = Producer({**kafka, "transactional.id": f"read-late-{unique}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, json.dumps("first").encode())
    producer.commit_transaction(10)
    producer.begin_transaction()
    producer.produce(topic, json.dumps("second").encode())
    producer.flush(10)  # on the partition, past the stable offset, not yet committed

    timer = threading.Timer(1.5, lambda: producer.commit_transaction(10))  # the markers, late
    timer.start()
    try:
        got = [json.loads(v) for v in read_topic(kafka, topic, timeout=15)]
    finally:
        timer.join()
    assert got == ["first", "second"]
