"""Kafka Connect's whole-record transforms and its predicates: RegexRouter, TimestampRouter,
Filter, HeaderFrom, InsertHeader, DropHeaders; TopicNameMatches, HasHeaderKey, RecordIsTombstone."""

from __future__ import annotations

import math
import re
import struct as _struct
from decimal import Decimal
from typing import Any, Final

from airconnect.core.config import REQUIRED, Key
from airconnect.core.data import (
    OPTIONAL_STRING_SCHEMA,
    ConnectRecord,
    Header,
    Struct,
    copy_capacity,
    java_double,
    java_map,
    struct_schema,
)
from airconnect.core.errors import DataError
from airconnect.transforms.base import (
    REPLACE_NULL,
    OptionError,
    Predicate,
    SimpleDateFormat,
    Transform,
    check_date_format,
    compile_java_regex,
    copy_basics,
    field_value,
    java_regex,
    java_replacement,
    not_empty,
    require_map,
    require_struct,
    variants,
)

PKG: Final = "org.apache.kafka.connect.transforms"


class RegexRouter(Transform):
    """Change the topic of records whose topic matches ``regex`` (all of it) to ``replacement``
    (``$1`` and ``${name}`` refer to its groups)."""

    class_names = (f"{PKG}.RegexRouter",)
    keys = (
        Key("regex", "string", REQUIRED, "Regular expression (Java syntax) the whole topic must match.", check=java_regex),
        Key("replacement", "string", REQUIRED, "Replacement string ($1, ${name}: the groups)."),
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.regex = compile_java_regex(options["regex"])
        self.replacement = java_replacement(options["replacement"])

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        if self.regex.fullmatch(record.topic) is None:
            return record
        return record.new_record(topic=self.regex.sub(self.replacement, record.topic, count=1))


class TimestampRouter(Transform):
    """Change the topic to ``topic.format`` with ``${topic}`` and ``${timestamp}`` (the record's
    timestamp, as ``timestamp.format`` in UTC) replaced."""

    class_names = (f"{PKG}.TimestampRouter",)
    keys = (
        Key("topic.format", "string", "${topic}-${timestamp}", "Format string with ${topic} and ${timestamp}."),
        Key("timestamp.format", "string", "yyyyMMdd", "SimpleDateFormat pattern for the timestamp (UTC).",
            check=check_date_format),
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.topic_format = options["topic.format"]
        self.format = SimpleDateFormat(options["timestamp.format"])

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        if record.timestamp is None:
            raise DataError(f"Timestamp missing on record: topic {record.topic}")
        stamp = self.format.format(record.timestamp)
        topic = self.topic_format.replace("${topic}", record.topic).replace("${timestamp}", stamp)
        return record.new_record(topic=topic)


class Filter(Transform):
    """Drop every record (with a predicate: the records that match it, or with ``negate``, those that do not)."""

    class_names = (f"{PKG}.Filter",)

    def apply(self, record: ConnectRecord) -> None:
        return None


class DropHeaders(Transform):
    """Remove the headers with the given names."""

    class_names = (f"{PKG}.DropHeaders",)
    keys = (Key("headers", "list", REQUIRED, "The names of the headers to remove.", check=not_empty),)

    def configure(self, options: dict[str, Any]) -> None:
        self.names = set(options["headers"])

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        return record.new_record(headers=[h for h in record.headers if h.key not in self.names])


_NUMBER: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def literal_text(literal: str) -> str | None:
    """The header bytes' text Connect writes for ``value.literal``: it parses the literal
    (``Values.parseString``) and the StringConverter writes it back, so ``1.50`` becomes ``1.5``,
    ``1e5`` ``100000`` and ``null`` no value at all; other text stays as it is."""
    if literal == "null":
        return None
    if literal in ("true", "false"):
        return literal
    if not _NUMBER.fullmatch(literal):
        return literal
    number = Decimal(literal)
    magnitude = abs(number)
    if not (magnitude > 10 ** 19 or 0 < magnitude < 1) and number == number.to_integral_value():
        whole = int(number)
        if -(1 << 63) <= whole < (1 << 63):
            return str(whole)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent != 0:
        single = _struct.unpack("<f", _struct.pack("<f", float(number)))[0] if abs(number) < Decimal("3.5e38") else math.inf
        if math.isfinite(single):
            return java_double(single, single=True)
        if math.isfinite(float(number)):
            return java_double(float(number))
    return str(number)


class InsertHeader(Transform):
    """Add a header with a literal value to each record."""

    class_names = (f"{PKG}.InsertHeader",)
    keys = (
        Key("header", "string", REQUIRED, "The name of the header."),
        Key("value.literal", "string", REQUIRED, "The literal value of the header on all records."),
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.header = options["header"]
        self.literal = literal_text(options["value.literal"])

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        return record.new_record(headers=[*record.headers, Header(self.header, OPTIONAL_STRING_SCHEMA, self.literal)])


class HeaderFrom(Transform):
    """Move or copy fields of the key or value into headers (``fields`` and ``headers`` pair up)."""

    keys = (
        Key("fields", "list", REQUIRED, "Field names whose values are copied or moved to headers.", check=not_empty),
        Key("headers", "list", REQUIRED, "Header names, in the order of 'fields'.", check=not_empty),
        Key("operation", "string", REQUIRED, "move (remove the fields) or copy (keep them).", choices=("move", "copy")),
        REPLACE_NULL,
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.fields = options["fields"]
        self.headers = options["headers"]
        if len(self.fields) != len(self.headers):
            raise OptionError("headers", "must have as many elements as 'fields'")
        self.move = options["operation"] == "move"
        self.replace_null = options["replace.null.with.default"]

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        schema = self.operating_schema(record)
        headers = list(record.headers)
        purpose = "header " + ("move" if self.move else "copy")
        if schema is None:
            value = require_map(value, purpose)
            updated_map = dict(value)
            for name, header in zip(self.fields, self.headers):
                if self.move:
                    updated_map.pop(name, None)
                headers.append(Header(header, None, value.get(name)))
            return self.new_record(record, None, java_map(updated_map, _copy_cap(value)), headers)
        struct = require_struct(value, purpose)
        if self.move:
            base = copy_basics(schema)
            moved = set(self.fields)
            updated_schema = struct_schema([(f.name, f.schema) for f in schema.fields if f.name not in moved],
                                           name=base.name, version=base.version, doc=base.doc,
                                           parameters=base.parameters)
            updated: Struct = Struct(updated_schema)
            for f in updated_schema.fields:
                updated.put(f.name, field_value(struct, f.name, self.replace_null))
        else:
            updated_schema, updated = schema, struct
        for name, header in zip(self.fields, self.headers):
            found = schema.field(name)
            if found is None:  # Connect: a NullPointerException
                raise DataError(f"field {name!r} is not in the schema ({schema})")
            fvalue = field_value(struct, name, self.replace_null) if struct.schema.field(name) is not None else None
            headers.append(Header(header, found.schema, fvalue))
        return self.new_record(record, updated_schema, updated, headers)


def _copy_cap(value: dict[str, Any]) -> int:
    return copy_capacity(len(value))


HeaderFromKey, HeaderFromValue = variants(HeaderFrom, PKG, "HeaderFrom")


# ---------------------------------------------------------------- predicates

PREDICATES_PKG: Final = f"{PKG}.predicates"


class TopicNameMatches(Predicate):
    """True for records whose topic matches ``pattern`` (a Java regular expression, the whole topic)."""

    class_names = (f"{PREDICATES_PKG}.TopicNameMatches",)
    keys = (Key("pattern", "string", REQUIRED, "A Java regular expression matched against the record's topic.",
                check=lambda v: not_empty(v) or java_regex(v)),)

    def configure(self, options: dict[str, Any]) -> None:
        self.pattern = compile_java_regex(options["pattern"])

    def test(self, record: ConnectRecord) -> bool:
        return record.topic is not None and self.pattern.fullmatch(record.topic) is not None


class HasHeaderKey(Predicate):
    """True for records with at least one header called ``name``."""

    class_names = (f"{PREDICATES_PKG}.HasHeaderKey",)
    keys = (Key("name", "string", REQUIRED, "The header name.", check=not_empty),)

    def configure(self, options: dict[str, Any]) -> None:
        self.name = options["name"]

    def test(self, record: ConnectRecord) -> bool:
        return any(h.key == self.name for h in record.headers)


class RecordIsTombstone(Predicate):
    """True for tombstones (records whose value is null)."""

    class_names = (f"{PREDICATES_PKG}.RecordIsTombstone",)

    def test(self, record: ConnectRecord) -> bool:
        return record.value is None
