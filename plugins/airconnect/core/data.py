"""Kafka Connect's data model and its JsonConverter, both ways, byte for byte (``connect-api``'s
``org.apache.kafka.connect.data`` and ``connect-json`` 4.1).

A record's key and value are a :class:`Schema` (or ``None``: schemaless) and a value:

================  =======================================================
Connect type      Python value
================  =======================================================
int8 … int64      ``int``
float32, float64  ``float``
boolean           ``bool``
string            ``str``
bytes             ``bytes``
array             ``list``
map               ``dict`` (its order is Java ``HashMap``'s, see below)
struct            :class:`Struct`
Decimal           ``decimal.Decimal`` (its exponent is ``-scale``)
Date / Time       ``datetime.date`` / ``datetime.time``
Timestamp         ``datetime.datetime`` (UTC)
================  =======================================================

:func:`to_connect` is ``JsonConverter.toConnectData`` and :func:`from_connect` its
``fromConnectData``: the schema envelope's key order, Jackson's number forms (Java's
``Double.toString``, ``BigDecimal.toString``), Jackson's string escapes, Base64 for bytes.

Maps: Connect holds a schemaless JSON object (and a map value) in a ``java.util.HashMap``, so the
JSON it writes lists the keys in HashMap order, not in the order they came in. :func:`java_map`
gives a ``dict`` that order (``String.hashCode`` buckets of the table size a HashMap of that
history has); a transform that makes a map the way Connect's does (``new HashMap<>(value)``,
``new HashMap<>(n)``) uses it, so the bytes match.

Nothing here imports Airflow.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import math
import re
import struct as _struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, NamedTuple

from airconnect.core.errors import DataError

INT8: Final = "int8"
INT16: Final = "int16"
INT32: Final = "int32"
INT64: Final = "int64"
FLOAT32: Final = "float32"
FLOAT64: Final = "float64"
BOOLEAN: Final = "boolean"
STRING: Final = "string"
BYTES: Final = "bytes"
ARRAY: Final = "array"
MAP: Final = "map"
STRUCT: Final = "struct"
TYPES: Final = (INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING, BYTES, ARRAY, MAP, STRUCT)
PRIMITIVES: Final = frozenset(TYPES[:9])

DECIMAL_NAME: Final = "org.apache.kafka.connect.data.Decimal"
DATE_NAME: Final = "org.apache.kafka.connect.data.Date"
TIME_NAME: Final = "org.apache.kafka.connect.data.Time"
TIMESTAMP_NAME: Final = "org.apache.kafka.connect.data.Timestamp"
SCALE: Final = "scale"

#: Connect's type names on the wire (JsonSchema): float32 and float64 are "float" and "double".
_JSON_TYPE: Final = {FLOAT32: "float", FLOAT64: "double"}
_FROM_JSON_TYPE: Final = {"float": FLOAT32, "double": FLOAT64, **{t: t for t in TYPES if t not in (FLOAT32, FLOAT64)}}

_BITS: Final = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}


@dataclass(frozen=True)
class Field:
    """A struct's field: its name, its position, its schema."""

    name: str
    index: int
    schema: Schema


@dataclass(frozen=True)
class Schema:
    """Connect's ``Schema`` (``ConnectSchema``); equal when every part is equal, as in Java."""

    type: str
    optional: bool = False
    default: Any = None
    name: str | None = None
    version: int | None = None
    doc: str | None = None
    parameters: dict[str, str] | None = None
    fields: tuple[Field, ...] = ()
    key_schema: Schema | None = None
    value_schema: Schema | None = None
    _by_name: dict[str, Field] = field(default_factory=dict, init=False, repr=False, compare=False)
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown Connect schema type {self.type!r}")
        self._by_name.update({f.name: f for f in self.fields})
        object.__setattr__(self, "_hash", hash((self.type, self.optional, self.name, self.version, self.fields,
                                                self.key_schema, self.value_schema)))

    def __hash__(self) -> int:
        return self._hash

    def field(self, name: str) -> Field | None:
        """The field called ``name``, or ``None``."""
        return self._by_name.get(name)

    @property
    def is_primitive(self) -> bool:
        return self.type in PRIMITIVES

    def replace(self, **changes: Any) -> Schema:
        """A copy with some parts changed (``SchemaBuilder`` copying a schema)."""
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:  # ConnectSchema.toString
        if self.name is not None:
            return f"Schema{{{self.name}:{self.type.upper()}}}"
        return f"Schema{{{self.type.upper()}}}"


def struct_schema(fields: Iterable[tuple[str, Schema]], *, name: str | None = None, optional: bool = False,
                  version: int | None = None, doc: str | None = None, parameters: dict[str, str] | None = None,
                  default: Any = None) -> Schema:
    """A struct schema with ``fields`` in order (``SchemaBuilder.struct().field(...)...build()``)."""
    made: list[Field] = []
    seen: set[str] = set()
    for i, (fname, fschema) in enumerate(fields):
        if fname in seen:
            raise DataError(f"Cannot create field because of field name duplication {fname}")
        seen.add(fname)
        made.append(Field(fname, i, fschema))
    return Schema(STRUCT, optional=optional, name=name, version=version, doc=doc, parameters=parameters,
                  fields=tuple(made), default=default)


