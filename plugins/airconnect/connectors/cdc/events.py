"""Debezium's change events, byte for byte where the values allow: the envelope (``before``,
``after``, ``source``, ``transaction``, ``op``, ``ts_ms``/``ts_us``/``ts_ns``), the key struct,
and JsonConverter's schema envelope around both (Debezium 3.x's shapes: envelope version 2, the
``io.debezium.time.*`` / ``io.debezium.data.*`` logical types with ``time.precision.mode=adaptive``,
``decimal.handling.mode`` precise / double / string).

A column is a :class:`Column`: its Connect schema (a dict, written once per table into each
record's schema envelope) and a function from the value the database hands out (wal2json's JSON
value, a ``::text`` cast, a binlog row's Python value) to the JSON value Debezium writes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson

from airconnect.core.errors import DataError

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
#: The hot path's encoder: compact, raw UTF-8 (as Jackson writes), a few times faster than json's.
dumps: Final = orjson.dumps
EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
#: Debezium's snapshot marker values (io.debezium.data.Enum "allowed").
SNAPSHOT_ALLOWED: Final = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"


@dataclass(frozen=True)
class Column:
    name: str
    schema: dict[str, Any]  # Connect's field schema without "field"
    convert: Callable[[Any], Any]
    #: What Debezium writes for this column when a delete's old row lacks it (a NOT NULL
    #: column outside the replica identity): its default, else the type's zero value ("" / 0 / false).
    missing: Any = None
    #: What a NULL is written as: Connect's JsonConverter writes a field's default in its place
    #: (replace.null.with.default, true by default).
    null: Any = None

    @property
    def optional(self) -> bool:
        return bool(self.schema.get("optional"))


def field_schema(column: Column) -> dict[str, Any]:
    return {**column.schema, "field": column.name}


# ----------------------------------------------------------------------------- value conversions

def unscaled(value: Any, scale: int) -> int:
    """The unscaled integer of a decimal at ``scale`` (exact, any precision)."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    sign, digits, exponent = d.as_tuple()
    if not isinstance(exponent, int):
        raise DataError(f"{value!r} is not a finite number (NaN and infinities have no Decimal form)")
    n = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    if shift >= 0:
        n *= 10 ** shift
    else:  # more digits than the column's scale: what Decimal's HALF_UP rescale would give
        q, r = divmod(n, 10 ** -shift)
        n = q + (1 if r * 2 >= 10 ** -shift else 0)
    return -n if sign else n


