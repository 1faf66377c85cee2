"""The change data capture sources' specs: Debezium's class names and keys, airconnect's
database connection (``db.conn.id``), refusals that name the key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from airconnect.core.config import ConnectorClass, ConnectorConfig, Key
from airconnect.core.errors import ConfigError
from airconnect.core.offsets import only_keys, whole_number

#: Debezium's own connection keys: airconnect takes the database from an Airflow Connection.
CONNECTION_KEYS: Final = ("database.hostname", "database.port", "database.user", "database.password",
                          "database.dbname")
SNAPSHOT_MODES: Final = ("initial", "no_data", "never")


def _regexes(value: str) -> str | None:
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            re.compile(item)
        except re.error as exc:
            return f"a comma-separated list of regular expressions ({item!r}: {exc})"
    return None


def include_list(value: str) -> list[re.Pattern[str]]:
    """Debezium's include lists: comma-separated regular expressions, each matching a whole name."""
    return [re.compile(item.strip()) for item in value.split(",") if item.strip()]


def included(patterns: list[re.Pattern[str]], name: str) -> bool:
    return not patterns or any(p.fullmatch(name) for p in patterns)


def _common_keys(doc_tables: str, time_modes: tuple[str, ...] = ("adaptive",)) -> tuple[Key, ...]:
    return (
        Key("db.conn.id", "string", doc="airconnect: the Airflow Connection of the database (Debezium's "
            "database.hostname/port/user/password/dbname)."),
        Key("topic.prefix", "topic", doc="Topics are <topic.prefix>.<schema or database>.<table>, as Debezium names them."),
        Key("table.include.list", "string", "", doc_tables, check=_regexes),
        Key("snapshot.mode", "string", "initial", "initial: the tables' rows (op 'r') consistent with the log's "
            "position, then the changes; no_data (or never): the changes only, from the position at the first run.",
            choices=SNAPSHOT_MODES),
        Key("tombstones.on.delete", "bool", True, "A record with a null value after each delete (log compaction)."),
        Key("decimal.handling.mode", "string", "precise", "DECIMAL/NUMERIC as Connect's Decimal (bytes), a double, "
            "or a string.", choices=("precise", "double", "string")),
        Key("time.precision.mode", "string", time_modes[0], "Temporal types as Debezium's default mode "
            "(io.debezium.time.*).", choices=time_modes),
        Key("poll.interval.ms", "int", 5000, "How often the log is read: the run interval of a connector created at "
            "runtime (its DAG connector_<name>); a file-defined one runs on its DAG's schedule.", minimum=1000),
        Key("max.batch.size", "int", 20000, "Changes per Kafka transaction at most (a transaction is never split: "
            "one larger than this is one batch).", minimum=1),
        *(Key(k, "string", "", "Debezium's connection key; airconnect uses db.conn.id.") for k in CONNECTION_KEYS),
    )


def _check_common(cfg: ConnectorConfig) -> None:
    if cfg["tasks.max"] != 1:
        raise ConfigError("must be 1: a CDC source reads one log in its order (Debezium's connectors run one task "
                          "too)", connector=cfg.name, key="tasks.max")
    for key in CONNECTION_KEYS:
        if cfg[key]:
            raise ConfigError("is not used: airconnect reads the database address and credentials from an Airflow "
                              "Connection; name it with 'db.conn.id'", connector=cfg.name, key=key)
    if cfg["errors.tolerance"] != "none":
        raise ConfigError("must be 'none': a change that cannot be converted stops the run at that change "
                          "(the position stays before it)", connector=cfg.name, key="errors.tolerance")
    if cfg["value.converter"] != "org.apache.kafka.connect.json.JsonConverter":
        raise ConfigError("must be JsonConverter: change events are structs", connector=cfg.name, key="value.converter")


def _check_postgres(cfg: ConnectorConfig) -> None:
    _check_common(cfg)
    if cfg["plugin.name"] != "wal2json":
        raise ConfigError(f"{cfg['plugin.name']!r} is not supported: airconnect decodes the log with wal2json "
                          "(format-version 2; Debian's postgresql-<version>-wal2json); set plugin.name=wal2json. "
                          "Its slot is its own: a Debezium slot (pgoutput) is never read by airconnect",
                          connector=cfg.name, key="plugin.name")
    if not re.fullmatch(r"[a-z0-9_]{1,63}", cfg["slot.name"]):
        raise ConfigError("expected a replication slot name: lower-case letters, digits and '_', at most 63",
                          connector=cfg.name, key="slot.name")


