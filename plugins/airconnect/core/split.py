"""A connector's tasks: its work split into at most ``tasks.max`` disjoint shares, as Kafka
Connect's ``Connector.taskConfigs`` does, computed when a run starts (the split may depend on the
topics' partitions at that moment).

- a JDBC source: its tables dealt into ``min(tables, tasks.max)`` groups (a query is one task);
- a file source of several files (a list, glob patterns): the files matched now dealt into
  ``min(files, tasks.max)`` groups (one plain path is one task);
- a sink whose spec ``splits_partitions`` (the S3 sink, the JDBC sink): its topics' partitions
  (a ``topics.regex``'s: the matching topics now) dealt into ``min(partitions, tasks.max)``
  groups, as a consumer group's members share them;
- everything else (a file sink, one task by nature): one task.

Each share is a JSON map, ``{"task": i, ...}``; :meth:`ConnectorConfig.for_task` gives the runner
its share. Offsets stay keyed by source partition (table, file, topic-partition), never by task,
so a split that changes between runs (``tasks.max`` 1, then 3, then 2) loses and repeats nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airconnect.core.config import ConnectorConfig
from airconnect.core.kafka_client import Admin


def deal(items: list[Any], max_tasks: int) -> list[list[Any]]:
    """``items`` dealt round-robin into ``min(len(items), max_tasks)`` non-empty groups."""
    groups: list[list[Any]] = [[] for _ in range(max(1, min(len(items), max_tasks)))]
    for i, item in enumerate(items):
        groups[i % len(groups)].append(item)
    return groups


def topic_partitions(kafka: Mapping[str, Any], topics: list[str]) -> list[tuple[str, int]]:
    """Every ``(topic, partition)`` of ``topics`` that exist now, in order."""
    counts = Admin(kafka).topics()
    return [(t, p) for t in sorted(set(topics)) for p in range(counts.get(t, 0))]


def task_configs(config: ConnectorConfig, kafka: Mapping[str, Any] | None = None,
                 max_tasks: int | None = None) -> list[dict[str, Any]]:
    """The connector's tasks now: ``[{"task": 0, ...}, {"task": 1, ...}, ...]`` (see the module).
    ``kafka`` is needed for a sink split by partitions; ``max_tasks`` overrides ``tasks.max``."""
    n = config["tasks.max"] if max_tasks is None else max_tasks
    if n <= 1:
        return [{"task": 0}]
    if config.kind == "sink":
        if not config.cls.splits_partitions or kafka is None:
            return [{"task": 0}]
        topics = config.topics
        if not topics and config.cls.topics_in is not None:  # topics.regex: the topics it matches now
            topics = config.cls.topics_in(config, list(Admin(kafka).topics()))
        tps = topic_partitions(kafka, topics)
        if not tps:  # no topic yet: one task reads whatever exists when it runs
            return [{"task": 0}]
        return [{"task": i, "partitions": [[t, p] for t, p in group]} for i, group in enumerate(deal(tps, n))]
    shares = config.cls.split(config, n)
    return [{**share, "task": i} for i, share in enumerate(shares)]