def twos_complement(n: int) -> bytes:
    """Java's ``BigInteger.toByteArray``: the shortest big-endian two's complement."""
    return n.to_bytes(((n if n >= 0 else ~n).bit_length() // 8) + 1, "big", signed=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decimal_column(name: str, optional: bool, precision: int | None, scale: int | None, mode: str) -> Column:
    """numeric(p,s) / DECIMAL(p,s): Connect's Decimal (bytes), a double or a string, as Debezium's
    ``decimal.handling.mode``; numeric without a scale: Debezium's VariableScaleDecimal struct."""
    if mode == "double":
        return Column(name, {"type": "double", "optional": optional}, lambda v: float(v), 0.0)
    if mode == "string":
        return Column(name, {"type": "string", "optional": optional},
                      lambda v: format(v if isinstance(v, Decimal) else Decimal(str(v)), "f"), "")
    if scale is None:
        def variable(v: Any) -> Any:
            d = v if isinstance(v, Decimal) else Decimal(str(v))
            exponent = d.as_tuple().exponent
            s = -exponent if isinstance(exponent, int) else 0
            return {"scale": s, "value": b64(twos_complement(unscaled(d, s)))}
        return Column(name, {"type": "struct", "fields": [
            {"type": "int32", "optional": False, "field": "scale"},
            {"type": "bytes", "optional": False, "field": "value"}],
            "optional": optional, "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
            "doc": "Variable scaled decimal"}, variable)
    params = {"scale": str(scale)}
    if precision is not None:
        params["connect.decimal.precision"] = str(precision)
    return Column(name, {"type": "bytes", "optional": optional, "name": "org.apache.kafka.connect.data.Decimal",
                         "version": 1, "parameters": params},
                  lambda v: b64(twos_complement(unscaled(v, scale))))


def _int(v: Any) -> int:
    return v if type(v) is int else int(v)


def _float(v: Any) -> float:
    return v if type(v) is float else float(v)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v != 0
    if isinstance(v, (bytes, bytearray)):  # MariaDB's BIT(1) as the client library reads it: b"\x01"
        return any(v)
    return v in ("t", "true", "1")


def _date_days(v: Any) -> int:
    if isinstance(v, dt.date):
        return v.toordinal() - EPOCH_ORDINAL
    return dt.date.fromisoformat(v[:10]).toordinal() - EPOCH_ORDINAL


_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")


def micros_of_naive(v: Any) -> int:
    """A timestamp without time zone as microseconds since the epoch (its wall time read as UTC,
    as Debezium's MicroTimestamp)."""
    if isinstance(v, dt.datetime):
        d = v.replace(tzinfo=None)
        return ((d.toordinal() - EPOCH_ORDINAL) * 86400 + d.hour * 3600 + d.minute * 60 + d.second) * 1_000_000 \
            + d.microsecond
    m = _TS.match(v)
    if m is None:
        raise DataError(f"cannot read {v!r} as a timestamp")
    y, mo, d_, h, mi, s, frac = m.groups()
    days = dt.date(int(y), int(mo), int(d_)).toordinal() - EPOCH_ORDINAL
    return (days * 86400 + int(h) * 3600 + int(mi) * 60 + int(s)) * 1_000_000 + int((frac or "0").ljust(6, "0"))


def _time_micros(v: Any) -> int:
    if isinstance(v, dt.timedelta):
        return v // dt.timedelta(microseconds=1)
    if isinstance(v, dt.time):
        return (v.hour * 3600 + v.minute * 60 + v.second) * 1_000_000 + v.microsecond
    hms, _, frac = v.partition(".")
    h, mi, s = (int(p) for p in hms.split(":"))
    return (h * 3600 + mi * 60 + s) * 1_000_000 + int((frac or "0").ljust(6, "0")[:6])


def zoned_iso(v: Any, width: int = 0) -> str:
    """io.debezium.time.ZonedTimestamp: ISO-8601 in UTC with ``Z``; the fraction with exactly
    ``width`` digits (the column's precision, as Debezium writes it), or without trailing zeros
    when ``width`` is 0. ``v`` is PostgreSQL's text in a UTC session, or a datetime (UTC if naive)."""
    if isinstance(v, str) and len(v) >= 22 and v.endswith("+00") and v[10] == " ":
        whole, _, frac = v[11:-3].partition(".")
        text = v[:10] + "T" + whole
    else:
        d = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(v)
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)
        d = d.astimezone(dt.timezone.utc)
        text = d.strftime("%Y-%m-%dT%H:%M:%S")
        frac = f"{d.microsecond:06d}" if d.microsecond else ""
    if width > 0:
        return text + "." + frac.ljust(width, "0")[:max(width, len(frac.rstrip("0")))] + "Z"
    frac = frac.rstrip("0")
    return text + ("." + frac if frac else "") + "Z"


def _bytes_b64(v: Any) -> str:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return b64(bytes(v))
    text = v[2:] if v.startswith("\\x") else v
    return b64(bytes.fromhex(text))


def _text(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def logical(name: str, type_: str, optional: bool, convert: Callable[[Any], Any], missing: Any = None,
            version: int | None = 1) -> Column:
    schema: dict[str, Any] = {"type": type_, "optional": optional, "name": name}
    if version is not None:
        schema["version"] = version
    return Column("", schema, convert, missing)


def plain(type_: str, optional: bool, convert: Callable[[Any], Any], missing: Any) -> Column:
    return Column("", {"type": type_, "optional": optional}, convert, missing)


def named(column: Column, name: str) -> Column:
    """The column called ``name``; a NULL in a NOT NULL column (MariaDB's zero date, read as None)
    is written as the type's zero value, as Debezium does."""
    zero = None if column.optional else column.missing
    return Column(name, column.schema, column.convert, zero, zero)


INT_TYPES: Final = {"int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64"}


def int_column(name: str, connect_type: str, optional: bool) -> Column:
    return named(plain(connect_type, optional, _int, 0), name)


def float_column(name: str, connect_type: str, optional: bool) -> Column:
    return named(plain(connect_type, optional, _float, 0.0), name)


def bool_column(name: str, optional: bool) -> Column:
    return named(plain("boolean", optional, _bool, False), name)


def string_column(name: str, optional: bool, logical_name: str | None = None) -> Column:
    if logical_name:
        return named(logical(logical_name, "string", optional, _text, ""), name)
    return named(plain("string", optional, _text, ""), name)


def bytes_column(name: str, optional: bool) -> Column:
    return named(plain("bytes", optional, _bytes_b64, ""), name)


def _bits(v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, (bytes, bytearray)):  # the client library's BIT(n): big-endian bytes
        return int.from_bytes(v, "big")
    return int(v, 2) if v else 0  # text ("101000000011", the most significant bit first; B'' is "")


def bits_column(name: str, optional: bool, length: int, *, padded: bool) -> Column:
    """bit(n > 1) as Debezium writes it: io.debezium.data.Bits, the bits as little-endian bytes
    (Java's BitSet.toByteArray: as few as the highest set bit needs); ``padded`` (its MariaDB
    connector): always n/8 bytes rounded up."""
    width = (length + 7) // 8

    def convert(v: Any) -> str:
        n = _bits(v)
        return b64(n.to_bytes(width if padded else (n.bit_length() + 7) // 8, "little"))
    column = logical("io.debezium.data.Bits", "bytes", optional, convert, b64(bytes(width if padded else 0)))
    column.schema["parameters"] = {"length": str(length)}
    return named(column, name)


def date_column(name: str, optional: bool) -> Column:
    return named(logical("io.debezium.time.Date", "int32", optional, _date_days, 0), name)


def timestamp_column(name: str, optional: bool, precision: int) -> Column:
    """A timestamp without zone: Timestamp (ms, precision <= 3) or MicroTimestamp (adaptive)."""
    if precision <= 3:
        return named(logical("io.debezium.time.Timestamp", "int64", optional,
                             lambda v: micros_of_naive(v) // 1000, 0), name)
    return named(logical("io.debezium.time.MicroTimestamp", "int64", optional, micros_of_naive, 0), name)


def zoned_timestamp_column(name: str, optional: bool, width: int = 0) -> Column:
    def convert(v: Any) -> str:
        return zoned_iso(v, width)
    return named(logical("io.debezium.time.ZonedTimestamp", "string", optional, convert, ""), name)


def with_default(column: Column, raw: Any) -> Column:
    """The column with its constant default in the schema (as Debezium writes it) and as the value
    of a NOT NULL column that a delete's old row lacks."""
    try:
        value = column.convert(raw)
    except (ValueError, TypeError, ArithmeticError, DataError):
        return column
    return Column(column.name, {**column.schema, "default": value}, column.convert, value, value)


def time_column(name: str, optional: bool, precision: int) -> Column:
    if precision <= 3:
        return named(logical("io.debezium.time.Time", "int32", optional, lambda v: _time_micros(v) // 1000, 0), name)
    return named(logical("io.debezium.time.MicroTime", "int64", optional, _time_micros, 0), name)


# ----------------------------------------------------------------------------- the envelope

SourceField = tuple[str, str, bool]  # name, Connect type, optional


def source_schema(struct_name: str, fields: Sequence[SourceField]) -> dict[str, Any]:
    out = []
    for fname, ftype, optional in fields:
        if fname == "snapshot":
            out.append({"type": "string", "optional": True, "name": "io.debezium.data.Enum", "version": 1,
                        "parameters": {"allowed": SNAPSHOT_ALLOWED}, "default": "false", "field": "snapshot"})
        else:
            out.append({"type": ftype, "optional": optional, "field": fname})
    return {"type": "struct", "fields": out, "optional": False, "name": struct_name, "version": 1, "field": "source"}


TRANSACTION_SCHEMA: Final = {"type": "struct", "fields": [
    {"type": "string", "optional": False, "field": "id"},
    {"type": "int64", "optional": False, "field": "total_order"},
    {"type": "int64", "optional": False, "field": "data_collection_order"}],
    "optional": True, "name": "event.block", "version": 1, "field": "transaction"}


class TableEvents:
    """The records of one table: its topic, key and value schemas (encoded once), and
    :meth:`value` / :meth:`key` for each change."""

    def __init__(self, *, topic: str, record_name: str, columns: Sequence[Column], key_columns: Sequence[str],
                 source: Mapping[str, Any], key_schemas: bool, value_schemas: bool):
        self.topic = topic
        self.columns = list(columns)
        self.by_name = {c.name: c for c in self.columns}
        self.key_columns = [self.by_name[k] for k in key_columns if k in self.by_name]
        self.key_schemas = key_schemas
        self.value_schemas = value_schemas
        row_fields = [field_schema(c) for c in self.columns]
        row = {"type": "struct", "fields": row_fields, "optional": True, "name": f"{record_name}.Value"}
        envelope = {"type": "struct", "fields": [
            {**row, "field": "before"}, {**row, "field": "after"}, dict(source), TRANSACTION_SCHEMA,
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "ts_us"},
            {"type": "int64", "optional": True, "field": "ts_ns"}],
            "optional": False, "name": f"{record_name}.Envelope", "version": 2}
        self._value_head = b'{"schema":' + _dumps(envelope).encode() + b',"payload":'
        key = {"type": "struct", "fields": [{**c.schema, "optional": False, "field": c.name} for c in self.key_columns],
               "optional": False, "name": f"{record_name}.Key"}
        self._key_head = b'{"schema":' + _dumps(key).encode() + b',"payload":'

    def row(self, values: Mapping[str, Any], *, fill_missing: bool = False) -> dict[str, Any]:
        """The ``before``/``after`` struct of a row (column name -> database value)."""
        out: dict[str, Any] = {}
        for c in self.columns:
            if c.name in values:
                v = values[c.name]
                try:
                    out[c.name] = c.null if v is None else c.convert(v)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise DataError(f"column {c.name!r}: cannot convert {v!r} ({exc})") from None
                except DataError as exc:
                    raise DataError(f"column {c.name!r}: {exc}") from None
            else:
                out[c.name] = c.missing if fill_missing else c.null
        return out

    def key(self, row: Mapping[str, Any]) -> bytes | None:
        if not self.key_columns:
            return None
        payload = dumps({c.name: row.get(c.name) for c in self.key_columns})
        return self._key_head + payload + b"}" if self.key_schemas else payload

    def value(self, before: dict[str, Any] | None, after: dict[str, Any] | None, source: bytes,
              op: str, now_ns: int | None = None) -> bytes:
        """The change event; ``source`` is its source block, already JSON (:func:`dumps`)."""
        ns = time.time_ns() if now_ns is None else now_ns
        payload = (b'{"before":' + (b"null" if before is None else dumps(before))
                   + b',"after":' + (b"null" if after is None else dumps(after))
                   + b',"source":' + source + b',"transaction":null,"op":"' + op.encode()
                   + b'","ts_ms":%d,"ts_us":%d,"ts_ns":%d}' % (ns // 1_000_000, ns // 1000, ns))
        return self._value_head + payload + b"}" if self.value_schemas else payload


#: A first snapshot is one Kafka transaction; the producer's transaction.timeout.ms is 120 s.
SNAPSHOT_SECONDS_MAX: Final = 110.0


def snapshot_too_long(connector: str, seconds: float, records: int) -> str:
    return (f"connector '{connector}', key 'snapshot.mode': the first snapshot ({records:,} rows so far) took "
            f"{seconds:.0f} s, longer than one Kafka transaction may stay open (120 s): nothing of it was delivered. "
            "Snapshot fewer tables at a time (table.include.list, adding the others later with a second "
            "connector), or start from the log's end (snapshot.mode=no_data) and load the existing rows otherwise "
            "(the JDBC source in bulk mode)")


def airconnect_version() -> str:
    try:
        from importlib.metadata import version

        return "airconnect-" + version("airconnect")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a source checkout)
        return "airconnect"
