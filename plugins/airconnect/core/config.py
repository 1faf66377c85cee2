"""Connector definitions: declared once, validated early, errors that name the key.

A definition is what a Kafka Connect user posts to ``POST /connectors``::

    {"name": "load-zaiko-data",
     "config": {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "file": "/zaiko/latest.txt", "topic": "zaiko-data"}}

Each connector class declares its keys as a tuple of :class:`Key` (like Kafka's ``ConfigDef``);
:func:`validate` turns the raw, string-valued map into typed values or raises
:class:`~airconnect.core.errors.ConfigError` naming the connector, the key and what was expected.

String values may use Kafka Connect's environment config provider syntax, ``${env:NAME}``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from airconnect.core.errors import ConfigError, InvalidDefinitions

REQUIRED: Final = object()

#: Where relative file paths in definitions are resolved (the local stack's data folder).
DATA_DIR_ENV: Final = "AIRCONNECT_DATA_DIR"
#: Where the DAGs look for definitions.
CONNECTORS_DIR_ENV: Final = "AIRCONNECT_CONNECTORS_DIR"

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and documentation."""

    name: str
    type: str  # "string" | "int" | "bool" | "list" | "path" | "topic"
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


def _expected(key: Key) -> str:
    if key.choices:
        return "one of " + ", ".join(repr(c) for c in key.choices)
    return {
        "string": "a non-empty string",
        "int": "an integer" + (f" >= {key.minimum}" if key.minimum is not None else ""),
        "bool": "true or false",
        "list": "a comma-separated list of names",
        "names": "a comma-separated list of database names (schema.table allowed; not empty, no NUL byte)",
        "path": "a file path",
        "topic": "a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)",
    }[key.type]


_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _coerce(key: Key, raw: Any, connector: str) -> Any:
    def bad(extra: str = "") -> ConfigError:
        return ConfigError(f"expected {_expected(key)}, got {raw!r}{extra}", connector=connector, key=key.name)

    if key.type in ("string", "path", "topic"):
        if not isinstance(raw, str) or not raw.strip():
            raise bad()
        value: Any = raw.strip()
        if key.type == "topic" and (not _TOPIC_RE.match(value) or value in (".", "..")):
            raise bad()
        if key.type == "path":
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = data_dir() / path
            value = str(path)
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
    Key("tasks.max", "int", 1, "Kafka Connect's task count; each airconnect connector runs as one task.", minimum=1),
    Key("key.converter", "string", JSON_CONVERTER, "How record keys are written.", choices=CONVERTERS),
    Key("value.converter", "string", JSON_CONVERTER, "How record values are written.", choices=CONVERTERS),
    Key("key.converter.schemas.enable", "bool", True, "JsonConverter: wrap keys in a schema envelope."),
    Key("value.converter.schemas.enable", "bool", True, "JsonConverter: wrap values in a schema envelope."),
    Key("header.converter", "string", STRING_CONVERTER, "Accepted for compatibility; headers are strings."),
    Key("errors.tolerance", "string", "none", "What a malformed record does: stop the run, or go to the dead-letter topic.",
        choices=("none", "all")),
    Key("errors.deadletterqueue.topic.name", "string", "", "Dead-letter topic (default <topic>.dlq when errors.tolerance=all)."),
    Key("errors.log.enable", "bool", False, "Log each tolerated error."),
    Key("errors.log.include.messages", "bool", False, "Include the record in the error log."),
    Key("errors.deadletterqueue.context.headers.enable", "bool", True, "Add the error context as headers to dead letters."),
    Key("errors.deadletterqueue.topic.replication.factor", "int", -1, "Replication factor of the dead-letter topic (-1: broker default)."),
    Key("kafka.conn.id", "string", "kafka_default", "airconnect: the Airflow Connection that points at Kafka."),
)


@dataclass(frozen=True)
class ConnectorClass:
    """A kind of connector: its names, its direction and the keys it declares."""

    name: str  # airconnect's own class name
    kind: str  # "source" | "sink"
    keys: tuple[Key, ...]
    aliases: tuple[str, ...] = ()
    doc: str = ""
    #: Checks across keys (e.g. a mode that needs a column); raises ConfigError.
    check: Callable[[ConnectorConfig], None] | None = None

    def all_keys(self) -> dict[str, Key]:
        keys = {k.name: k for k in COMMON_KEYS}
        keys.update({k.name: k for k in self.keys})
        return keys


