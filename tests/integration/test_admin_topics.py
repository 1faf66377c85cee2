"""Admin.ensure_topic asks the cluster about one topic (not for the list of every topic), and
asking must not create it: the broker creates a topic a metadata request names when that
request allows it (auto.create.topics.enable, Kafka's default), with the broker's partition
count, not the connector's."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from airconnect.core.kafka_client import Admin

pytestmark = pytest.mark.integration


def test_asking_about_a_missing_topic_leaves_it_missing(kafka, unique):
    topic = f"admin-missing-{unique}"
    assert Admin(kafka).partitions(topic) is None
    time.sleep(0.5)  # (a creation the question set off would show by now)
    assert topic not in AdminClient(dict(kafka)).list_topics(timeout=10).topics


def test_ensure_topic_makes_the_partitions_asked_for_and_they_take_records_at_once(kafka, unique):
    topic = f"admin-three-{unique}"
    assert Admin(kafka).ensure_topic(topic, partitions=3) == 3
    assert len(AdminClient(dict(kafka)).list_topics(timeout=10).topics[topic].partitions) == 3
    producer = Producer({**kafka, "enable.idempotence": True})
    for partition in range(3):
        producer.produce(topic, b"x", partition=partition)
    assert producer.flush(30) == 0
    assert Admin(kafka).ensure_topic(topic, partitions=1) == 3  # an existing topic is left as it is