def _check_mariadb(cfg: ConnectorConfig) -> None:
    _check_common(cfg)
    if cfg["include.schema.changes"]:
        raise ConfigError("must be false: airconnect does not write a schema change topic (each record carries "
                          "its table's schema)", connector=cfg.name, key="include.schema.changes")


def _topics(config: ConnectorConfig) -> list[str]:
    """The topics of the tables ``table.include.list`` names literally (``public\\.sales``); a
    pattern's tables are known only to the database (the run's result lists every topic written)."""
    out = []
    for item in config["table.include.list"].split(","):
        name = item.strip().replace("\\.", ".")
        if re.fullmatch(r"[A-Za-z0-9_$-]+\.[A-Za-z0-9_$-]+", name):
            out.append(re.sub(r"[^A-Za-z0-9._-]", "_", f"{config['topic.prefix']}.{name}"))
    return out


def _check_offset(partition: Mapping[str, Any], offset: Mapping[str, Any] | None, what: str) -> str | None:
    if set(partition) != {"server"}:
        return f"has a partition {dict(partition)!r}; a {what}'s is {{'server': topic.prefix}}"
    problem = only_keys(partition, {"server"}, "partition")
    if problem is None and offset is not None and "lsn" in offset:
        problem = whole_number(offset, "lsn")
    return problem


def _pg_runner() -> Any:
    from airconnect.connectors.cdc.postgres import PostgresCdcSource

    return PostgresCdcSource


def _maria_runner() -> Any:
    from airconnect.connectors.cdc.mariadb import MariaDbCdcSource

    return MariaDbCdcSource


POSTGRES_CDC: Final = ConnectorClass(
    name="airconnect.PostgresCdcSource",
    kind="source",
    aliases=("io.debezium.connector.postgresql.PostgresConnector", "PostgresConnector"),
    keys=(
        *_common_keys("Tables to capture (schema.table), comma-separated regular expressions matching whole "
                      "names; empty: every table outside the system schemas."),
        Key("slot.name", "string", "debezium", "The logical replication slot (one per connector)."),
        Key("plugin.name", "string", "wal2json", "The logical decoding output plugin: wal2json."),
    ),
    doc="Reads PostgreSQL's changes (logical decoding through a replication slot) as Debezium's change events.",
    check=_check_postgres,
    runner=lambda config, store, kafka, connect=None, db_params=None: _pg_runner()(config, store, kafka, connect,
                                                                                    db_params),
    topics=_topics,
    resources=("connect", "db_params"),
    check_offset=lambda config, partition, offset: _check_offset(partition, offset, "PostgreSQL CDC source"),
    offset_partition=("server",),
    title="a PostgreSQL CDC source",
)

MARIADB_CDC: Final = ConnectorClass(
    name="airconnect.MariaDbCdcSource",
    kind="source",
    aliases=("io.debezium.connector.mariadb.MariaDbConnector", "io.debezium.connector.mysql.MySqlConnector",
             "MariaDbConnector", "MySqlConnector"),
    keys=(
        *_common_keys("Tables to capture (database.table), comma-separated regular expressions matching whole "
                      "names; empty: every table of the included databases.", ("adaptive_time_microseconds",)),
        Key("database.include.list", "string", "", "Databases to capture, comma-separated regular expressions; "
            "empty: the Connection's database.", check=_regexes),
        Key("database.server.id", "int", 184054, "The replica server id the binlog reader announces (unique among "
            "the server's replicas).", minimum=1),
        Key("include.schema.changes", "bool", False, "Debezium's schema change topic: not written by airconnect."),
    ),
    doc="Reads MariaDB's row-based binlog from a GTID position as Debezium's change events.",
    check=_check_mariadb,
    runner=lambda config, store, kafka, connect=None, db_params=None: _maria_runner()(config, store, kafka, connect,
                                                                                       db_params),
    topics=_topics,
    resources=("connect", "db_params"),
    check_offset=lambda config, partition, offset: _check_offset(partition, offset, "MariaDB CDC source"),
    offset_partition=("server",),
    title="a MariaDB CDC source",
)