def array_schema(value_schema: Schema, *, optional: bool = False) -> Schema:
    return Schema(ARRAY, optional=optional, value_schema=value_schema)


def map_schema(key_schema: Schema, value_schema: Schema, *, optional: bool = False) -> Schema:
    return Schema(MAP, optional=optional, key_schema=key_schema, value_schema=value_schema)


def decimal_schema(scale: int, *, optional: bool = False) -> Schema:
    """``Decimal.schema(scale)``: bytes named ``org.apache.kafka.connect.data.Decimal``, version 1."""
    return Schema(BYTES, optional=optional, name=DECIMAL_NAME, version=1, parameters={SCALE: str(scale)})


DATE_SCHEMA: Final = Schema(INT32, name=DATE_NAME, version=1)
TIME_SCHEMA: Final = Schema(INT32, name=TIME_NAME, version=1)
TIMESTAMP_SCHEMA: Final = Schema(INT64, name=TIMESTAMP_NAME, version=1)
STRING_SCHEMA: Final = Schema(STRING)
OPTIONAL_STRING_SCHEMA: Final = Schema(STRING, optional=True)
INT32_SCHEMA: Final = Schema(INT32)
INT64_SCHEMA: Final = Schema(INT64)
OPTIONAL_INT64_SCHEMA: Final = Schema(INT64, optional=True)
FLOAT64_SCHEMA: Final = Schema(FLOAT64)
BOOLEAN_SCHEMA: Final = Schema(BOOLEAN)
BYTES_SCHEMA: Final = Schema(BYTES)


def primitive(type_: str, optional: bool = False) -> Schema:
    return Schema(type_, optional=optional)


class Struct:
    """Connect's ``Struct``: a value for each field of a struct schema."""

    __slots__ = ("schema", "values")

    def __init__(self, schema: Schema, values: Mapping[str, Any] | None = None):
        if schema.type != STRUCT:
            raise DataError(f"Not a struct schema: {schema}")
        self.schema = schema
        self.values: list[Any] = [None] * len(schema.fields)
        for name, value in (values or {}).items():
            self.put(name, value)

    def _field(self, name: str) -> Field:
        f = self.schema.field(name)
        if f is None:
            raise DataError(f"{name} is not a valid field name")
        return f

    def get(self, name: str) -> Any:
        """The field's value, or its schema's default when it has none (``Struct.get``)."""
        f = self._field(name)
        value = self.values[f.index]
        return f.schema.default if value is None else value

    def get_without_default(self, name: str) -> Any:
        return self.values[self._field(name).index]

    def put(self, name: str, value: Any) -> Struct:
        f = self._field(name)
        validate_value(f.schema, value, f'field: "{name}"')
        self.values[f.index] = value
        return self

    def validate(self) -> None:
        for f in self.schema.fields:
            validate_value(f.schema, self.values[f.index], f'field: "{f.name}"')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Struct) and self.schema == other.schema and self.values == other.values

    def __hash__(self) -> int:
        return hash((self.schema, tuple(map(_hashable, self.values))))

    def __repr__(self) -> str:
        return java_string(self)


def _hashable(v: Any) -> Any:
    return repr(v) if isinstance(v, (list, dict)) else v


_CLASSES: Final[dict[str, tuple[type, ...]]] = {
    INT8: (int,), INT16: (int,), INT32: (int,), INT64: (int,), FLOAT32: (float,), FLOAT64: (float,),
    BOOLEAN: (bool,), STRING: (str,), BYTES: (bytes, bytearray), ARRAY: (list,), MAP: (dict,), STRUCT: (Struct,),
}
_LOGICAL_CLASSES: Final[dict[str, tuple[type, ...]]] = {
    DECIMAL_NAME: (Decimal,), DATE_NAME: (dt.date,), TIME_NAME: (dt.time,), TIMESTAMP_NAME: (dt.datetime,),
}
_JAVA_TYPE: Final = {int: "java.lang.Long", float: "java.lang.Double", bool: "java.lang.Boolean",
                     str: "java.lang.String", bytes: "[B", list: "java.util.ArrayList", dict: "java.util.HashMap",
                     Decimal: "java.math.BigDecimal", dt.date: "java.util.Date", dt.datetime: "java.util.Date",
                     dt.time: "java.util.Date"}


def java_class(value: Any) -> str:
    if isinstance(value, Struct):
        return "class org.apache.kafka.connect.data.Struct"
    return "class " + _JAVA_TYPE.get(type(value), type(value).__name__)


