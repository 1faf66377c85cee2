"""Connector definitions' building blocks: keys declared once, values checked early, errors that
name the key. (The list of connector classes, and validating a whole definition against it, is
:mod:`airconnect.core.registry`: this module imports no connector.)

A definition is what a Kafka Connect user posts to ``POST /connectors``::

    {"name": "load-zaiko-data",
     "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "file": "/zaiko/latest.txt", "topic": "zaiko-data"}}

Each connector class declares its keys as a tuple of :class:`Key` (like Kafka's ``ConfigDef``);
:func:`airconnect.core.registry.validate` turns the raw, string-valued map into typed values or raises
:class:`~airconnect.core.errors.ConfigError` naming the connector, the key and what was expected.

String values may use Kafka Connect's environment config provider syntax, ``${env:NAME}``.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

from airconnect.core.errors import ConfigError

REQUIRED: Final = object()

#: Where relative file paths in definitions are resolved (the local stack's data folder).
DATA_DIR_ENV: Final = "AIRCONNECT_DATA_DIR"
#: Where the DAGs look for definitions.
CONNECTORS_DIR_ENV: Final = "AIRCONNECT_CONNECTORS_DIR"

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and documentation."""

    name: str
    type: str  # "string" | "int" | "bool" | "list" | "path" | "paths" | "topic"
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    check: Callable[[Any], str | None] | None = None  # returns what was expected, or None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def check_timezone(value: str) -> str | None:
    """A Key check: an IANA time zone name."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone name such as 'UTC' or 'Asia/Tokyo'"
    return None


def not_a_directory(path: str) -> str | None:
    """A Key check for a file a connector reads or writes: it may not exist yet, but it is no folder."""
    return "a file, but it is a directory" if os.path.isdir(path) else None


def expected(key: Key) -> str:
    if key.choices:
        return "one of " + ", ".join(repr(c) for c in key.choices)
    return {
        "string": "a non-empty string",
        "int": "an integer" + (f" >= {key.minimum}" if key.minimum is not None else ""),
        "bool": "true or false",
        "list": "a comma-separated list of names",
        "names": "a comma-separated list of database names (schema.table allowed; not empty, no NUL byte)",
        "path": "a file path",
        "paths": "a file path, or a comma-separated list of file paths and glob patterns",
        "topic": "a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)",
    }[key.type]


_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _resolve(value: str) -> str:
    """A path of a definition, absolute: ``~`` expanded, a relative one under :func:`data_dir`."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = data_dir() / path
    return str(path)


def coerce(key: Key, raw: Any, connector: str) -> Any:
    def bad(extra: str = "") -> ConfigError:
        return ConfigError(f"expected {expected(key)}, got {raw!r}{extra}", connector=connector, key=key.name)

    if key.type in ("string", "path", "paths", "topic"):
        if not isinstance(raw, str) or not raw.strip():
            raise bad()
        value: Any = raw.strip()
        if key.type == "topic" and (not _TOPIC_RE.match(value) or value in (".", "..")):
            raise bad()
        if key.type == "path":
            value = _resolve(value)
        if key.type == "paths":  # each entry resolved as a "path"; still one string, comma-separated
            value = ",".join(_resolve(entry.strip()) for entry in value.split(",") if entry.strip())
            if not value:
                raise bad()
    elif key.type == "int":
        if isinstance(raw, bool):
            raise bad()
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise bad() from None
        if key.minimum is not None and value < key.minimum:
            raise bad()
    elif key.type == "bool":
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        else:
            raise bad()
    elif key.type == "list":
        items = raw if isinstance(raw, list) else str(raw).split(",")
        value = [str(i).strip() for i in items if str(i).strip()]
        if not value:
            raise bad()
        for item in value:
            if not _TOPIC_RE.match(item):
                raise bad(f" ({item!r} is not a valid name)")
    elif key.type == "names":
        # Database identifiers (tables, columns): any text a quoted identifier can hold, so
        # '売上', 'sales$2018' and 'Sales Table' are names; the connector quotes them. A dot
        # separates schema and table.
        items = raw if isinstance(raw, list) else str(raw).split(",")
        value = [str(i).strip() for i in items if str(i).strip()]
        if not value:
            raise bad()
        for item in value:
            if "\x00" in item or not all(part.strip() for part in item.split(".")):
                raise bad(f" ({item!r} is not a name: it has a NUL byte or an empty part between dots)")
    else:  # pragma: no cover - a programming error in a Key declaration
        raise AssertionError(key.type)
    if key.choices and value not in key.choices:
        raise bad()
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"expected {problem}, got {raw!r}", connector=connector, key=key.name)
    return value


