"""The JDBC source's spec: its keys, the checks across them, its topics, offsets and task split."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from airconnect.core.config import TOPIC_CREATION_KEYS, ConnectorClass, ConnectorConfig, Key, check_timezone
from airconnect.core.errors import ConfigError
from airconnect.core.offsets import only_keys, whole_number

log = logging.getLogger(__name__)

MODES: Final = ("bulk", "incrementing", "timestamp", "timestamp+incrementing")
#: The keys that hold database names (tables, columns); each is quoted by the dialect's rules.
NAME_KEYS: Final = ("table.whitelist", "incrementing.column.name", "timestamp.column.name", "key.columns")
#: What a name may not hold although a quoted identifier could: SQL's statement separator, string
#: quote and comment marks. Quoting makes them harmless; they are refused because a value holding
#: them is a pasted statement (or an attack), not the name of a table somebody reads.
SQL_MARKS: Final = (";", "'", "--", "/*")
_NOT_IN_TOPICS: Final = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(prefix: str, table: str = "") -> str:
    """``prefix + table`` with every character Kafka refuses in a topic name (all but A-Z a-z 0-9
    . _ -) replaced by ``_``, as Debezium sanitises topic names: ``売上`` -> ``__``,
    ``sales$2018`` -> ``sales_2018``, ``Sales Table`` -> ``Sales_Table``."""
    return _NOT_IN_TOPICS.sub("_", prefix + table)


def _check_names(cfg: ConnectorConfig) -> None:
    name = cfg.name
    for key_name in NAME_KEYS:
        value = cfg[key_name]
        for item in value if isinstance(value, list) else [value] if value else []:
            if "\x00" in item:
                raise ConfigError(f"{item!r} is not a name: it holds a NUL byte", connector=name, key=key_name)
            mark = next((m for m in SQL_MARKS if m in item), None)
            if mark is not None:
                raise ConfigError(
                    f"{item!r} holds {mark!r}; airconnect quotes every name, but refuses SQL's statement separator, "
                    "string quote and comment marks (; ' -- /*) in names: such a value is a pasted statement, not "
                    "a table or column", connector=name, key=key_name)
    tables = cfg["table.whitelist"]
    seen: dict[str, str] = {}  # Kafka's form of a topic (it treats '.' and '_' alike) -> its table
    for table in tables:
        topic = topic_name(cfg["topic.prefix"], table)
        if len(topic) > 249:
            raise ConfigError(f"the topic of table {table!r}, {topic!r}, is longer than Kafka's 249 characters; "
                              "shorten 'topic.prefix'", connector=name, key="table.whitelist")
        other = seen.setdefault(topic.replace(".", "_"), table)
        if other == table and tables.count(table) > 1:
            raise ConfigError(f"lists the table {table!r} twice", connector=name, key="table.whitelist")
        if other != table:
            theirs = topic_name(cfg["topic.prefix"], other)
            why = (f"would both write to the same topic {topic!r}" if theirs == topic else
                   f"would write to topics {theirs!r} and {topic!r}, which collide in Kafka ('.' and '_' are the "
                   "same to it)")
            raise ConfigError(
                f"the tables {other!r} and {table!r} {why}: a topic is topic.prefix + the table's name with every "
                "character other than A-Z a-z 0-9 . _ - replaced by '_'; read one of them with another connector "
                "and another 'topic.prefix'", connector=name, key="table.whitelist")


def _check(cfg: ConnectorConfig) -> None:
    name = cfg.name
    if cfg["errors.tolerance"] != "none":
        raise ConfigError("must be 'none': the JDBC source has no dead-letter topic; a value it cannot convert "
                          "(a NaN or infinite number) stops the run at that row", connector=name, key="errors.tolerance")
    if cfg["connection.url"]:
        raise ConfigError("is not used: airconnect reads the database address and credentials from an "
                          "Airflow Connection; name it with 'db.conn.id'", connector=name, key="connection.url")
    tables, query = cfg["table.whitelist"], cfg["query"]
    if bool(tables) == bool(query):
        raise ConfigError("set exactly one of 'table.whitelist' (tables) and 'query'", connector=name,
                          key="query" if query else "table.whitelist")
    mode = cfg["mode"]
    if "incrementing" in mode and not cfg["incrementing.column.name"]:
        raise ConfigError(f"is required with mode '{mode}'", connector=name, key="incrementing.column.name")
    if "timestamp" in mode and not cfg["timestamp.column.name"]:
        raise ConfigError(f"is required with mode '{mode}'", connector=name, key="timestamp.column.name")
    if cfg["timestamp.lookback.ms"] and "timestamp" not in mode:
        raise ConfigError("only applies to the timestamp modes", connector=name, key="timestamp.lookback.ms")
    _check_names(cfg)


JDBC_SOURCE = ConnectorClass(
    name="airconnect.JdbcSource",
    kind="source",
    aliases=("io.confluent.connect.jdbc.JdbcSourceConnector", "JdbcSourceConnector", "JdbcSource"),
    keys=(
        Key("db.conn.id", "string", doc="The Airflow Connection of the database (type postgres or mysql)."),
        Key("connection.url", "string", "", "Kafka Connect's JDBC URL; airconnect uses db.conn.id instead."),
        Key("mode", "string", doc="How new rows are found.", choices=MODES),
        Key("table.whitelist", "names", [], "Tables to read (optionally schema.table), any legal name; one topic each."),
        Key("query", "string", "", "A SELECT to read instead of tables."),
        Key("topic.prefix", "string", doc="Topic = prefix + table name, characters other than A-Z a-z 0-9 . _ - "
            "replaced by '_' (query mode: the prefix)."),
        Key("incrementing.column.name", "string", "", "A strictly increasing column (incrementing modes)."),
        Key("timestamp.column.name", "names", [], "Timestamp column(s), COALESCEd in this order (timestamp modes)."),
        Key("timestamp.delay.interval.ms", "int", 0, "Leave rows newer than the database's now minus this.", minimum=0),
        Key("timestamp.lookback.ms", "int", 0, "Re-read this much before the offset; already-delivered rows are skipped.", minimum=0),
        Key("timestamp.null.handling", "string", "warn", "Rows whose timestamp is NULL: report them, or fail.", choices=("warn", "fail")),
        Key("poll.interval.ms", "int", 5000, "How often new rows are looked for: the run interval of a connector created "
            "at runtime (its DAG connector_<name>); a file-defined one runs on its DAG's schedule.", minimum=1000),
        Key("batch.max.rows", "int", 100000, "Rows per Kafka transaction (one offset commit per batch); they are "
            "fetched and sent 10,000 at a time, so memory does not grow with it.", minimum=1),
        Key("db.timezone", "string", "UTC", "Zone of timestamp columns without a time zone.", check=check_timezone),
        Key("key.columns", "names", [], "Record key columns (default: the table's primary key)."),
        Key("reconcile.on.mismatch", "string", "fail", "When the table holds more rows at or below the offset than "
            "were delivered (rows committed behind the offset, which polling cannot read): stop the run, or warn "
            "and run on.", choices=("fail", "warn")),
        *TOPIC_CREATION_KEYS,
    ),
    doc="Reads database tables incrementally, one record per row.",
    check=_check,
    runner=lambda config, store, kafka, connect=None: _source()(config, store, kafka, connect),
    topics=lambda config: _topics(config),
    resources=("connect",),
    check_offset=lambda config, partition, offset: _check_offset_shape(partition, offset),
    offset_partition=("table", "query"),
    title="a JDBC source",
    task_configs=lambda config, max_tasks: _task_configs(config, max_tasks),
)



def _source() -> Any:
    from airconnect.connectors.jdbc.source import JdbcSource  # the runner's module imports this one

    return JdbcSource


def _topics(config: ConnectorConfig) -> list[str]:
    """prefix + table for each table (sanitised), or the prefix alone in query mode."""
    tables = config["table.whitelist"] or []
    return [topic_name(config["topic.prefix"], t) for t in tables] if tables else [topic_name(config["topic.prefix"])]


def _task_configs(config: ConnectorConfig, max_tasks: int) -> list[dict[str, Any]]:
    """Kafka Connect's split: the tables dealt into ``min(tables, max_tasks)`` disjoint groups (a
    query is one task). Offsets stay keyed by table, so changing the split loses nothing."""
    tables = list(config["table.whitelist"] or [])
    if not tables:
        return [{"task": 0}]
    groups: list[list[str]] = [[] for _ in range(min(len(tables), max(1, max_tasks)))]
    for i, table in enumerate(tables):
        groups[i % len(groups)].append(table)
    return [{"task": i, "tables": group} for i, group in enumerate(groups)]


def _check_offset_shape(partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> str | None:
    """``{"table": name}`` (or ``{"query": "query"}``) -> timestamp, nanos and id, all optional."""
    if "table" not in partition and "query" not in partition:
        return f"has a partition {dict(partition)!r}; a JDBC source's is {{'table': name}} or {{'query': 'query'}}"
    problem = only_keys(partition, {"table", "query"}, "partition")
    if problem is None and offset is not None:
        problem = (whole_number(offset, "timestamp", required=False) or whole_number(offset, "timestamp_nanos", required=False)
                   or whole_number(offset, "incrementing", required=False, negative=True))
    return problem
