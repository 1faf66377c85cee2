"""Kafka Connect's transforms of a record's key or value: InsertField, ReplaceField, MaskField,
ValueToKey, ExtractField, HoistField, Cast, Flatten, SetSchemaMetadata, TimestampConverter
(``org.apache.kafka.connect.transforms``, 4.1), each with its ``$Key`` and ``$Value`` variant
where Connect has them, doing what Connect's does to the same record (a schemaless map's keys
come out in Java HashMap order, as Connect writes them)."""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import struct as _struct
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from airconnect.core.config import REQUIRED, Key
from airconnect.core.data import (
    BOOLEAN,
    BYTES,
    DATE_NAME,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    MAP,
    OPTIONAL_INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING,
    STRUCT,
    TIME_NAME,
    TIMESTAMP_NAME,
    ConnectRecord,
    Field,
    Schema,
    Struct,
    copy_capacity,
    date_to_days,
    days_to_date,
    java_class,
    java_double,
    java_map,
    millis_to_time,
    millis_to_timestamp,
    schemaless_type,
    struct_schema,
    table_size_for,
    time_to_millis,
    timestamp_to_millis,
    validate_value,
)
from airconnect.core.errors import DataError
from airconnect.transforms.base import (
    REPLACE_NULL,
    OptionError,
    SimpleDateFormat,
    Transform,
    check_date_format,
    copy_basics,
    field_value,
    not_empty,
    require_map,
    require_schema,
    require_struct,
    variants,
)

PKG: Final = "org.apache.kafka.connect.transforms"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS_PER_DAY: Final = 86400000


def _timestamp_schema(optional: bool) -> Schema:
    return Schema(INT64, optional=optional, name=TIMESTAMP_NAME, version=1)


def _with_puts(value: dict[str, Any], puts: list[tuple[str, Any]]) -> dict[str, Any]:
    """``new HashMap<>(value)`` followed by ``put``s, in Java's order."""
    d = dict(value)
    for k, v in puts:
        d[k] = v
    return java_map(d, copy_capacity(len(value)))


# ---------------------------------------------------------------- InsertField

