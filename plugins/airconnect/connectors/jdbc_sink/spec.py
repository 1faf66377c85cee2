"""The JDBC sink's spec: Confluent's ``JdbcSinkConnector`` keys, the checks across them, its topics."""

from __future__ import annotations

import re
from typing import Any, Final

from airconnect.connectors.jdbc.spec import SQL_MARKS
from airconnect.core.config import JSON_CONVERTER, ConnectorClass, ConnectorConfig, Key, check_timezone
from airconnect.core.errors import ConfigError

INSERT_MODES: Final = ("insert", "upsert", "update")
PK_MODES: Final = ("none", "kafka", "record_key", "record_value")
#: Confluent's column names for the Kafka coordinates (``pk.mode=kafka`` without ``pk.fields``).
KAFKA_PK_NAMES: Final = ("__connect_topic", "__connect_partition", "__connect_offset")
#: The table in the target database where the sink keeps its offsets, in the rows' transactions.
OFFSETS_TABLE: Final = "airconnect_sink_offsets"
TOPIC_PLACEHOLDER: Final = "${topic}"


def _check_regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"a regular expression (Java's Pattern syntax, as Kafka's subscription takes it): {exc}"
    return None


def _check_names(cfg: ConnectorConfig) -> None:
    for key_name in ("pk.fields", "fields.whitelist", "table.name.format"):
        value = cfg[key_name]
        for item in value if isinstance(value, list) else [value]:
            if "\x00" in item:
                raise ConfigError(f"{item!r} is not a name: it holds a NUL byte", connector=cfg.name, key=key_name)
            mark = next((m for m in SQL_MARKS if m in item), None)
            if mark is not None:
                raise ConfigError(
                    f"{item!r} holds {mark!r}; airconnect quotes every name, but refuses SQL's statement separator, "
                    "string quote and comment marks (; ' -- /*) in names: such a value is a pasted statement, not "
                    "a table or column", connector=cfg.name, key=key_name)
    fmt = cfg["table.name.format"]
    probe = fmt.replace(TOPIC_PLACEHOLDER, "t")
    if "${" in probe:
        raise ConfigError(f"{fmt!r} has a placeholder other than ${{topic}}, the only one there is",
                          connector=cfg.name, key="table.name.format")
    if not all(part.strip() for part in probe.split(".")):
        raise ConfigError(f"{fmt!r} gives no table name (an empty part between dots); expected a table name, "
                          "optionally schema.table, in which ${topic} stands for the record's topic",
                          connector=cfg.name, key="table.name.format")


def _check(cfg: ConnectorConfig) -> None:
    name = cfg.name
    if cfg["connection.url"]:
        raise ConfigError("is not used: airconnect reads the database address and credentials from an "
                          "Airflow Connection; name it with 'db.conn.id'", connector=name, key="connection.url")
    if bool(cfg["topics"]) == bool(cfg["topics.regex"]):
        raise ConfigError("set exactly one of 'topics' (a list) and 'topics.regex' (a pattern), as Kafka Connect's "
                          "sinks require", connector=name, key="topics.regex" if cfg["topics.regex"] else "topics")
    if cfg["value.converter"] != JSON_CONVERTER or not cfg["value.converter.schemas.enable"]:
        key = "value.converter" if cfg["value.converter"] != JSON_CONVERTER else "value.converter.schemas.enable"
        raise ConfigError(f"the JDBC sink needs values with a schema (a struct, whose fields are the columns): "
                          f"value.converter {JSON_CONVERTER!r} with value.converter.schemas.enable=true, as "
                          "Confluent's sink requires", connector=name, key=key)
    mode, pk_mode, pk_fields = cfg["insert.mode"], cfg["pk.mode"], cfg["pk.fields"]
    if cfg["delete.enabled"] and pk_mode != "record_key":
        raise ConfigError(f"delete.enabled=true needs pk.mode 'record_key' (a tombstone's key names the row to "
                          f"delete), got pk.mode {pk_mode!r}", connector=name, key="delete.enabled")
    if mode in ("upsert", "update") and pk_mode == "none":
        raise ConfigError(f"insert.mode {mode!r} needs a primary key to find the row: set pk.mode to 'record_key', "
                          "'record_value' or 'kafka' (and pk.fields)", connector=name, key="pk.mode")
    if pk_mode == "none" and pk_fields:
        raise ConfigError("is set but pk.mode is 'none', which takes no key fields; set pk.mode 'record_key' or "
                          "'record_value'", connector=name, key="pk.fields")
    if pk_mode == "kafka" and pk_fields and len(pk_fields) != 3:
        raise ConfigError(f"with pk.mode 'kafka' expected no fields (the defaults {', '.join(KAFKA_PK_NAMES)}) or "
                          f"exactly 3 names (topic, partition and offset columns), got {len(pk_fields)}: "
                          f"{', '.join(pk_fields)}", connector=name, key="pk.fields")
    if len(set(pk_fields)) != len(pk_fields):
        raise ConfigError("names a field twice", connector=name, key="pk.fields")
    if pk_mode == "record_key" and not cfg["key.converter.schemas.enable"]:
        raise ConfigError("must be true with pk.mode 'record_key': the key's schema gives the key columns' types",
                          connector=name, key="key.converter.schemas.enable")
    _check_names(cfg)