def validate_value(schema: Schema, value: Any, location: str = "value") -> None:
    """``ConnectSchema.validateValue``: ``value`` fits ``schema``, or :class:`DataError`."""
    if value is None:
        if not schema.optional:
            raise DataError(f"Invalid value: null used for required {location}, schema type: {schema.type.upper()}")
        return
    expected = _LOGICAL_CLASSES.get(schema.name or "") or _CLASSES[schema.type]
    ok = isinstance(value, expected)
    if ok and schema.type != BOOLEAN and isinstance(value, bool):
        ok = False
    if ok and schema.type in _BITS and (schema.name or "") not in _LOGICAL_CLASSES:
        bits = _BITS[schema.type]
        ok = -(1 << (bits - 1)) <= value < (1 << (bits - 1))
    if not ok:
        named = f' "{schema.name}"' if schema.name is not None else ""
        raise DataError(f"Invalid Java object for schema{named} with type {schema.type.upper()}: "
                        f"{java_class(value)} for {location}")
    if schema.type == STRUCT:
        if value.schema != schema:
            raise DataError("Struct schemas do not match.")
        value.validate()
    elif schema.type == ARRAY:
        assert schema.value_schema is not None
        for item in value:
            validate_value(schema.value_schema, item, f"element of array {location}")
    elif schema.type == MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        for k, v in value.items():
            validate_value(schema.key_schema, k, f"key of map {location}")
            validate_value(schema.value_schema, v, f"value of map {location}")


# ---------------------------------------------------------------- Java's HashMap order

def _java_hash(key: Any) -> int:
    if isinstance(key, str):
        h = 0
        data = key.encode("utf-16-le", "surrogatepass")
        for (unit,) in _struct.iter_unpack("<H", data):
            h = (31 * h + unit) & 0xFFFFFFFF
    elif isinstance(key, bool):
        h = 1231 if key else 1237
    elif isinstance(key, int):
        h = key & 0xFFFFFFFF if -(1 << 31) <= key < (1 << 31) else ((key ^ (key >> 32)) & 0xFFFFFFFF)
    else:
        h = hash(key) & 0xFFFFFFFF
    return h ^ (h >> 16)


def table_size_for(capacity: int) -> int:
    """``HashMap.tableSizeFor``: the power of two a ``new HashMap<>(capacity)`` starts with."""
    n = 1
    while n < capacity:
        n <<= 1
    return n


def copy_capacity(size: int) -> int:
    """The table a ``new HashMap<>(map)`` of ``size`` entries starts with (Java 17's rule)."""
    return table_size_for(int(size / 0.75 + 1.0)) if size else 16


def java_map(items: Mapping[Any, Any] | Iterable[tuple[Any, Any]], capacity: int = 16) -> dict[Any, Any]:
    """A dict in the order a ``java.util.HashMap`` that started with ``capacity`` buckets (16 for
    ``new HashMap<>()``, :func:`table_size_for` of ``n`` for ``new HashMap<>(n)``,
    :func:`copy_capacity` for ``new HashMap<>(map)``) iterates after these puts, in this order."""
    d = dict(items.items() if isinstance(items, Mapping) else items)
    cap = max(1, capacity)
    while len(d) > int(cap * 0.75):
        cap <<= 1
    mask = cap - 1
    return dict(sorted(d.items(), key=lambda kv: _java_hash(kv[0]) & mask))


def hashmap_copy(value: Mapping[Any, Any]) -> dict[Any, Any]:
    """``new HashMap<>(value)``, in Java's order."""
    return java_map(value, copy_capacity(len(value)))


# ---------------------------------------------------------------- Java's text forms

def _shortest(x: float, single: bool) -> str:
    if not single:
        return repr(x)
    for digits in range(1, 10):
        text = f"{x:.{digits}g}"
        if _struct.unpack("<f", _struct.pack("<f", float(text)))[0] == x:
            return text
    return repr(x)


def java_double(x: float, single: bool = False) -> str:
    """Java's ``Double.toString`` (``Float.toString`` when ``single``): ``1.0``, ``0.001``,
    ``1.0E7``, ``1.234E-5``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    text = _shortest(x, single)
    sign = "-" if text.startswith("-") else ""
    text = text.lstrip("-")
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + exp  # position of the decimal point in digits of whole+frac
    lead_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    point -= lead_zeros
    digits = digits.rstrip("0") or "0"
    # value = 0.digits * 10^point
    if 1e-3 <= abs(x) < 1e7:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return f"{sign}{digits}{'0' * (point - len(digits))}.0"
        return f"{sign}{digits[:point]}.{digits[point:]}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{point - 1}"


def java_string(value: Any) -> str:
    """``String.valueOf(value)`` as Connect's StringConverter writes a header or value: ``42``,
    ``true``, ``1.5``, ``Struct{id=1,name=x}``, ``[1, 2]``, ``{a=1}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Struct):
        parts = [f"{f.name}={java_string(v)}" for f, v in zip(value.schema.fields, value.values) if v is not None]
        return "Struct{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{java_string(k)}={java_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    if isinstance(value, (bytes, bytearray)):
        return "[B@" + format(id(value) & 0xFFFFFFF, "x")
    return str(value)