class InsertField(Transform):
    """Insert fields from the record's metadata (topic, partition, offset, timestamp) or a static
    value. A name ending in ``!`` makes the field required, ``?`` (the default) optional."""

    keys = (
        Key("topic.field", "string", None, "Field name for the Kafka topic."),
        Key("partition.field", "string", None, "Field name for the Kafka partition."),
        Key("offset.field", "string", None, "Field name for the Kafka offset (sink connectors only)."),
        Key("timestamp.field", "string", None, "Field name for the record timestamp."),
        Key("static.field", "string", None, "Field name for a static data field."),
        Key("static.value", "string", None, "Static field value, if static.field is set."),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        def spec(name: str) -> tuple[str, bool] | None:
            text = options[name]
            if text is None:
                return None
            if text.endswith("?"):
                return text[:-1], True
            if text.endswith("!"):
                return text[:-1], False
            return text, True

        self.topic = spec("topic.field")
        self.partition = spec("partition.field")
        self.offset = spec("offset.field")
        self.timestamp = spec("timestamp.field")
        self.static = spec("static.field")
        self.static_value = options["static.value"]
        if not any((self.topic, self.partition, self.offset, self.timestamp, self.static)):
            raise OptionError(None, "No field insertion configured: set one of topic.field, partition.field, "
                              "offset.field, timestamp.field, static.field")
        if self.static is not None and self.static_value is None:
            raise OptionError("static.value", f"No value specified for static field: {self.static[0]}")
        self.replace_null = options["replace.null.with.default"]

    def _offset(self, record: ConnectRecord) -> int:
        if record.kafka_offset is None:
            raise DataError("Only SinkRecord supported for [field insertion], found: "
                            "org.apache.kafka.connect.source.SourceRecord")
        return record.kafka_offset

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        if value is None:
            return record
        schema = self.operating_schema(record)
        if schema is None:
            value = require_map(value, "field insertion")
            puts: list[tuple[str, Any]] = []
            if self.topic:
                puts.append((self.topic[0], record.topic))
            if self.partition and record.kafka_partition is not None:
                puts.append((self.partition[0], record.kafka_partition))
            if self.offset:
                puts.append((self.offset[0], self._offset(record)))
            if self.timestamp and record.timestamp is not None:
                puts.append((self.timestamp[0], record.timestamp))
            if self.static and self.static_value is not None:
                puts.append((self.static[0], self.static_value))
            return self.new_record(record, None, _with_puts(value, puts))
        value = require_struct(value, "field insertion")
        fields: list[tuple[str, Schema]] = [(f.name, f.schema) for f in value.schema.fields]
        if self.topic:
            fields.append((self.topic[0], Schema(STRING, optional=self.topic[1])))
        if self.partition:
            fields.append((self.partition[0], Schema(INT32, optional=self.partition[1])))
        if self.offset:
            fields.append((self.offset[0], Schema(INT64, optional=self.offset[1])))
        if self.timestamp:
            fields.append((self.timestamp[0], _timestamp_schema(self.timestamp[1])))
        if self.static:
            fields.append((self.static[0], Schema(STRING, optional=self.static[1])))
        base = copy_basics(value.schema)
        updated_schema = struct_schema(fields, name=base.name, version=base.version, doc=base.doc,
                                       parameters=base.parameters)
        updated = Struct(updated_schema)
        for f in value.schema.fields:
            updated.put(f.name, field_value(value, f.name, self.replace_null))
        if self.topic:
            updated.put(self.topic[0], record.topic)
        if self.partition and record.kafka_partition is not None:
            updated.put(self.partition[0], record.kafka_partition)
        if self.offset:
            updated.put(self.offset[0], self._offset(record))
        if self.timestamp and record.timestamp is not None:
            updated.put(self.timestamp[0], millis_to_timestamp(record.timestamp))
        if self.static and self.static_value is not None:
            updated.put(self.static[0], self.static_value)
        return self.new_record(record, updated_schema, updated)


InsertFieldKey, InsertFieldValue = variants(InsertField, PKG, "InsertField")


# ---------------------------------------------------------------- ReplaceField

def _renames(value: list[str]) -> str | None:
    for mapping in value:
        if len(mapping.split(":")) != 2:
            return f"a list of colon-delimited pairs, e.g. foo:bar,abc:xyz (invalid rename mapping: {mapping})"
    return None


class ReplaceField(Transform):
    """Filter (``include``/``exclude``) or rename (``renames``) fields."""

    keys = (
        Key("exclude", "list", [], "Fields to exclude. This takes precedence over the fields to include."),
        Key("include", "list", [], "Fields to include. If specified, only these fields will be used."),
        Key("renames", "list", [], "Field rename mappings, e.g. foo:bar,abc:xyz.", check=_renames),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.exclude = set(options["exclude"])
        self.include = set(options["include"])
        self.renames = dict(m.split(":") for m in options["renames"])
        self.reverse = {v: k for k, v in self.renames.items()}
        self.replace_null = options["replace.null.with.default"]

    def _keep(self, name: str) -> bool:
        return name not in self.exclude and (not self.include or name in self.include)

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        if value is None:
            return record
        schema = self.operating_schema(record)
        if schema is None:
            value = require_map(value, "field replacement")
            items = [(self.renames.get(k, k), v) for k, v in value.items() if self._keep(k)]
            return self.new_record(record, None, java_map(items, table_size_for(len(value))))
        value = require_struct(value, "field replacement")
        base = copy_basics(value.schema)
        updated_schema = struct_schema([(self.renames.get(f.name, f.name), f.schema) for f in value.schema.fields
                                        if self._keep(f.name)],
                                       name=base.name, version=base.version, doc=base.doc, parameters=base.parameters)
        updated = Struct(updated_schema)
        for f in updated_schema.fields:
            updated.put(f.name, field_value(value, self.reverse.get(f.name, f.name), self.replace_null))
        return self.new_record(record, updated_schema, updated)


ReplaceFieldKey, ReplaceFieldValue = variants(ReplaceField, PKG, "ReplaceField")


# ---------------------------------------------------------------- MaskField

def _mask_null(value: Any) -> Any:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0
    if isinstance(value, float):
        return 0.0
    if isinstance(value, Decimal):
        return Decimal(0)
    if isinstance(value, dt.datetime):
        return _EPOCH
    if isinstance(value, dt.date):
        return dt.date(1970, 1, 1)
    if isinstance(value, dt.time):
        return dt.time(0)
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    raise DataError(f"Cannot mask value of type: {java_class(value)}")


def _parse_java_number(text: str, kind: str) -> Any:
    """``Values.convertToX(null, text)`` for a number type (and BigDecimal's constructor)."""
    try:
        number = Decimal(text.strip())
        if not number.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise DataError(f"Unable to convert {text} (class java.lang.String) to number") from None
    if kind in _INT_BITS:
        return _wrap_int(int(number), kind)
    if kind == FLOAT32:
        return _to_float32(float(number))
    return float(number)


class MaskField(Transform):
    """Mask fields with the null value of their type (0, false, empty string...), or ``replacement``."""

    keys = (
        Key("fields", "list", REQUIRED, "Names of fields to mask.", check=not_empty),
        Key("replacement", "string", None, "Custom value replacement applied to all 'fields' values "
            "(numeric or non-empty string values only).", check=not_empty),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.fields = list(dict.fromkeys(options["fields"]))
        self.replacement = options["replacement"]
        self.replace_null = options["replace.null.with.default"]

    def _masked(self, value: Any, schema: Schema | None) -> Any:
        if value is None:
            return None
        if self.replacement is None:
            return _mask_null(value)
        if isinstance(value, str):
            return self.replacement
        if isinstance(value, Decimal):
            try:
                return Decimal(self.replacement)
            except InvalidOperation:
                raise DataError(f"Unable to convert {self.replacement} (class java.lang.String) to number") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            kind = schema.type if schema is not None else (INT64 if isinstance(value, int) else FLOAT64)
            return _parse_java_number(self.replacement, kind)
        raise DataError(f"Cannot mask value of type {java_class(value)} with custom replacement.")

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        schema = self.operating_schema(record)
        if schema is None:
            value = require_map(value, "mask fields")
            puts = [(f, self._masked(value.get(f), None)) for f in java_map({f: None for f in self.fields})]
            return self.new_record(record, None, _with_puts(value, puts))
        value = require_struct(value, "mask fields")
        updated = Struct(value.schema)
        masked = set(self.fields)
        for f in value.schema.fields:
            original = field_value(value, f.name, self.replace_null)
            updated.put(f.name, self._masked(original, f.schema) if f.name in masked else original)
        return self.new_record(record, value.schema, updated)


MaskFieldKey, MaskFieldValue = variants(MaskField, PKG, "MaskField")


# ---------------------------------------------------------------- ValueToKey

class ValueToKey(Transform):
    """Replace the record key with a new key formed from a subset of fields in the record value."""

    class_names = (f"{PKG}.ValueToKey",)
    keys = (
        Key("fields", "list", REQUIRED, "Field names on the record value to extract as the record key.",
            check=not_empty),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.fields = options["fields"]
        self.replace_null = options["replace.null.with.default"]

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        purpose = "copying fields from value to key"
        if record.value_schema is None:
            value = require_map(record.value, purpose)
            key = java_map([(f, value.get(f)) for f in self.fields], table_size_for(len(self.fields)))
            return record.new_record(key_schema=None, key=key)
        struct = require_struct(record.value, purpose)
        fields: list[tuple[str, Schema]] = []
        for name in self.fields:
            f = struct.schema.field(name)
            if f is None:
                raise DataError(f"Field does not exist: {name}")
            fields.append((name, f.schema))
        key_schema = struct_schema(fields)
        key_struct = Struct(key_schema)
        for name in self.fields:
            key_struct.put(name, field_value(struct, name, self.replace_null))
        return record.new_record(key_schema=key_schema, key=key_struct, value_schema=struct.schema, value=struct)


# ---------------------------------------------------------------- ExtractField

def _field_path(path: str, version: str) -> list[str]:
    """``SingleFieldPath``: V1 is one name; V2 is dotted, with backquoted steps (``\\``` escapes)."""
    if version == "V1":
        return [path]
    steps: list[str] = []
    idx, n = 0, len(path)
    while 0 <= idx < n:
        if path[idx] != "`":
            start = idx
            idx = path.find(".", idx)
            if idx >= 0:
                steps.append(path[start:idx])
                idx += 1
            else:
                steps.append(path[start:])
        else:
            backtick_at = idx
            idx += 1
            field: list[str] = []
            start = idx
            while True:
                idx = path.find("`", idx)
                if idx == -1:
                    raise OptionError("field", f"Incomplete backtick pair in path: [{path}], consider adding a "
                                      f"backslash before backtick at position {backtick_at} to escape it")
                escaped = path[idx - 1] == "\\"
                if idx >= n - 1:
                    if escaped:
                        raise OptionError("field", f"Incomplete backtick pair in path: [{path}], consider adding a "
                                          f"backslash before backtick at position {backtick_at} to escape it")
                    field.append(path[start:idx])
                    steps.append("".join(field))
                    idx += 1
                    break
                if path[idx + 1] != ".":
                    idx += 1
                    continue
                if escaped:
                    field.append(path[start:idx - 1] + "`")
                    idx += 1
                    start = idx
                    continue
                field.append(path[start:idx])
                steps.append("".join(field))
                idx += 2
                break
    if path.endswith("."):
        steps.append("")
    return steps


class ExtractField(Transform):
    """Replace the key or value with one of its fields (nested ones with ``field.syntax.version=V2``)."""

    keys = (
        Key("field", "string", REQUIRED, "Field name to extract."),
        REPLACE_NULL,
        Key("field.syntax.version", "string", "V1", "V1: a top-level field name; V2: a dotted path to a "
            "nested field (backquote a name holding a dot).", choices=("V1", "V2")),
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.path = options["field"]
        self.steps = _field_path(self.path, options["field.syntax.version"].upper())
        self.replace_null = options["replace.null.with.default"]

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            if value is None:
                return self.new_record(record, None, None)
            current: Any = require_map(value, "field extraction")
            for step in self.steps[:-1]:
                nested = current.get(step)
                if nested is None:
                    return self.new_record(record, None, None)
                current = require_map(nested, "nested field access")
            return self.new_record(record, None, current.get(self.steps[-1]))
        field = self._field(schema)
        if field is None:
            raise DataError(f"Unknown field: {self.path}")
        if value is None:
            return self.new_record(record, field.schema, None)
        struct: Struct | None = require_struct(value, "field extraction")
        for step in self.steps[:-1]:
            assert struct is not None
            nested = struct.get(step)
            if nested is None:
                return self.new_record(record, field.schema, None)
            struct = require_struct(nested, "nested field access")
        assert struct is not None
        return self.new_record(record, field.schema, field_value(struct, self.steps[-1], self.replace_null))

    def _field(self, schema: Schema) -> Field | None:
        current = schema
        for step in self.steps[:-1]:
            f = current.field(step) if current.type == STRUCT else None
            if f is None:
                return None
            current = f.schema
        return current.field(self.steps[-1]) if current.type == STRUCT else None


ExtractFieldKey, ExtractFieldValue = variants(ExtractField, PKG, "ExtractField")


# ---------------------------------------------------------------- HoistField

class HoistField(Transform):
    """Wrap the key or value in a struct (a map when schemaless) with one field."""

    keys = (Key("field", "string", REQUIRED, "Field name for the single field of the resulting struct or map."),)

    def configure(self, options: dict[str, Any]) -> None:
        self.field = options["field"]

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            return self.new_record(record, None, {self.field: value})
        updated_schema = struct_schema([(self.field, schema)])
        return self.new_record(record, updated_schema, Struct(updated_schema).put(self.field, value))


HoistFieldKey, HoistFieldValue = variants(HoistField, PKG, "HoistField")


# ---------------------------------------------------------------- Cast

_INPUT_TYPES: Final = (INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING, BYTES)
_OUTPUT_TYPES: Final = _INPUT_TYPES[:-1]
_ALL_TYPES: Final = (*_INPUT_TYPES, "array", MAP, STRUCT)
_INT_BITS: Final = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_JAVA_TYPE_NAMES: Final = "[" + ", ".join(t.upper() for t in _OUTPUT_TYPES) + "]"
_JAVA_INT_TEXT: Final = re.compile(r"[+-]?\d+")


def _wrap_int(value: int, kind: str) -> int:
    bits = _INT_BITS[kind]
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _saturate(x: float, bits: int) -> int:
    if math.isnan(x):
        return 0
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if x <= lo:
        return lo
    if x >= hi:
        return hi
    return int(x)


def _to_float32(x: float) -> float:
    try:
        return float(_struct.unpack("<f", _struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def _parse_spec(spec: list[str]) -> str | None:
    if not spec:
        return "at least one field to cast"
    whole = False
    for mapping in spec:
        parts = mapping.split(":")
        if len(parts) > 2:
            return f"field:type pairs (invalid mapping: {mapping})"
        kind = parts[-1].strip().lower()
        if kind not in _ALL_TYPES:
            return f"field:type pairs with valid types (invalid type found in casting spec: {parts[-1].strip()})"
        if kind not in _OUTPUT_TYPES:
            return (f"a type Cast can cast to (Cast transformation does not support casting to {kind.upper()}; "
                    f"supported types are {_JAVA_TYPE_NAMES})")
        whole = whole or len(parts) == 1
    if whole and len(spec) > 1:
        return "a single type when the entire value is cast (only one cast allowed then)"
    return None


def _date_string(value: dt.date | dt.time) -> str:
    """``Values.dateFormatFor(date).format(date)`` in UTC."""
    if isinstance(value, dt.time):
        ms = time_to_millis(value)
    elif isinstance(value, dt.datetime):
        ms = timestamp_to_millis(value)
    else:
        ms = date_to_days(value) * _MS_PER_DAY
    if ms < _MS_PER_DAY:
        pattern = "HH:mm:ss.SSS'Z'"
    elif ms % _MS_PER_DAY == 0:
        pattern = "yyyy-MM-dd"
    else:
        pattern = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
    return SimpleDateFormat(pattern).format(ms)


def cast_value(schema: Schema | None, value: Any, target: str) -> Any:
    """``Cast.castValueToType``."""
    if value is None:
        return None
    kind = schema.type if schema is not None else schemaless_type(value)
    if kind is None:
        raise DataError(f"Cast transformation was passed a value of type {java_class(value)} which is not "
                        "supported by Connect's data API")
    if kind not in _INPUT_TYPES:
        raise DataError(f"Cast transformation does not support casting from {kind.upper()}; supported types are "
                        "[" + ", ".join(t.upper() for t in _INPUT_TYPES) + "]")
    single = schema is not None and schema.type == FLOAT32
    if schema is not None and schema.name is not None and target != STRING:
        if schema.name == DATE_NAME and isinstance(value, dt.date):
            value = date_to_days(value)
        elif schema.name == TIME_NAME and isinstance(value, dt.time):
            value = time_to_millis(value)
        elif schema.name == TIMESTAMP_NAME and isinstance(value, dt.datetime):
            value = timestamp_to_millis(value)
    try:
        return _cast(value, target, single)
    except ValueError:
        raise DataError(f"Value ({value}) was out of range for requested data type") from None


def _cast(value: Any, target: str, single: bool) -> Any:
    if target == STRING:
        if isinstance(value, (dt.date, dt.time)):
            return _date_string(value)
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return java_double(value, single)
        return str(value)
    if isinstance(value, bool):
        number: Any = int(value)
        if target in (FLOAT32, FLOAT64):
            return float(number)
        if target == BOOLEAN:
            return value
        return number
    if isinstance(value, str):
        if target == BOOLEAN:
            return value.lower() == "true"
        if target in _INT_BITS:
            if not _JAVA_INT_TEXT.fullmatch(value):
                raise ValueError(value)
            parsed = int(value)
            if _wrap_int(parsed, target) != parsed:
                raise ValueError(value)
            return parsed
        parsed_float = float(value.strip().rstrip("dDfF"))
        return _to_float32(parsed_float) if target == FLOAT32 else parsed_float
    if isinstance(value, (int, float, Decimal)):
        if target == BOOLEAN:
            return _long_value(value) != 0
        if target == FLOAT32:
            return _to_float32(float(value))
        if target == FLOAT64:
            return float(value)
        if isinstance(value, float):
            if target == INT64:
                return _saturate(value, 64)
            return _wrap_int(_saturate(value, 32), target)
        return _wrap_int(int(value), target)
    raise DataError(f"Unexpected type in Cast transformation: {java_class(value)}")


def _long_value(value: int | float | Decimal) -> int:
    if isinstance(value, float):
        return _saturate(value, 64)
    return _wrap_int(int(value), INT64)


class Cast(Transform):
    """Cast fields (``field:type,...``) or the entire key or value (``type``) to another type:
    int8, int16, int32, int64, float32, float64, boolean or string (bytes only to string, Base64)."""

    keys = (
        Key("spec", "list", REQUIRED, "Fields and the type to cast them to, field1:type,field2:type, or a single "
            "type to cast the entire value.", check=_parse_spec),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        casts: dict[str | None, str] = {}
        for mapping in options["spec"]:
            parts = mapping.split(":")
            if len(parts) == 1:
                casts[None] = parts[0].strip().lower()
            else:
                casts[parts[0].strip()] = parts[1].strip().lower()
        self.whole = casts.pop(None, None)
        self.casts = {k: v for k, v in casts.items() if k is not None}
        self.replace_null = options["replace.null.with.default"]

    def _schema(self, schema: Schema) -> Schema:
        if self.whole is not None:
            updated = copy_basics(schema, self.whole)
        else:
            fields: list[tuple[str, Schema]] = []
            for f in schema.fields:
                target = self.casts.get(f.name)
                if target is None:
                    fields.append((f.name, f.schema))
                    continue
                default = cast_value(f.schema, f.schema.default, target) if f.schema.default is not None else None
                fschema = Schema(target, optional=f.schema.optional, default=default)
                if default is not None:
                    validate_value(fschema, default)
                fields.append((f.name, fschema))
            base = copy_basics(schema)
            updated = struct_schema(fields, name=base.name, version=base.version, doc=base.doc,
                                    parameters=base.parameters)
        changes: dict[str, Any] = {}
        if schema.optional:
            changes["optional"] = True
        if schema.default is not None:
            changes["default"] = cast_value(schema, schema.default, updated.type)
        return updated.replace(**changes) if changes else updated

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        if value is None:
            return record
        schema = self.operating_schema(record)
        if schema is None:
            if self.whole is not None:
                return self.new_record(record, None, cast_value(None, value, self.whole))
            value = require_map(value, "cast types")
            casts = java_map(self.casts)  # Connect iterates its HashMap of casts
            puts = [(name, cast_value(None, value.get(name), target)) for name, target in casts.items()]
            return self.new_record(record, None, _with_puts(value, puts))
        updated_schema = self._schema(schema)
        if self.whole is not None:
            return self.new_record(record, updated_schema, cast_value(schema, value, self.whole))
        struct = require_struct(value, "cast types")
        updated = Struct(updated_schema)
        for f in struct.schema.fields:
            original = field_value(struct, f.name, self.replace_null)
            target = self.casts.get(f.name)
            updated.put(f.name, cast_value(f.schema, original, target) if target is not None else original)
        return self.new_record(record, updated_schema, updated)


CastKey, CastValue = variants(Cast, PKG, "Cast")


# ---------------------------------------------------------------- Flatten

class Flatten(Transform):
    """Flatten nested structs (maps when schemaless) into one level, joining names with ``delimiter``."""

    keys = (Key("delimiter", "string", ".", "Delimiter between field names from the input record."),)

    def configure(self, options: dict[str, Any]) -> None:
        self.delimiter = options["delimiter"]

    def _name(self, prefix: str, name: str) -> str:
        return name if not prefix else prefix + self.delimiter + name

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        if value is None:
            return record
        schema = self.operating_schema(record)
        if schema is None:
            out: dict[str, Any] = {}
            self._flatten_map(require_map(value, "flattening"), "", out)
            return self.new_record(record, None, out)
        struct = require_struct(value, "flattening")
        fields: list[tuple[str, Schema]] = []
        self._flatten_schema(schema, "", fields, schema.optional, schema.default)
        base = copy_basics(schema)
        updated_schema = struct_schema(fields, name=base.name, version=base.version, doc=base.doc,
                                       parameters=base.parameters)
        updated = Struct(updated_schema)
        self._flatten_struct(struct, "", updated)
        return self.new_record(record, updated_schema, updated)

    def _flatten_map(self, value: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
        for k, v in value.items():
            name = self._name(prefix, k)
            if v is None:
                out[name] = None
            elif isinstance(v, dict):
                self._flatten_map(v, name, out)
            elif isinstance(v, (bool, int, float, str, bytes, bytearray, list)):
                out[name] = v
            elif isinstance(v, Struct):
                raise DataError(f"Flatten transformation does not support {java_class(v)} for record without "
                                f"schemas (for field {name}).")
            else:
                raise DataError(f"Flatten transformation was passed a value of type {java_class(v)} which is not "
                                "supported by Connect's data API")

    def _flatten_schema(self, schema: Schema, prefix: str, out: list[tuple[str, Schema]], optional: bool,
                        parent_default: Any) -> None:
        for f in schema.fields:
            name = self._name(prefix, f.name)
            f_optional = optional or f.schema.optional
            default = f.schema.default
            if default is None and parent_default is not None:
                default = parent_default.get(f.name)
            if f.schema.type == STRUCT:
                self._flatten_schema(f.schema, name, out, f_optional, default)
            elif f.schema.type in (MAP,):
                raise DataError(f"Flatten transformation does not support MAP for record with schemas (for field {name}).")
            else:
                converted = copy_basics(f.schema, f.schema.type, optional=f_optional, default=default)
                if default is not None:
                    validate_value(converted, default)
                out.append((name, converted))

    def _flatten_struct(self, struct: Struct | None, prefix: str, out: Struct) -> None:
        if struct is None:
            return
        for f in struct.schema.fields:
            name = self._name(prefix, f.name)
            if f.schema.type == STRUCT:
                self._flatten_struct(struct.get(f.name), name, out)
            elif f.schema.type == MAP:
                raise DataError(f"Flatten transformation does not support MAP for record with schemas (for field {name}).")
            else:
                out.put(name, struct.get(f.name))


FlattenKey, FlattenValue = variants(Flatten, PKG, "Flatten")


# ---------------------------------------------------------------- SetSchemaMetadata

class SetSchemaMetadata(Transform):
    """Set the schema name, version or both of the record's key or value schema."""

    keys = (
        Key("schema.name", "string", None, "Schema name to set."),
        Key("schema.version", "int", None, "Schema version to set."),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.name = options["schema.name"]
        self.version = options["schema.version"]
        if self.name is None and self.version is None:
            raise OptionError(None, "Neither schema name nor version configured: set schema.name or schema.version")
        self.replace_null = options["replace.null.with.default"]

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        schema = self.operating_schema(record)
        if value is None and schema is None:
            return record
        schema = require_schema(schema, "updating schema metadata")
        if schema.type != STRUCT:  # Connect copies schema.fields(), which only a struct has
            raise DataError("Cannot list fields on non-struct type")
        updated_schema = schema.replace(name=self.name if self.name is not None else schema.name,
                                        version=self.version if self.version is not None else schema.version)
        if isinstance(value, Struct):
            updated = Struct(updated_schema)
            for f in updated_schema.fields:
                updated.put(f.name, field_value(value, f.name, self.replace_null))
            value = updated
        return self.new_record(record, updated_schema, value)


SetSchemaMetadataKey, SetSchemaMetadataValue = variants(SetSchemaMetadata, PKG, "SetSchemaMetadata")


# ---------------------------------------------------------------- TimestampConverter

_TS_TYPES: Final = ("string", "unix", "Date", "Time", "Timestamp")
_PRECISIONS: Final = ("nanoseconds", "microseconds", "milliseconds", "seconds")
_TO_MILLIS: Final = {"seconds": (1000, 1), "milliseconds": (1, 1), "microseconds": (1, 1000), "nanoseconds": (1, 1000000)}


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


class TimestampConverter(Transform):
    """Convert timestamps between Unix epoch numbers, formatted strings and Connect's Date, Time and
    Timestamp types, for one field or the entire key or value."""

    keys = (
        Key("field", "string", "", "The field holding the timestamp; empty: the entire value is a timestamp."),
        Key("target.type", "string", REQUIRED, "The desired timestamp representation: string, unix, Date, Time, "
            "or Timestamp.", choices=_TS_TYPES),
        Key("format", "string", "", "A SimpleDateFormat pattern: the output when target.type=string, and how "
            "string input is parsed.", check=lambda v: check_date_format(v) if v else None),
        Key("unix.precision", "string", "milliseconds", "The precision of Unix timestamps: seconds, milliseconds, "
            "microseconds, or nanoseconds.", choices=_PRECISIONS),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.field = options["field"]
        self.target = options["target.type"]
        pattern = options["format"]
        if self.target == "string" and not pattern.strip():
            raise OptionError("format", "is required when target.type is string (a SimpleDateFormat pattern such as "
                              "'yyyy-MM-dd HH:mm:ss')")
        self.format = SimpleDateFormat(pattern) if pattern.strip() else None
        self.precision = options["unix.precision"]
        self.replace_null = options["replace.null.with.default"]

    # Java keeps every timestamp as epoch milliseconds (java.util.Date) in between.
    def _to_raw(self, kind: str, value: Any) -> int:
        if kind == "string":
            if not isinstance(value, str):
                raise DataError(f"Expected string timestamp to be a String, but found {java_class(value)}")
            if self.format is None:
                raise DataError("TimestampConverter needs 'format' to parse string timestamps")
            try:
                return self.format.parse(value)
            except ValueError:
                raise DataError(f"Could not parse timestamp: value ({value}) does not match pattern "
                                f"({self.format.pattern})") from None
        if kind == "unix":
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"Expected Unix timestamp to be a Long, but found {java_class(value)}")
            mul, div = _TO_MILLIS[self.precision]
            return _trunc_div(value * mul, div)
        if isinstance(value, dt.datetime):
            return timestamp_to_millis(value)
        if isinstance(value, dt.date):
            return date_to_days(value) * _MS_PER_DAY
        if isinstance(value, dt.time):
            return time_to_millis(value)
        raise DataError(f"Expected {kind} to be a java.util.Date, but found {java_class(value)}")

    def _to_type(self, ms: int) -> Any:
        if self.target == "string":
            assert self.format is not None
            return self.format.format(ms)
        if self.target == "unix":
            div, mul = _TO_MILLIS[self.precision]
            return _trunc_div(ms, div) * mul
        if self.target == "Date":
            return days_to_date(ms // _MS_PER_DAY)
        if self.target == "Time":
            return millis_to_time(ms % _MS_PER_DAY)
        return millis_to_timestamp(ms)

    def _type_schema(self, optional: bool) -> Schema:
        if self.target == "string":
            return OPTIONAL_STRING_SCHEMA if optional else Schema(STRING)
        if self.target == "unix":
            return OPTIONAL_INT64_SCHEMA if optional else Schema(INT64)
        name = {"Date": DATE_NAME, "Time": TIME_NAME, "Timestamp": TIMESTAMP_NAME}[self.target]
        return Schema(INT64 if self.target == "Timestamp" else INT32, optional=optional, name=name, version=1)

    @staticmethod
    def _kind_of_schema(schema: Schema) -> str:
        if schema.name == TIMESTAMP_NAME:
            return "Timestamp"
        if schema.name == DATE_NAME:
            return "Date"
        if schema.name == TIME_NAME:
            return "Time"
        if schema.type == STRING:
            return "string"
        if schema.type == INT64:
            return "unix"
        raise DataError(f"Schema {schema} does not correspond to a known timestamp type format")

    @staticmethod
    def _kind_of_value(value: Any) -> str:
        if isinstance(value, (dt.date, dt.time)):
            return "Timestamp"
        if isinstance(value, int) and not isinstance(value, bool):
            return "unix"
        if isinstance(value, str):
            return "string"
        raise DataError(f"TimestampConverter does not support {java_class(value)} objects as timestamps")

    def _convert(self, value: Any, kind: str | None = None) -> Any:
        if value is None:
            return None
        return self._to_type(self._to_raw(kind or self._kind_of_value(value), value))

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            if value is None or not self.field:
                return self.new_record(record, None, self._convert(value))
            value = require_map(value, "converting timestamp formats")
            return self.new_record(record, None, _with_puts(value, [(self.field, self._convert(value.get(self.field)))]))
        if not self.field:
            return self.new_record(record, self._type_schema(schema.optional), self._convert(value, self._kind_of_schema(schema)))
        struct = require_struct(value, "converting timestamp formats") if value is not None else None
        fields = [(f.name, self._type_schema(f.schema.optional) if f.name == self.field else f.schema)
                  for f in schema.fields]
        base = copy_basics(schema)
        updated_schema = struct_schema(fields, name=base.name, version=base.version, doc=base.doc,
                                       parameters=base.parameters, optional=schema.optional)
        if schema.default is not None:
            updated_schema = updated_schema.replace(default=self._struct(schema.default, updated_schema))
        return self.new_record(record, updated_schema, self._struct(struct, updated_schema))

    def _struct(self, value: Struct | None, schema: Schema) -> Struct | None:
        if value is None:
            return None
        updated = Struct(schema)
        for f in value.schema.fields:
            original = field_value(value, f.name, self.replace_null)
            updated.put(f.name, self._convert(original, self._kind_of_schema(f.schema)) if f.name == self.field
                        else original)
        return updated


TimestampConverterKey, TimestampConverterValue = variants(TimestampConverter, PKG, "TimestampConverter")