def regex_topics(cfg: ConnectorConfig, names: list[str]) -> list[str]:
    """The topics among ``names`` (the cluster's) that ``topics.regex`` matches whole, never an
    internal topic nor, with errors.tolerance=all, the sink's own dead letters."""
    if cfg["topics"]:
        return list(cfg["topics"])
    from airconnect.core.deadletters import dead_letter_topic, tolerates  # (it imports the Kafka client)

    pattern = re.compile(cfg["topics.regex"])
    found = sorted(t for t in names if pattern.fullmatch(t) and not t.startswith("__"))
    dlqs = {dead_letter_topic(cfg, t) for t in found} if tolerates(cfg) else set()
    return [t for t in found if t not in dlqs]


def _kept_offsets(config: ConnectorConfig, connect: Any = None, **_: Any) -> Any:
    from airconnect.connectors.jdbc_sink.offsets import DatabaseOffsets

    return DatabaseOffsets(config, connect)


def table_name(fmt: str, topic: str) -> str:
    """``table.name.format`` with ``${topic}`` replaced (Confluent's rule: nothing else changes)."""
    return fmt.replace(TOPIC_PLACEHOLDER, topic)


JDBC_SINK = ConnectorClass(
    name="airconnect.JdbcSink",
    kind="sink",
    aliases=("io.confluent.connect.jdbc.JdbcSinkConnector", "JdbcSinkConnector", "JdbcSink"),
    keys=(
        Key("topics", "list", [], "Comma-separated topics to write into tables (or topics.regex)."),
        Key("topics.regex", "string", "", "A pattern: every topic whose whole name matches it, as of the run's start.",
            check=_check_regex),
        Key("db.conn.id", "string", doc="The Airflow Connection of the target database (type postgres or mysql)."),
        Key("connection.url", "string", "", "Kafka Connect's JDBC URL; airconnect uses db.conn.id instead."),
        Key("insert.mode", "string", "insert", "INSERT, upsert (insert or replace by primary key) or UPDATE.",
            choices=INSERT_MODES),
        Key("pk.mode", "string", "none", "Where the primary key comes from: none, the Kafka coordinates, the "
            "record key or the record value.", choices=PK_MODES),
        Key("pk.fields", "names", [], "The key's fields (record_key/record_value: default all of the struct's; "
            "kafka: the three column names; a primitive key: its one column name)."),
        Key("fields.whitelist", "names", [], "The value fields written besides the key (default: all)."),
        Key("table.name.format", "string", TOPIC_PLACEHOLDER, "The table of a topic; ${topic} stands for the topic's "
            "name (schema.table allowed)."),
        Key("auto.create", "bool", False, "CREATE TABLE from the record schema when the table is missing."),
        Key("auto.evolve", "bool", False, "ALTER TABLE ADD COLUMN for a record field the table lacks."),
        Key("delete.enabled", "bool", False, "A record without a value (tombstone) deletes its key's row "
            "(pk.mode record_key)."),
        Key("batch.size", "int", 3000, "Rows per multi-row statement.", minimum=1),
        Key("db.timezone", "string", "UTC", "Zone of TIMESTAMP/DATETIME columns without a time zone.",
            check=check_timezone),
        Key("checkpoint.records", "int", 100000, "airconnect: records per database transaction (rows and offsets "
            "committed together).", minimum=1),
    ),
    doc="Writes struct records into database tables (insert, upsert, update, delete), exactly once: the offsets "
        "are committed in the rows' transaction.",
    check=_check,
    runner=lambda config, store, kafka, connect=None: _sink()(config, store, kafka, connect),
    topics=lambda config: list(config["topics"]),
    resources=("connect",),
    title="a JDBC sink",
    kept_offsets=_kept_offsets,
    topics_in=regex_topics,
    splits_partitions=True,
)


def _sink() -> Any:
    from airconnect.connectors.jdbc_sink.sink import JdbcSink  # the runner's module imports this one

    return JdbcSink

