"""A connector's transformation chain, built from its definition as Kafka Connect builds it
(``transforms``, ``transforms.NAME.type``, ``transforms.NAME.*``, ``transforms.NAME.predicate``,
``transforms.NAME.negate``, ``predicates``, ``predicates.NAME.type``, ``predicates.NAME.*``), and
the converters around it (:class:`RecordCodec`): bytes -> Connect data -> transforms -> bytes."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from airconnect.core.config import JSON_CONVERTER, ConnectorConfig, substitute_env
from airconnect.core.data import (
    ConnectRecord,
    Header,
    from_connect,
    string_from_connect,
    string_to_connect,
    to_connect,
)
from airconnect.core.errors import ConfigError, DataError
from airconnect.transforms.base import OptionError, Plugin, Predicate, Transform, parse_list
from airconnect.transforms.csvline import ParseCsvKey, ParseCsvValue
from airconnect.transforms.debezium import ExtractNewRecordState
from airconnect.transforms.fields import (
    CastKey,
    CastValue,
    ExtractFieldKey,
    ExtractFieldValue,
    FlattenKey,
    FlattenValue,
    HoistFieldKey,
    HoistFieldValue,
    InsertFieldKey,
    InsertFieldValue,
    MaskFieldKey,
    MaskFieldValue,
    ReplaceFieldKey,
    ReplaceFieldValue,
    SetSchemaMetadataKey,
    SetSchemaMetadataValue,
    TimestampConverterKey,
    TimestampConverterValue,
    ValueToKey,
)
from airconnect.transforms.records import (
    DropHeaders,
    Filter,
    HasHeaderKey,
    HeaderFromKey,
    HeaderFromValue,
    InsertHeader,
    RecordIsTombstone,
    RegexRouter,
    TimestampRouter,
    TopicNameMatches,
)

#: Every transform class, by Kafka Connect's class name.
TRANSFORM_CLASSES: Final[tuple[type[Transform], ...]] = (
    InsertFieldKey, InsertFieldValue, ReplaceFieldKey, ReplaceFieldValue, MaskFieldKey, MaskFieldValue,
    ValueToKey, ExtractFieldKey, ExtractFieldValue, HoistFieldKey, HoistFieldValue, CastKey, CastValue,
    TimestampConverterKey, TimestampConverterValue, FlattenKey, FlattenValue, RegexRouter, TimestampRouter,
    Filter, HeaderFromKey, HeaderFromValue, InsertHeader, DropHeaders, SetSchemaMetadataKey, SetSchemaMetadataValue,
    ParseCsvKey, ParseCsvValue, ExtractNewRecordState,
)
PREDICATE_CLASSES: Final[tuple[type[Predicate], ...]] = (TopicNameMatches, HasHeaderKey, RecordIsTombstone)


def _by_name(classes: Sequence[type[Plugin]]) -> dict[str, type[Plugin]]:
    found: dict[str, type[Plugin]] = {}
    for cls in classes:
        for name in cls.class_names:
            found[name] = cls
            found.setdefault(name.rsplit(".", 1)[-1], cls)  # Connect's plugin alias: the simple class name
    return found


_TRANSFORMS: Final = _by_name(TRANSFORM_CLASSES)
_PREDICATES: Final = _by_name(PREDICATE_CLASSES)


class TransformError(DataError):
    """A transform (or its predicate) failed on a record; the message names the transform."""

    def __init__(self, alias: str, class_name: str, cause: BaseException):
        self.alias = alias
        self.class_name = class_name
        self.cause = cause
        super().__init__(f"transform '{alias}' ({class_name}) failed: {cause}")


@dataclass(frozen=True)
class Step:
    alias: str
    transform: Transform
    predicate: Predicate | None = None
    negate: bool = False


@dataclass(frozen=True)
class Chain:
    """The transforms of one connector, in order."""

    steps: tuple[Step, ...]

    def apply(self, record: ConnectRecord) -> ConnectRecord | None:
        """The transformed record, or ``None`` when a transform dropped it; :class:`TransformError`
        naming the transform when one fails."""
        for step in self.steps:
            try:
                if step.predicate is not None and step.predicate.test(record) == step.negate:
                    continue
                result = step.transform.apply(record)
            except Exception as exc:  # noqa: BLE001 - any failure of a transform is that record's error
                raise TransformError(step.alias, step.transform.class_name, exc) from exc
            if result is None:
                return None
            record = result
        return record

    @property
    def aliases(self) -> list[str]:
        return [s.alias for s in self.steps]


def _aliases(raw: Mapping[str, Any], key: str, connector: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    aliases = parse_list(substitute_env(value, connector, key))
    for alias in aliases:
        if not alias:
            raise ConfigError(f"expected a comma-separated list of names, got {value!r} (an empty name)",
                              connector=connector, key=key)
    dup = sorted({a for a in aliases if aliases.count(a) > 1})
    if dup:
        raise ConfigError(f"names {', '.join(dup)} more than once (Duplicate alias provided)", connector=connector, key=key)
    return aliases


def _plugin(raw: Mapping[str, Any], prefix: str, alias: str, known: dict[str, type[Plugin]], what: str,
            connector: str, reserved: tuple[str, ...], errors: list[ConfigError]) -> Plugin | None:
    base = f"{prefix}.{alias}."
    type_key = base + "type"
    class_name = raw.get(type_key)
    if not isinstance(class_name, str) or not class_name.strip():
        errors.append(ConfigError(f"is required: the class of {what} '{alias}', e.g. "
                                  + ("'org.apache.kafka.connect.transforms.RegexRouter'" if prefix == "transforms"
                                     else "'org.apache.kafka.connect.transforms.predicates.TopicNameMatches'"),
                                  connector=connector, key=type_key))
        return None
    cls = known.get(class_name.strip())
    if cls is None:
        names = sorted({c.class_names[0] for c in known.values()})
        hint = difflib.get_close_matches(class_name.strip(), names, n=1)
        errors.append(ConfigError(f"unknown {what} class {class_name.strip()!r}"
                                  + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                  + "; known classes: " + ", ".join(names), connector=connector, key=type_key))
        return None
    options: dict[str, Any] = {}
    for k, v in raw.items():
        if k.startswith(base) and k[len(base):] not in ("type", *reserved):
            options[k[len(base):]] = substitute_env(v, connector, k)
    try:
        return cls(options)
    except OptionError as exc:
        key = base + exc.option if exc.option else base + "type"
        errors.append(ConfigError(f"{exc} ({cls.class_names[0]})" if exc.option is None else str(exc),
                                  connector=connector, key=key))
    except ConfigError as exc:
        errors.append(exc)
    return None


def build_chain(raw: Mapping[str, Any], connector: str) -> tuple[Chain | None, list[ConfigError]]:
    """The chain a definition's ``transforms`` and ``predicates`` describe (``None`` without
    transforms), and every problem found, each a ConfigError naming the connector and the key."""
    errors: list[ConfigError] = []
    try:
        aliases = _aliases(raw, "transforms", connector)
    except ConfigError as exc:
        errors.append(exc)
        aliases = []
    try:
        predicate_aliases = _aliases(raw, "predicates", connector)
    except ConfigError as exc:
        errors.append(exc)
        predicate_aliases = []
    for k in raw:
        for prefix, declared in (("transforms", aliases), ("predicates", predicate_aliases)):
            if k.startswith(prefix + "."):
                alias = k[len(prefix) + 1:].split(".", 1)[0]
                if alias not in declared and not any(k.startswith(f"{prefix}.{a}.") for a in declared):
                    errors.append(ConfigError(f"names {prefix[:-1]} {alias!r}, which is not listed in '{prefix}' "
                                              f"({', '.join(declared) or 'empty'})", connector=connector, key=k))
    predicates: dict[str, Predicate] = {}
    for alias in predicate_aliases:
        plugin = _plugin(raw, "predicates", alias, _PREDICATES, "predicate", connector, (), errors)
        if isinstance(plugin, Predicate):
            predicates[alias] = plugin
    steps: list[Step] = []
    for alias in aliases:
        plugin = _plugin(raw, "transforms", alias, _TRANSFORMS, "transform", connector, ("predicate", "negate"), errors)
        pkey, nkey = f"transforms.{alias}.predicate", f"transforms.{alias}.negate"
        predicate_alias = raw.get(pkey)
        predicate = None
        if predicate_alias is not None and str(predicate_alias).strip():
            name = str(predicate_alias).strip()
            predicate = predicates.get(name)
            if name not in predicate_aliases:
                errors.append(ConfigError(f"refers to predicate {name!r}, which is not declared in 'predicates' "
                                          f"({', '.join(predicate_aliases) or 'empty'})", connector=connector, key=pkey))
        negate = False
        if nkey in raw:
            value = raw[nkey]
            if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in ("true", "false")):
                negate = value if isinstance(value, bool) else value.strip().lower() == "true"
                if predicate_alias is None:
                    errors.append(ConfigError("needs transforms.NAME.predicate: negate inverts a predicate",
                                              connector=connector, key=nkey))
            else:
                errors.append(ConfigError(f"expected true or false, got {value!r}", connector=connector, key=nkey))
        if isinstance(plugin, Transform):
            steps.append(Step(alias, plugin, predicate, negate))
    if errors or not steps:
        return None, errors
    return Chain(tuple(steps)), []


# ---------------------------------------------------------------- converters around the chain

class RecordCodec:
    """A connector's converters (JsonConverter or StringConverter for values, JsonConverter for
    keys, StringConverter for headers): bytes to a :class:`ConnectRecord` and back."""

    def __init__(self, *, key_schemas: bool = True, value_json: bool = True, value_schemas: bool = True,
                 key_decimal: str = "BASE64", value_decimal: str = "BASE64"):
        self.key_schemas = key_schemas
        self.value_json = value_json
        self.value_schemas = value_schemas
        self.key_decimal = key_decimal.upper()
        self.value_decimal = value_decimal.upper()

    @classmethod
    def for_connector(cls, config: ConnectorConfig) -> RecordCodec:
        """The converters a connector's definition names."""
        values = config.values
        return cls(key_schemas=bool(config["key.converter.schemas.enable"]),
                   value_json=config["value.converter"] == JSON_CONVERTER,
                   value_schemas=bool(config["value.converter.schemas.enable"]),
                   key_decimal=str(values.get("key.converter.decimal.format") or "BASE64"),
                   value_decimal=str(values.get("value.converter.decimal.format") or "BASE64"))

    def decode(self, topic: str, key: bytes | None, value: bytes | None,
               headers: Sequence[tuple[str, bytes | None]] | None = None, *, partition: int | None = None,
               timestamp: int | None = None, offset: int | None = None, origin: Any = None) -> ConnectRecord:
        key_schema, key_value = to_connect(key, schemas_enable=self.key_schemas, decimal_format=self.key_decimal)
        if self.value_json:
            value_schema, value_value = to_connect(value, schemas_enable=self.value_schemas,
                                                   decimal_format=self.value_decimal)
        else:
            value_schema, value_value = string_to_connect(value)
        made = tuple(Header(k, *string_to_connect(v)) for k, v in headers or ())
        return ConnectRecord(topic, partition, key_schema, key_value, value_schema, value_value, timestamp, made,
                             origin=origin, kafka_offset=offset)

    def encode(self, record: ConnectRecord) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
        key = from_connect(record.key_schema, record.key, schemas_enable=self.key_schemas,
                           decimal_format=self.key_decimal)
        if self.value_json:
            value = from_connect(record.value_schema, record.value, schemas_enable=self.value_schemas,
                                 decimal_format=self.value_decimal)
        else:
            value = string_from_connect(record.value_schema, record.value)
        headers = [(h.key, string_from_connect(h.schema, h.value)) for h in record.headers]
        return key, value, headers