def one_task(cfg: ConnectorConfig) -> None:
    """File connectors read or write one local file: exactly one task, as in Kafka Connect."""
    if cfg["tasks.max"] != 1:
        raise ConfigError("must be 1: a local file is read or written by one task (as in Kafka Connect)",
                          connector=cfg.name, key="tasks.max")


_REGISTRY: dict[str, ConnectorClass] = {}


def register(cls: ConnectorClass) -> ConnectorClass:
    for name in (cls.name, *cls.aliases):
        _REGISTRY[name] = cls
    return cls


def connector_classes() -> list[ConnectorClass]:
    """Every registered connector class, once each."""
    _load_builtin_classes()
    seen: dict[str, ConnectorClass] = {}
    for cls in _REGISTRY.values():
        seen.setdefault(cls.name, cls)
    return sorted(seen.values(), key=lambda c: c.name)


def _load_builtin_classes() -> None:
    # The connector modules register their classes when imported; they are Airflow-free.
    from airconnect.core import file_sink, file_source, jdbc_source  # noqa: F401
    try:
        from airconnect.core import s3_sink  # noqa: F401
    except ImportError:  # pragma: no cover - while the S3 sink is being written
        pass


def lookup_class(class_name: str, connector: str) -> ConnectorClass:
    _load_builtin_classes()
    cls = _REGISTRY.get(class_name)
    if cls is None:
        known = sorted({c.name for c in _REGISTRY.values()} | set(_REGISTRY))
        hint = difflib.get_close_matches(class_name, known, n=1)
        raise ConfigError(
            f"unknown connector class {class_name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + "; known classes: " + ", ".join(sorted({c.name for c in _REGISTRY.values()})),
            connector=connector,
            key="connector.class",
        )
    return cls


@dataclass(frozen=True)
class ConnectorConfig:
    """A validated definition: typed values for every declared key."""

    name: str
    cls: ConnectorClass
    values: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def kind(self) -> str:
        return self.cls.kind

    def definition(self) -> dict[str, Any]:
        """The definition as Kafka Connect's REST API shows it (string values, name included)."""
        return {"name": self.name, "config": {**{k: _to_str(v) for k, v in self.raw.items()}, "name": self.name}}


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _substitute_env(value: Any, connector: str, key: str) -> Any:
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


def validate(definition: Mapping[str, Any], *, source: str | None = None) -> ConnectorConfig:
    """Validate one definition, in REST ``POST /connectors`` shape or flat ``config`` shape.

    Every problem of the definition is reported at once: one :class:`ConfigError` (naming the
    connector and the key), or :class:`InvalidDefinitions` listing each when there are several.
    """
    where = f" (in {source})" if source else ""
    if not isinstance(definition, Mapping):
        raise ConfigError(f"a connector definition must be a JSON object{where}, got {type(definition).__name__}")
    if "config" in definition:
        unknown_top = set(definition) - {"name", "config"}
        if unknown_top:
            raise ConfigError(
                f"unexpected top-level key(s) {sorted(unknown_top)}{where}; expected only 'name' and 'config'",
                connector=str(definition.get("name") or "?"),
            )
        config = definition["config"]
        if not isinstance(config, Mapping):
            raise ConfigError(f"'config' must be a JSON object{where}", connector=str(definition.get("name") or "?"))
        name = definition.get("name", config.get("name"))
    else:
        config = definition
        name = definition.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"every connector needs a 'name': letters, digits, '.', '_' or '-', at most 200 characters; got {name!r}{where}"
        )
    if "config" in definition and config.get("name") not in (None, name):
        raise ConfigError(f"'name' is {name!r} but config.name is {config.get('name')!r}{where}", connector=name, key="name")
    raw = {k: v for k, v in config.items() if k != "name"}
    class_name = raw.get("connector.class")
    if not isinstance(class_name, str) or not class_name.strip():
        raise ConfigError(f"is required{where}: the connector's class, e.g. "
                          "'org.apache.kafka.connect.file.FileStreamSourceConnector'", connector=name, key="connector.class")
    cls = lookup_class(class_name.strip(), name)
    keys = cls.all_keys()
    errors: list[ConfigError] = []
    for k in raw:
        if k not in keys and not k.startswith(("transforms", "predicates", "consumer.override.", "producer.override.")):
            hint = difflib.get_close_matches(k, list(keys), n=1)
            errors.append(ConfigError(
                f"is not a key of {cls.name}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + where
                + "; its keys are: " + ", ".join(sorted(keys)),
                connector=name, key=k,
            ))
    if raw.get("transforms"):
        errors.append(ConfigError("single message transforms are not supported by airconnect yet",
                                  connector=name, key="transforms"))
    values: dict[str, Any] = {}
    for key in keys.values():
        try:
            if key.name in raw and raw[key.name] is not None and raw[key.name] != "":
                values[key.name] = _coerce(key, _substitute_env(raw[key.name], name, key.name), name)
            elif key.required:
                raise ConfigError(f"is required{where}: {key.doc or _expected(key)}", connector=name, key=key.name)
            else:
                values[key.name] = key.default
        except ConfigError as exc:
            errors.append(exc)
    if not errors:
        values["connector.class"] = cls.name
        overrides = {k: v for k, v in raw.items() if k.startswith(("consumer.override.", "producer.override."))}
        values.update(overrides)
        result = ConnectorConfig(name=name, cls=cls, values=values, raw=dict(raw))
        if cls.check is None:
            return result
        try:
            cls.check(result)  # checks across keys, once each key is valid on its own
            return result
        except ConfigError as exc:
            errors.append(exc)
    for problem in errors:
        problem.connector_class = cls.name
    error = errors[0] if len(errors) == 1 else InvalidDefinitions(errors, connector=name)
    error.connector_class = cls.name
    raise error


