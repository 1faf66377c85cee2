"""airconnect's own transform for the inventory flow: a CSV text line becomes a struct with named,
typed fields, which a sink that needs columns (a JDBC sink's upsert) can write.

``ITEM001,SHOP001,929,2018-10-01 01:01:01`` with ``fields=item_id,shop_id,stock,changed_at`` and
``types=string,string,int32,timestamp`` becomes::

    {"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"item_id"}, ...,
      {"type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1,
       "field":"changed_at"}],"optional":false,"name":"zaiko"},
     "payload":{"item_id":"ITEM001","shop_id":"SHOP001","stock":929,"changed_at":1538355661000}}
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import zoneinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from airconnect.core.config import REQUIRED, Key, check_timezone
from airconnect.core.data import (
    BOOLEAN,
    DATE_NAME,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    TIME_NAME,
    TIMESTAMP_NAME,
    ConnectRecord,
    Schema,
    Struct,
    decimal_schema,
    struct_schema,
    unscaled_decimal,
)
from airconnect.core.errors import DataError
from airconnect.transforms.base import OptionError, Transform, not_empty, variants

_DECIMAL: Final = re.compile(r"decimal\((\d+)\)")
_SIMPLE: Final = {"string": STRING, "int8": INT8, "int16": INT16, "int32": INT32, "int64": INT64,
                  "float32": FLOAT32, "float64": FLOAT64, "boolean": BOOLEAN}
_BITS: Final = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
TYPE_NAMES: Final = (*_SIMPLE, "decimal(N)", "date", "time", "timestamp")


def _check_types(value: list[str]) -> str | None:
    for t in value:
        if t.lower() not in _SIMPLE and t.lower() not in ("date", "time", "timestamp") and not _DECIMAL.fullmatch(t.lower()):
            return "a list of field types, each one of " + ", ".join(TYPE_NAMES) + f" (not {t!r})"
    return None


def _check_separator(value: str) -> str | None:
    return None if len(value) == 1 else "one character, such as ',' or ';' (\\t for a tab)"


class ParseCsv(Transform):
    """airconnect's: parse a CSV text line (the key or value, a string) into a struct whose fields
    are named by ``fields`` and typed by ``types`` (string, int8-int64, float32/64, boolean,
    decimal(N), date, time, timestamp). Quoted fields follow RFC 4180. A line that does not fit
    (another number of fields, a value that is not of its type) is a data error, which
    ``errors.tolerance`` decides about. Tombstones pass unchanged."""

    keys = (
        Key("fields", "list", REQUIRED, "The field names, in the order of the line's columns.", check=not_empty),
        Key("types", "list", [], "Each field's type, in the same order (default: every field a string).",
            check=_check_types),
        Key("separator", "string", ",", "The column separator, one character (\\t: a tab)."),
        Key("timestamp.format", "string", "%Y-%m-%d %H:%M:%S", "How timestamp columns are written "
            "(Python strptime; ISO-8601 text is always accepted)."),
        Key("date.format", "string", "%Y-%m-%d", "How date columns are written (Python strptime)."),
        Key("timezone", "string", "UTC", "The time zone of timestamp columns without one (IANA name).",
            check=check_timezone),
        Key("schema.name", "string", None, "The name of the struct's schema (e.g. the table it describes)."),
    )

    def configure(self, options: dict[str, Any]) -> None:
        self.names: list[str] = options["fields"]
        if len(set(self.names)) != len(self.names):
            raise OptionError("fields", "must not name a field twice")
        types = [t.lower() for t in options["types"]] or ["string"] * len(self.names)
        if len(types) != len(self.names):
            raise OptionError("types", f"must have one type per field: {len(self.names)} fields, {len(types)} types")
        separator = options["separator"].replace("\\t", "\t")
        problem = _check_separator(separator)
        if problem:
            raise OptionError("separator", f"expected {problem}, got {options['separator']!r}")
        self.separator = separator
        self.ts_format = options["timestamp.format"]
        self.date_format = options["date.format"]
        self.zone = zoneinfo.ZoneInfo(options["timezone"])
        schemas: list[tuple[str, Schema]] = []
        for name, t in zip(self.names, types):
            m = _DECIMAL.fullmatch(t)
            if m:
                schemas.append((name, decimal_schema(int(m.group(1)))))
            elif t == "date":
                schemas.append((name, Schema(INT32, name=DATE_NAME, version=1)))
            elif t == "time":
                schemas.append((name, Schema(INT32, name=TIME_NAME, version=1)))
            elif t == "timestamp":
                schemas.append((name, Schema(INT64, name=TIMESTAMP_NAME, version=1)))
            else:
                schemas.append((name, Schema(_SIMPLE[t])))
        self.schema = struct_schema(schemas, name=options["schema.name"])

    def _typed(self, schema: Schema, text: str) -> Any:
        if schema.name == TIMESTAMP_NAME:
            try:
                moment = dt.datetime.strptime(text, self.ts_format)
            except ValueError:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment.replace(tzinfo=self.zone) if moment.tzinfo is None else moment
        if schema.name == DATE_NAME:
            return dt.datetime.strptime(text, self.date_format).date()
        if schema.name == TIME_NAME:
            return dt.time.fromisoformat(text)
        if schema.parameters and "scale" in schema.parameters:
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise ValueError(text) from None
            return unscaled_decimal(number, int(schema.parameters["scale"]))
        if schema.type in _BITS:
            number_int = int(text)
            bits = _BITS[schema.type]
            if not -(1 << (bits - 1)) <= number_int < (1 << (bits - 1)):
                raise ValueError(text)
            return number_int
        if schema.type in (FLOAT32, FLOAT64):
            return float(text)
        if schema.type == BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        return text

    def apply(self, record: ConnectRecord) -> ConnectRecord:
        value = self.operating_value(record)
        if value is None:
            return record
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8")
        if not isinstance(value, str):
            raise DataError(f"expected a text line, got a {type(value).__name__}")
        columns = next(csv.reader([value], delimiter=self.separator), [])
        if len(columns) != len(self.names):
            raise DataError(f"the line {value!r} has {len(columns)} field(s); expected {len(self.names)} "
                            f"({', '.join(self.names)})")
        struct = Struct(self.schema)
        for f, text in zip(self.schema.fields, columns):
            try:
                struct.put(f.name, self._typed(f.schema, text.strip()))
            except (ValueError, InvalidOperation, OverflowError):
                raise DataError(f"the line {value!r}: field {f.name!r} is {text!r}, not a "
                                f"{_type_name(f.schema)}") from None
        return self.new_record(record, self.schema, struct)


def _type_name(schema: Schema) -> str:
    if schema.name:
        return schema.name.rsplit(".", 1)[-1].lower()
    return schema.type


ParseCsvKey, ParseCsvValue = variants(ParseCsv, "airconnect.transforms", "ParseCsv")