# Keys every Kafka Connect connector accepts (worker-level converters, error handling, ...).
# airconnect honours the ones it implements and rejects values it cannot honour.
JSON_CONVERTER: Final = "org.apache.kafka.connect.json.JsonConverter"
STRING_CONVERTER: Final = "org.apache.kafka.connect.storage.StringConverter"
CONVERTERS: Final = (JSON_CONVERTER, STRING_CONVERTER)

COMMON_KEYS: Final[tuple[Key, ...]] = (
    Key("connector.class", "string", doc="The connector's class: Kafka Connect's name or airconnect's."),
    Key("tasks.max", "int", 1, "Kafka Connect's task count: the connector's work (tables, files, topic-partitions) split "
        "into at most this many Airflow tasks (mapped), which Airflow's executor spreads over its workers.", minimum=1),
    Key("airflow.max.active.tasks", "int", 0, "airconnect: at most this many of the connector's tasks run at once in "
        "a DAG run (Airflow's max_active_tis_per_dagrun; 0: no limit but tasks.max).", minimum=0),
    Key("airflow.pool", "string", "default_pool", "airconnect: the Airflow pool the connector's tasks take their slots "
        "from (a pool shared by connectors bounds them together)."),
    Key("key.converter", "string", JSON_CONVERTER, "How record keys are written: JSON (the JDBC source's key struct).",
        choices=(JSON_CONVERTER,)),
    Key("value.converter", "string", JSON_CONVERTER, "How record values are written.", choices=CONVERTERS),
    Key("key.converter.schemas.enable", "bool", True, "JsonConverter: wrap keys in a schema envelope."),
    Key("value.converter.schemas.enable", "bool", True, "JsonConverter: wrap values in a schema envelope."),
    Key("header.converter", "string", STRING_CONVERTER, "How headers are written: strings (dead letters' context).",
        choices=(STRING_CONVERTER,)),
    Key("errors.tolerance", "string", "none", "What a malformed record does: stop the run, or go to the dead-letter topic.",
        choices=("none", "all")),
    Key("errors.deadletterqueue.topic.name", "string", "", "Dead-letter topic (default <topic>.dlq when errors.tolerance=all)."),
    Key("errors.log.enable", "bool", False, "Log each tolerated error."),
    Key("errors.log.include.messages", "bool", False, "Include the record in the error log."),
    Key("errors.deadletterqueue.context.headers.enable", "bool", True, "Add the error context as headers to dead letters."),
    Key("errors.deadletterqueue.topic.replication.factor", "int", -1, "Replication factor of the dead-letter topic (-1: broker default)."),
    Key("kafka.conn.id", "string", "kafka_default", "airconnect: the Airflow Connection that points at Kafka."),
)


class KeptOffsets(Protocol):
    """Offsets a class keeps outside the Airflow Variable, authoritative over it at its start (a JDBC
    sink's, in its target database, committed with its rows): what KIP-875's read, reset and alter
    act on, in Kafka Connect's shape (``({"kafka_topic", "kafka_partition"}, {"kafka_offset"})``)."""

    def read(self) -> list[tuple[dict[str, Any], dict[str, Any]]]: ...

    def reset(self, first: Callable[[], object]) -> None:
        """Remove them; ``first`` (the Variable's and the group's reset) runs before, while no run
        of the connector can start (its lock held)."""
        ...

    def alter(self, pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
              first: Callable[[], object]) -> None:
        """Set the listed partitions' offsets (``None``: remove); ``first`` as for :meth:`reset`."""
        ...

    def holds(self) -> list[str]:
        """What already holds the records a reset would deliver again, to the same effect as
        ``ConnectorClass.holds`` (a JDBC sink's non-empty tables in insert mode)."""
        ...