@dataclass(frozen=True)
class Definitions:
    """A folder's definitions: the valid ones, and an error for each invalid one (all of them)."""

    configs: tuple[ConnectorConfig, ...]
    errors: tuple[ConfigError, ...]

    def by_name(self) -> dict[str, ConnectorConfig]:
        return {c.name: c for c in self.configs}

    def error_of(self, name: str) -> ConfigError | None:
        return next((e for e in self.errors if e.connector == name), None)

    def using(self, *classes: ConnectorClass) -> list[ConnectorConfig]:
        """The valid definitions of ``classes``; raises :class:`InvalidDefinitions` (every one) if a
        definition of those classes is invalid. A DAG calls it for the classes it runs, so a bad
        definition breaks only the DAGs that would run it."""
        names = {c.name for c in classes}
        bad = [e for e in self.errors if e.connector_class in names]
        if bad:
            raise bad[0] if len(bad) == 1 else InvalidDefinitions(bad)
        return [c for c in self.configs if c.cls.name in names]

    def raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0] if len(self.errors) == 1 else InvalidDefinitions(list(self.errors))


def read_definitions(directory: str | os.PathLike[str] | None = None) -> Definitions:
    """Read and validate every ``*.json`` definition in a folder (default ``$AIRCONNECT_CONNECTORS_DIR``).

    A file holds one definition or a JSON list of them. Nothing stops at the first problem: every
    invalid file and definition gets its error (naming the file, the connector and the key).
    """
    folder = Path(directory or os.environ.get(CONNECTORS_DIR_ENV) or default_connectors_dir())
    if not folder.is_dir():
        raise ConfigError(f"the connector definitions folder {str(folder)!r} does not exist (set {CONNECTORS_DIR_ENV})")
    found: dict[str, ConnectorConfig] = {}
    errors: list[ConfigError] = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            error = ConfigError(f"{path} is not valid JSON: {exc}")
            error.source = str(path)
            errors.append(error)
            continue
        for item in doc if isinstance(doc, list) else [doc]:
            try:
                cfg = validate(item, source=str(path))
                if cfg.name in found:
                    raise ConfigError(f"is defined twice (again in {path})", connector=cfg.name, key="name")
            except ConfigError as exc:
                exc.source = str(path)
                errors.append(exc)
                continue
            found[cfg.name] = cfg
    for problem in errors:
        if problem.key == "name" and problem.connector in found:  # defined twice: neither copy runs
            problem.connector_class = found.pop(problem.connector).cls.name
    return Definitions(tuple(found.values()), tuple(errors))


def load_definitions(directory: str | os.PathLike[str] | None = None) -> list[ConnectorConfig]:
    """Every definition of the folder, all valid: otherwise :class:`ConfigError` (one) or
    :class:`InvalidDefinitions` listing every error of every file at once."""
    definitions = read_definitions(directory)
    definitions.raise_errors()
    return list(definitions.configs)


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


def by_class(configs: Iterable[ConnectorConfig], *names: str) -> list[ConnectorConfig]:
    return [c for c in configs if c.cls.name in names]
