"""The connector classes airconnect knows, in one list, and validating definitions against them.

Adding a connector: a folder (or module) with its spec, a :class:`~airconnect.core.config.ConnectorClass`
(keys, checks, topics, offsets, task split, runner), and one line in :data:`CONNECTORS`.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from airconnect.connectors.cdc.spec import MARIADB_CDC, POSTGRES_CDC
from airconnect.connectors.file.sink import FILE_SINK
from airconnect.connectors.file.source import FILE_SOURCE
from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.jdbc_sink.spec import JDBC_SINK
from airconnect.connectors.s3.spec import S3_SINK
from airconnect.core.config import (
    CONNECTORS_DIR_ENV,
    NAME_RE,
    ConnectorClass,
    ConnectorConfig,
    coerce,
    default_connectors_dir,
    expected,
    substitute_env,
)
from airconnect.core.errors import ConfigError, InvalidDefinitions
from airconnect.transforms import build_chain

#: Every connector class, one line each.
CONNECTORS: Final[tuple[ConnectorClass, ...]] = (
    FILE_SOURCE,
    FILE_SINK,
    JDBC_SOURCE,
    JDBC_SINK,
    S3_SINK,
    POSTGRES_CDC,
    MARIADB_CDC,
)

_BY_NAME: Final[dict[str, ConnectorClass]] = {n: c for c in CONNECTORS for n in (c.name, *c.aliases)}


def connector_classes() -> list[ConnectorClass]:
    """Every connector class, once each, by name."""
    return sorted(CONNECTORS, key=lambda c: c.name)


def lookup_class(class_name: str, connector: str) -> ConnectorClass:
    cls = _BY_NAME.get(class_name)
    if cls is None:
        known = sorted(_BY_NAME)
        hint = difflib.get_close_matches(class_name, known, n=1)
        raise ConfigError(
            f"unknown connector class {class_name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + "; known classes: " + ", ".join(sorted(c.name for c in CONNECTORS)),
            connector=connector,
            key="connector.class",
        )
    return cls


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
    if not isinstance(name, str) or not NAME_RE.match(name):
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
        if k.startswith(("consumer.override.", "producer.override.", "admin.override.")):
            errors.append(ConfigError(
                "per-connector client overrides are not supported: airconnect's Kafka clients take their settings "
                "from the Airflow Connection named by kafka.conn.id (its extra holds any librdkafka setting)"
                + where, connector=name, key=k))
            continue
        if k not in keys and k not in ("transforms", "predicates") and not k.startswith(("transforms.", "predicates.")):
            hint = difflib.get_close_matches(k, list(keys), n=1)
            errors.append(ConfigError(
                f"is not a key of {cls.name}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + where
                + "; its keys are: " + ", ".join(sorted(keys)),
                connector=name, key=k,
            ))
    chain, chain_errors = build_chain(raw, name)  # transforms and predicates, for every connector class
    errors.extend(chain_errors)
    values: dict[str, Any] = {}
    for key in keys.values():
        try:
            if key.name in raw and raw[key.name] is not None and raw[key.name] != "":
                values[key.name] = coerce(key, substitute_env(raw[key.name], name, key.name), name)
            elif key.required:
                raise ConfigError(f"is required{where}: {key.doc or expected(key)}", connector=name, key=key.name)
            else:
                values[key.name] = key.default
        except ConfigError as exc:
            errors.append(exc)
    if not errors:
        values["connector.class"] = cls.name
        result = ConnectorConfig(name=name, cls=cls, values=values, raw=dict(raw), transforms=chain)
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
    #: Where each valid definition comes from, by connector name (its file, or another source's label).
    sources: Mapping[str, str] = field(default_factory=dict)

    def by_name(self) -> dict[str, ConnectorConfig]:
        return {c.name: c for c in self.configs}

    def error_of(self, name: str) -> ConfigError | None:
        return next((e for e in self.errors if e.connector == name), None)

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
    sources: dict[str, str] = {}
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
            sources[cfg.name] = str(path)
    for problem in errors:
        if problem.key == "name" and problem.connector in found:  # defined twice: neither copy runs
            problem.connector_class = found.pop(problem.connector).cls.name
    return Definitions(tuple(found.values()), tuple(errors), {c.name: sources[c.name] for c in found.values()})


def merge_definitions(files: Definitions, stored: Iterable[tuple[str, Any]]) -> Definitions:
    """``files`` (a folder's definitions) and a second source's (``(label, definition)`` pairs: the
    ones created at runtime, say), validated alike. A name a file defines stays the file's: the
    other source's definition of it is an error naming both."""
    configs = {c.name: c for c in files.configs}
    sources = dict(files.sources)
    errors = list(files.errors)
    taken = set(configs) | {e.connector for e in files.errors if e.connector}
    for label, definition in stored:
        try:
            cfg = validate(definition, source=label)
            if cfg.name in taken:
                where = sources.get(cfg.name) or next((e.source for e in files.errors if e.connector == cfg.name), None)
                raise ConfigError(f"is defined by the file {where} and again in {label}: the file's definition is the one "
                                  f"that counts; delete the other", connector=cfg.name, key="name")
        except ConfigError as exc:
            exc.source = exc.source or label
            errors.append(exc)
            continue
        configs[cfg.name] = cfg
        sources[cfg.name] = label
        taken.add(cfg.name)
    return Definitions(tuple(configs.values()), tuple(errors), sources)


def load_definitions(directory: str | os.PathLike[str] | None = None) -> list[ConnectorConfig]:
    """Every definition of the folder, all valid: otherwise :class:`ConfigError` (one) or
    :class:`InvalidDefinitions` listing every error of every file at once."""
    definitions = read_definitions(directory)
    definitions.raise_errors()
    return list(definitions.configs)