@dataclass(frozen=True)
class ConnectorClass:
    """A connector's spec: everything about its class, in one place (what Kafka Connect spreads
    over ``ConfigDef``, ``Connector.taskConfigs`` and ``alterOffsets``). The CLI, the REST API,
    ``manage`` and the DAGs ask the spec; none of them tests a class name."""

    name: str  # airconnect's own class name
    kind: str  # "source" | "sink"
    keys: tuple[Key, ...]
    #: Builds what runs one pass: ``runner(config, store, kafka, **resources)``, with ``.run()``.
    runner: Callable[..., Any]
    #: The topics a connector of this class writes (a source) or reads (a sink).
    topics: Callable[[ConnectorConfig], list[str]]
    aliases: tuple[str, ...] = ()
    doc: str = ""
    #: Checks across keys (e.g. a mode that needs a column); raises ConfigError.
    check: Callable[[ConnectorConfig], None] | None = None
    #: What it needs besides Kafka and the offset store, by name (the Airflow glue provides them):
    #: ``"connect"`` (a DB-API connection factory), ``"s3_client"`` (boto3).
    resources: tuple[str, ...] = ()
    #: Its own offset partitions (a file, a table): checks one ``(partition, offset)`` of a KIP-875
    #: alter request, returning what is wrong or ``None``; ``None`` here: it has none (a sink's
    #: Kafka partitions are checked for every sink alike).
    check_offset: Callable[[ConnectorConfig, Mapping[str, Any], Mapping[str, Any] | None], str | None] | None = None
    #: The keys of its own offset partitions (``("filename",)``, ``("table", "query")``) and what to
    #: call the class in a message ("a JDBC source"): an alter request with another class's
    #: partitions is told whose they are.
    offset_partition: tuple[str, ...] = ()
    title: str = ""
    #: Besides its topics, what holds records that a reset of its offsets would deliver again
    #: (a file sink's file), for the reset's guard.
    holds: Callable[[ConnectorConfig], list[str]] | None = None
    #: Kafka Connect's ``taskConfigs``: the work split into at most ``max_tasks`` disjoint groups.
    task_configs: Callable[[ConnectorConfig, int], list[dict[str, Any]]] | None = None
    #: A sink whose runner honours a task's share of its topic-partitions (``task["partitions"]``):
    #: its work is split among ``tasks.max`` tasks like a consumer group's (see ``core/split.py``).
    splits_partitions: bool = False
    #: Offsets kept outside the Variable (see :class:`KeptOffsets`): ``kept_offsets(config, **resources)``,
    #: given the class's ``resources``; ``manage`` shows, resets and alters them with the Variable's.
    kept_offsets: Callable[..., KeptOffsets] | None = None
    #: Its topics are a pattern's (``topics.regex``): ``topics_in(config, names)`` picks them from the
    #: cluster's topic ``names``.
    topics_in: Callable[[ConnectorConfig, list[str]], list[str]] | None = None

    def split(self, config: ConnectorConfig, max_tasks: int) -> list[dict[str, Any]]:
        """The connector's tasks (one, unless the class splits its work)."""
        return self.task_configs(config, max_tasks) if self.task_configs is not None else [{}]

    def all_keys(self) -> dict[str, Key]:
        keys = {k.name: k for k in COMMON_KEYS}
        keys.update({k.name: k for k in self.keys})
        return keys


def _check_partitions(value: int) -> str | None:
    return None if value == -1 or value >= 1 else "an integer >= 1, or -1 (the broker's num.partitions)"