# ---------------------------------------------------------------- logical types

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_DATE: Final = dt.date(1970, 1, 1)
_MS_PER_DAY: Final = 86400000


def scale_of(schema: Schema) -> int:
    text = (schema.parameters or {}).get(SCALE)
    if text is None:
        raise DataError("Invalid Decimal schema: scale parameter not found.")
    return int(text)


def decimal_to_bytes(schema: Schema, value: Decimal) -> bytes:
    """``Decimal.fromLogical``: the unscaled value, two's complement, big-endian, minimal."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent != scale_of(schema):
        raise DataError("BigDecimal has mismatching scale value for given Decimal schema")
    sign, digits, _ = value.as_tuple()
    unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    length = ((unscaled if unscaled >= 0 else ~unscaled).bit_length() + 8) // 8
    return unscaled.to_bytes(length, "big", signed=True)


def decimal_from_bytes(schema: Schema, data: bytes) -> Decimal:
    """``Decimal.toLogical``."""
    unscaled = int.from_bytes(data, "big", signed=True)
    sign, digits, _ = Decimal(unscaled).as_tuple()
    return Decimal((sign, digits, -scale_of(schema)))


def unscaled_decimal(value: Decimal, scale: int) -> Decimal:
    """``value`` with exactly ``scale`` digits after the point (``setScale`` without rounding)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if -exponent == scale:
        return value
    return value.quantize(Decimal((0, (1,), -scale)))


def date_to_days(value: dt.date) -> int:
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.timezone.utc) if value.tzinfo else value
        if (utc.hour, utc.minute, utc.second, utc.microsecond) != (0, 0, 0, 0):
            raise DataError("Kafka Connect Date type should not have any time fields set to non-zero values.")
        value = utc.date()
    return (value - _EPOCH_DATE).days


def days_to_date(days: int) -> dt.date:
    return _EPOCH_DATE + dt.timedelta(days=days)