def _check_replication(value: int) -> str | None:
    return None if value == -1 or value >= 1 else "an integer >= 1, or -1 (the broker's default.replication.factor)"


#: KIP-158's topic creation keys, for sources (the worker's ``topic.creation.enable`` is implied):
#: how the topics a source creates are made. ``topic.creation.groups`` is not supported.
TOPIC_CREATION_KEYS: Final[tuple[Key, ...]] = (
    Key("topic.creation.default.partitions", "int", 1, "Partitions of the topics the source creates (-1: the "
        "broker's num.partitions); records are keyed, so a key's records stay in order in one partition.",
        check=_check_partitions),
    Key("topic.creation.default.replication.factor", "int", -1, "Replication factor of the topics the source "
        "creates (-1: the broker's default.replication.factor).", check=_check_replication),
)


def new_topic_settings(cfg: ConnectorConfig) -> dict[str, int]:
    """How a source's new topics are made (KIP-158 keys; 1 partition, the broker's replication if it has none)."""
    return {"partitions": cfg.values.get("topic.creation.default.partitions", 1),
            "replication_factor": cfg.values.get("topic.creation.default.replication.factor", -1)}


def one_task(cfg: ConnectorConfig) -> None:
    """File connectors read or write one local file: exactly one task, as in Kafka Connect."""
    if cfg["tasks.max"] != 1:
        raise ConfigError("must be 1: a local file is read or written by one task (as in Kafka Connect)",
                          connector=cfg.name, key="tasks.max")


@dataclass(frozen=True)
class ConnectorConfig:
    """A validated definition: typed values for every declared key."""

    name: str
    cls: ConnectorClass
    values: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False)
    #: Its single message transforms (an ``airconnect.transforms.Chain``), or ``None``: the
    #: runtime applies them to every record (see ``airconnect.core.delivery``).
    transforms: Any = field(default=None, repr=False, compare=False)

    #: One task's share of the work (Kafka Connect's task config, from :func:`airconnect.core.split.task_configs`):
    #: ``{"task": i, "tables": [...]}``, ``{"task": i, "partitions": [[topic, p], ...]}``;
    #: ``None``: all of it (one task).
    task: Mapping[str, Any] | None = field(default=None, compare=False)

    def for_task(self, task: Mapping[str, Any] | None) -> ConnectorConfig:
        """This definition, run as one of its tasks (``None``: all of the work)."""
        return replace(self, task=dict(task) if task is not None else None)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def kind(self) -> str:
        return self.cls.kind

    @property
    def topics(self) -> list[str]:
        """The topics it writes (a source) or reads (a sink)."""
        return self.cls.topics(self)

    def definition(self) -> dict[str, Any]:
        """The definition as Kafka Connect's REST API shows it (string values, name included)."""
        return {"name": self.name, "config": {**{k: _to_str(v) for k, v in self.raw.items()}, "name": self.name}}


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute_env(value: Any, connector: str, key: str) -> Any:
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(
                f"refers to the environment variable {var!r} (${{env:{var}}}), which is not set",
                connector=connector, key=key,
            )
        return os.environ[var]

    return _ENV_REF.sub(repl, value)


def project_dir() -> Path:
    """The deployment's project folder: the one that holds Airflow's DAGs folder
    (``$AIRFLOW__CORE__DAGS_FOLDER``, else ``$AIRFLOW_HOME/dags``, else ``~/airflow/dags``), where
    an Airflow project keeps ``include/`` beside ``dags/``. Never where this package is installed."""
    dags = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if dags:
        return Path(dags).expanduser().resolve().parent
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser().resolve()


def data_dir() -> Path:
    """Where relative paths in definitions point: ``$AIRCONNECT_DATA_DIR``, else ``data/`` of the project."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else project_dir() / "data"


def default_connectors_dir() -> Path:
    """``$AIRCONNECT_CONNECTORS_DIR``'s default: ``include/connectors`` of the project (beside ``dags/``)."""
    return project_dir() / "include" / "connectors"