def time_to_millis(value: dt.time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000


def millis_to_time(ms: int) -> dt.time:
    if not 0 <= ms < _MS_PER_DAY:
        raise DataError("Time values must use number of milliseconds greater than 0 and less than 86400000")
    seconds, millis = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return dt.time(hour, minute, second, millis * 1000)


def timestamp_to_millis(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def millis_to_timestamp(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


# ---------------------------------------------------------------- JSON text (Jackson's)

class _Double(float):
    """A JSON number Jackson writes with ``Double.toString``."""


class _Float(float):
    """A JSON number Jackson writes with ``Float.toString``."""


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
#: What Jackson escapes: ``"``, ``\``, control characters, and (its UTF-8 generator does not
#: combine surrogate pairs by default) every character beyond the Basic Multilingual Plane.
_NEEDS_ESCAPE: Final = re.compile('[\x00-\x1f"\\\\\U00010000-\U0010ffff]')


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    code = ord(c)
    if code > 0xFFFF:  # a surrogate pair, each half escaped: 😀 is \uD83D\uDE00
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"
    return _ESCAPES.get(c) or f"\\u{code:04X}"


def json_string(text: str) -> str:
    """A JSON string as Jackson writes it: ``"``, ``\\`` and control characters escaped
    (``\\u001F``: upper-case hex), characters beyond U+FFFF as escaped surrogate pairs,
    everything else as UTF-8."""
    if _NEEDS_ESCAPE.search(text) is None:
        return '"' + text + '"'
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def write_json(node: Any) -> str:
    """Jackson's compact text of a JSON tree (dicts, lists, str, int, bool, None, ``Decimal``
    = ``BigDecimal.toString``, bytes = Base64, :class:`_Double`/:class:`_Float`)."""
    out: list[str] = []
    _write(node, out.append)
    return "".join(out)


def _write(node: Any, out: Any) -> None:
    if node is None:
        out("null")
    elif node is True:
        out("true")
    elif node is False:
        out("false")
    elif isinstance(node, str):
        out(json_string(node))
    elif isinstance(node, _Float):
        out(_number_or_string(float(node), True))
    elif isinstance(node, float):
        out(_number_or_string(float(node), False))
    elif isinstance(node, int):
        out(str(node))
    elif isinstance(node, Decimal):
        out(str(node))
    elif isinstance(node, (bytes, bytearray)):
        out('"' + base64.b64encode(node).decode("ascii") + '"')
    elif isinstance(node, dict):
        out("{")
        first = True
        for k, v in node.items():
            if not first:
                out(",")
            first = False
            out(json_string(k))
            out(":")
            _write(v, out)
        out("}")
    elif isinstance(node, list):
        out("[")
        for i, v in enumerate(node):
            if i:
                out(",")
            _write(v, out)
        out("]")
    else:  # pragma: no cover - a programming error
        raise TypeError(f"not a JSON node: {type(node).__name__}")


def _number_or_string(x: float, single: bool) -> str:
    text = java_double(x, single)
    return text if math.isfinite(x) else '"' + text + '"'  # Jackson quotes NaN and infinities


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)


def _text(data: bytes) -> str:
    # Jackson detects UTF-16/32 as json does; what Connect writes (UTF-8 starting with '{') skips the check.
    encoding = "utf-8" if data[:1] == b"{" and data[1:2] != b"\x00" else json.detect_encoding(data)
    return data.decode(encoding)


def _read_json(data: bytes) -> Any:
    try:
        return _decoder.decode(_text(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"Converting byte[] to Kafka Connect data failed due to serialization error: {exc}") from None


#: Like JsonConverter's caches: a schema parsed once per distinct envelope schema text, and
#: written once per schema.
_CACHE_SIZE: Final = 1000
_SCHEMAS: dict[str, Schema | None] = {}
_SCHEMA_HEADS: dict[tuple[Schema, str], str] = {}
_ENVELOPE_HEAD: Final = '{"schema":'
_PAYLOAD_KEY: Final = ',"payload":'


def _envelope(data: bytes) -> tuple[Schema | None, Any] | None:
    """An envelope exactly as Connect writes it (``{"schema":…,"payload":…}``, no spaces), parsed
    with its schema from the cache; ``None`` for anything else (the general path decides)."""
    if not data.startswith(b'{"schema":'):
        return None
    try:
        text = data.decode("utf-8")
        node, end = _decoder.raw_decode(text, len(_ENVELOPE_HEAD))
        if not text.startswith(_PAYLOAD_KEY, end):
            return None
        payload, stop = _decoder.raw_decode(text, end + len(_PAYLOAD_KEY))
    except (ValueError, UnicodeDecodeError):
        return None
    if stop != len(text) - 1 or text[stop] != "}":
        return None
    key = text[len(_ENVELOPE_HEAD):end]
    schema = _SCHEMAS.get(key, _MISSING)
    if schema is _MISSING:
        schema = schema_from_json(node)
        if len(_SCHEMAS) < _CACHE_SIZE:
            _SCHEMAS[key] = schema
    return schema, payload  # type: ignore[return-value]


_MISSING: Final = object()


# ---------------------------------------------------------------- JsonConverter

def schema_to_json(schema: Schema, decimal_format: str = "BASE64") -> dict[str, Any]:
    """``JsonConverter.asJsonSchema``: the envelope's ``schema``, in Connect's key order."""
    node: dict[str, Any] = {"type": _JSON_TYPE.get(schema.type, schema.type)}
    if schema.type == ARRAY:
        assert schema.value_schema is not None
        node["items"] = schema_to_json(schema.value_schema, decimal_format)
    elif schema.type == MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        node["keys"] = schema_to_json(schema.key_schema, decimal_format)
        node["values"] = schema_to_json(schema.value_schema, decimal_format)
    elif schema.type == STRUCT:
        node["fields"] = [{**schema_to_json(f.schema, decimal_format), "field": f.name} for f in schema.fields]
    node["optional"] = schema.optional
    if schema.name is not None:
        node["name"] = schema.name
    if schema.version is not None:
        node["version"] = schema.version
    if schema.doc is not None:
        node["doc"] = schema.doc
    if schema.parameters is not None:
        node["parameters"] = dict(schema.parameters)
    if schema.default is not None:
        node["default"] = _to_json(schema, schema.default, decimal_format, True)
    return node


def schema_from_json(node: Any) -> Schema | None:
    """``JsonConverter.asConnectSchema``."""
    if node is None:
        return None
    if not isinstance(node, dict):
        raise DataError("Schema must contain 'type' field")
    type_name = node.get("type")
    if not isinstance(type_name, str):
        raise DataError("Schema must contain 'type' field")
    kind = _FROM_JSON_TYPE.get(type_name)
    if kind is None:
        raise DataError(f"Unknown schema type: {type_name}")
    parts: dict[str, Any] = {}
    if kind == ARRAY:
        items = node.get("items")
        if items is None:
            raise DataError("Array schema did not specify the element type")
        parts["value_schema"] = schema_from_json(items)
    elif kind == MAP:
        if "keys" not in node:
            raise DataError("Map schema did not specify the key type")
        if "values" not in node:
            raise DataError("Map schema did not specify the value type")
        parts["key_schema"] = schema_from_json(node["keys"])
        parts["value_schema"] = schema_from_json(node["values"])
    elif kind == STRUCT:
        fields = node.get("fields")
        if not isinstance(fields, list):
            raise DataError("Struct schema's \"fields\" argument is not an array.")
        made: list[Field] = []
        for i, f in enumerate(fields):
            fname = f.get("field") if isinstance(f, dict) else None
            if not isinstance(fname, str):
                raise DataError("Struct schema's field name not specified properly")
            if any(m.name == fname for m in made):
                raise DataError(f"Cannot create field because of field name duplication {fname}")
            fschema = schema_from_json(f)
            assert fschema is not None
            made.append(Field(fname, i, fschema))
        parts["fields"] = tuple(made)
    parts["optional"] = node.get("optional") is True
    if isinstance(node.get("name"), str):
        parts["name"] = node["name"]
    version = node.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        parts["version"] = version
    if isinstance(node.get("doc"), str):
        parts["doc"] = node["doc"]
    params = node.get("parameters")
    if isinstance(params, dict):
        if not all(isinstance(v, str) for v in params.values()):
            raise DataError("Schema parameters must have string values.")
        parts["parameters"] = dict(params)
    schema = Schema(kind, **parts)
    if "default" in node:
        default = _to_connect(schema, node["default"], "BASE64", True)
        if default is not None:
            validate_value(schema, default)
        schema = schema.replace(default=default)
    return schema


def _to_json(schema: Schema | None, value: Any, decimal_format: str, replace_null: bool) -> Any:
    """``JsonConverter.convertToJson``."""
    if value is None:
        if schema is None:
            return None
        if schema.default is not None and replace_null:
            return _to_json(schema, schema.default, decimal_format, replace_null)
        if schema.optional:
            return None
        raise DataError("Conversion error: null value for field that is required and has no default value")
    if schema is not None and schema.name is not None:
        logical = schema.name
        if logical == DECIMAL_NAME:
            if not isinstance(value, Decimal):
                raise DataError(f"Invalid type for Decimal, expected BigDecimal but was {java_class(value)}")
            return value if decimal_format == "NUMERIC" else decimal_to_bytes(schema, value)
        if logical == DATE_NAME:
            if not isinstance(value, dt.date):
                raise DataError(f"Invalid type for Date, expected Date but was {java_class(value)}")
            return date_to_days(value)
        if logical == TIME_NAME:
            if not isinstance(value, dt.time):
                raise DataError(f"Invalid type for Time, expected Date but was {java_class(value)}")
            return time_to_millis(value)
        if logical == TIMESTAMP_NAME:
            if not isinstance(value, dt.datetime):
                raise DataError(f"Invalid type for Timestamp, expected Date but was {java_class(value)}")
            return timestamp_to_millis(value)
    kind = schema.type if schema is not None else _schemaless_type(value)
    try:
        if kind in _BITS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if kind == FLOAT64:
            return _Double(value)
        if kind == FLOAT32:
            return _Float(value)
        if kind == BOOLEAN:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == STRING:
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == BYTES:
            if not isinstance(value, (bytes, bytearray)):
                raise DataError(f"Invalid type for bytes type: {java_class(value)}")
            return bytes(value)
        if kind == ARRAY:
            item_schema = schema.value_schema if schema is not None else None
            return [_to_json(item_schema, v, decimal_format, replace_null) for v in value]
        if kind == MAP:
            key_schema = schema.key_schema if schema is not None else None
            val_schema = schema.value_schema if schema is not None else None
            object_mode = (all(isinstance(k, str) for k in value) if schema is None
                           else key_schema is not None and key_schema.type == STRING)
            if object_mode:
                obj: dict[str, Any] = {}
                for k, v in value.items():
                    key = _to_json(key_schema, k, decimal_format, replace_null)
                    obj[key if isinstance(key, str) else _as_text(key)] = _to_json(val_schema, v, decimal_format,
                                                                                    replace_null)
                return obj
            return [[_to_json(key_schema, k, decimal_format, replace_null),
                     _to_json(val_schema, v, decimal_format, replace_null)] for k, v in value.items()]
        if kind == STRUCT:
            if not isinstance(value, Struct) or value.schema != schema:
                raise DataError("Mismatching schema.")
            return {f.name: _to_json(f.schema, value.values[f.index], decimal_format, replace_null)
                    for f in value.schema.fields}
    except (TypeError, AttributeError):
        named = schema.type.upper() if schema is not None else "unknown schema"
        raise DataError(f"Invalid type for {named}: {java_class(value)}") from None
    raise DataError(f"Couldn't convert {value} to JSON.")


def _as_text(node: Any) -> str:
    return write_json(node) if not isinstance(node, str) else node


def schemaless_type(value: Any) -> str | None:
    """The Connect type of a schemaless value (``ConnectSchema.schemaType``), or ``None``."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT64
    if isinstance(value, float):
        return FLOAT64
    if isinstance(value, str):
        return STRING
    if isinstance(value, (bytes, bytearray)):
        return BYTES
    if isinstance(value, list):
        return ARRAY
    if isinstance(value, dict):
        return MAP
    if isinstance(value, Struct):
        return STRUCT
    return None


def _schemaless_type(value: Any) -> str:
    kind = schemaless_type(value)
    if kind is None:
        raise DataError(f"Java class {java_class(value)} does not have corresponding schema type.")
    return kind


def _wrap(kind: str, value: int) -> int:
    bits = _BITS[kind]
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _to_connect(schema: Schema | None, node: Any, decimal_format: str, replace_null: bool) -> Any:
    """``JsonConverter.convertToConnect`` (``node`` as :func:`_read_json` parses it; ``_MISSING``
    for an absent struct field)."""
    if schema is not None:
        if node is None or node is _MISSING:
            if schema.default is not None and replace_null:
                return schema.default
            if schema.optional:
                return None
            raise DataError(f"Invalid null value for required {schema.type.upper()} field")
        kind = schema.type
    else:
        if node is None or node is _MISSING:
            return None
        kind = _schemaless_json_type(node)
    if schema is not None and schema.name is not None:
        logical = schema.name
        if logical == DECIMAL_NAME:
            if isinstance(node, Decimal) or (isinstance(node, int) and not isinstance(node, bool)):
                return Decimal(node)
            if isinstance(node, str):
                try:
                    raw = base64.b64decode(node, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise DataError(f"Invalid bytes for Decimal field: {exc}") from None
                return decimal_from_bytes(schema, raw)
            raise DataError("Invalid type for Decimal, underlying representation should be numeric or bytes but was "
                            + _node_type(node))
        if logical in (DATE_NAME, TIME_NAME):
            if not _is_int_node(node):
                what = "Date" if logical == DATE_NAME else "Time"
                raise DataError(f"Invalid type for {what}, underlying representation should be integer but was "
                                + _node_type(node))
            return days_to_date(node) if logical == DATE_NAME else millis_to_time(node)
        if logical == TIMESTAMP_NAME:
            if isinstance(node, bool) or not isinstance(node, int):
                raise DataError("Invalid type for Timestamp, underlying representation should be integral but was "
                                + _node_type(node))
            return millis_to_timestamp(_wrap(INT64, node))
    if kind in _BITS:
        number = _number(node)
        if number is None:
            raise DataError(f"Invalid type for {kind.upper()}: {_node_type(node)}")
        return _wrap(kind, int(number)) if kind == INT64 else _wrap(kind, _wrap(INT32, int(number)))
    if kind in (FLOAT32, FLOAT64):
        number = _number(node)
        if number is None:
            raise DataError(f"Invalid type for {kind.upper()}: {_node_type(node)}")
        value = float(number) or 0.0  # BigDecimal has no negative zero
        return _struct.unpack("<f", _struct.pack("<f", value))[0] if kind == FLOAT32 else value
    if kind == BOOLEAN:
        return node is True
    if kind == STRING:
        return node if isinstance(node, str) else None
    if kind == BYTES:
        if not isinstance(node, str):
            raise DataError("Invalid bytes field")
        try:
            return base64.b64decode(node, validate=True)
        except (binascii.Error, ValueError):
            raise DataError("Invalid bytes field") from None
    if kind == ARRAY:
        if not isinstance(node, list):
            return []
        item_schema = schema.value_schema if schema is not None else None
        return [_to_connect(item_schema, v, decimal_format, replace_null) for v in node]
    if kind == MAP:
        key_schema = schema.key_schema if schema is not None else None
        val_schema = schema.value_schema if schema is not None else None
        if schema is None or (key_schema is not None and key_schema.type == STRING):
            if not isinstance(node, dict):
                raise DataError(f"Maps with string fields should be encoded as JSON objects, but found {_node_type(node)}")
            return java_map((k, _to_connect(val_schema, v, decimal_format, replace_null)) for k, v in node.items())
        if not isinstance(node, list):
            raise DataError("Maps with non-string fields should be encoded as JSON array of tuples, but found "
                            + _node_type(node))
        pairs = []
        for entry in node:
            if not isinstance(entry, list):
                raise DataError(f"Found invalid map entry instead of array tuple: {_node_type(entry)}")
            if len(entry) != 2:
                raise DataError(f"Found invalid map entry, expected length 2 but found :{len(entry)}")
            pairs.append((_to_connect(key_schema, entry[0], decimal_format, replace_null),
                          _to_connect(val_schema, entry[1], decimal_format, replace_null)))
        return java_map(pairs)
    if kind == STRUCT:
        assert schema is not None
        if not isinstance(node, dict):
            raise DataError(f"Structs should be encoded as JSON objects, but found {_node_type(node)}")
        result = Struct(schema)
        for f in schema.fields:
            result.put(f.name, _to_connect(f.schema, node.get(f.name, _MISSING), decimal_format, replace_null))
        return result
    raise DataError(f"Unknown schema type: {kind}")  # pragma: no cover


def _is_int_node(node: Any) -> bool:
    return isinstance(node, int) and not isinstance(node, bool) and -(1 << 31) <= node < (1 << 31)


def _number(node: Any) -> int | float | Decimal | None:
    if isinstance(node, bool) or not isinstance(node, (int, Decimal)):
        return None
    return node


def _node_type(node: Any) -> str:
    if node is None:
        return "NULL"
    if isinstance(node, bool):
        return "BOOLEAN"
    if isinstance(node, (int, Decimal)):
        return "NUMBER"
    if isinstance(node, str):
        return "STRING"
    if isinstance(node, list):
        return "ARRAY"
    return "OBJECT"


def _schemaless_json_type(node: Any) -> str:
    if isinstance(node, bool):
        return BOOLEAN
    if isinstance(node, int):
        return INT64
    if isinstance(node, Decimal):
        return FLOAT64
    if isinstance(node, str):
        return STRING
    if isinstance(node, list):
        return ARRAY
    return MAP


def to_connect(data: bytes | None, *, schemas_enable: bool = True, decimal_format: str = "BASE64",
               replace_null_with_default: bool = True) -> tuple[Schema | None, Any]:
    """``JsonConverter.toConnectData``: a record's bytes as ``(schema, value)``; :class:`DataError`
    when they are not what the converter accepts."""
    if data is None:
        return None, None
    if schemas_enable:
        found = _envelope(data)
        if found is not None:
            return found[0], _to_connect(found[0], found[1], decimal_format, replace_null_with_default)
    node: Any = _read_json(data) if data.strip() else _MISSING
    if schemas_enable:
        if not isinstance(node, dict) or len(node) != 2 or "schema" not in node or "payload" not in node:
            raise DataError('JsonConverter with schemas.enable requires "schema" and "payload" fields and may not '
                            "contain additional fields. If you are trying to deserialize plain JSON data, set "
                            "schemas.enable=false in your converter configuration.")
        schema = schema_from_json(node["schema"])
        payload = node["payload"]
    else:
        schema, payload = None, node
    return schema, _to_connect(schema, payload, decimal_format, replace_null_with_default)


def from_connect(schema: Schema | None, value: Any, *, schemas_enable: bool = True, decimal_format: str = "BASE64",
                 replace_null_with_default: bool = True) -> bytes | None:
    """``JsonConverter.fromConnectData``: ``(schema, value)`` as the bytes Connect writes."""
    if schema is None and value is None:
        return None
    payload = write_json(_to_json(schema, value, decimal_format, replace_null_with_default))
    if not schemas_enable:
        return payload.encode("utf-8")
    if schema is None:
        return ('{"schema":null,"payload":' + payload + "}").encode("utf-8")
    key = (schema, decimal_format)
    head = _SCHEMA_HEADS.get(key)
    if head is None:
        head = _ENVELOPE_HEAD + write_json(schema_to_json(schema, decimal_format)) + _PAYLOAD_KEY
        if len(_SCHEMA_HEADS) < _CACHE_SIZE:
            _SCHEMA_HEADS[key] = head
    return (head + payload + "}").encode("utf-8")


def string_from_connect(schema: Schema | None, value: Any) -> bytes | None:
    """``StringConverter.fromConnectData`` (and ``fromConnectHeader``): ``value.toString()`` as UTF-8."""
    return None if value is None else java_string(value).encode("utf-8")


def string_to_connect(data: bytes | None) -> tuple[Schema, Any]:
    """``StringConverter.toConnectData``: an optional string."""
    if data is None:
        return OPTIONAL_STRING_SCHEMA, None
    try:
        return OPTIONAL_STRING_SCHEMA, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"the bytes are not valid UTF-8 at byte {exc.start}") from None


# ---------------------------------------------------------------- records

class Header(NamedTuple):
    """One record header: ``(key, schema, value)``; the schema ``None`` when schemaless."""

    key: str
    schema: Schema | None
    value: Any


@dataclass(frozen=True)
class ConnectRecord:
    """Connect's ``ConnectRecord`` (a ``SourceRecord`` or a ``SinkRecord``): what transforms see.

    ``origin`` is carried along untouched by :meth:`new_record`: where the record came from (a
    sink's Kafka message, say), for offsets and dead letters."""

    topic: str
    kafka_partition: int | None
    key_schema: Schema | None
    key: Any
    value_schema: Schema | None
    value: Any
    timestamp: int | None = None
    headers: tuple[Header, ...] = ()
    origin: Any = field(default=None, compare=False, repr=False)
    #: A sink record's offset in its partition (``SinkRecord.kafkaOffset``); ``None`` for a source record.
    kafka_offset: int | None = None

    def new_record(self, topic: str | None = None, kafka_partition: Any = _MISSING, key_schema: Any = _MISSING,
                   key: Any = _MISSING, value_schema: Any = _MISSING, value: Any = _MISSING,
                   timestamp: Any = _MISSING, headers: Iterable[Header] | None = None) -> ConnectRecord:
        """``ConnectRecord.newRecord``: a copy with the given parts replaced (headers copied)."""
        def pick(new: Any, old: Any) -> Any:
            return old if new is _MISSING else new

        return ConnectRecord(
            topic=self.topic if topic is None else topic,
            kafka_partition=pick(kafka_partition, self.kafka_partition),
            key_schema=pick(key_schema, self.key_schema),
            key=pick(key, self.key),
            value_schema=pick(value_schema, self.value_schema),
            value=pick(value, self.value),
            timestamp=pick(timestamp, self.timestamp),
            headers=tuple(self.headers if headers is None else headers),
            origin=self.origin,
            kafka_offset=self.kafka_offset,
        )
