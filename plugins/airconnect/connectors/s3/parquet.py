"""Parquet objects for the S3 sink (Kafka Connect's ``ParquetFormat``).

Parquet needs a schema, and as in Kafka Connect it comes from the records: each record must be
a JsonConverter envelope, whose struct schema becomes the object's Parquet schema (a record
with another schema starts a new object). Types map as Connect's AvroData maps them:

====================================================  =========================================
Connect schema                                        Parquet (Arrow) type
====================================================  =========================================
int8, int16, int32, int64, float32, float64, boolean  the same
string / bytes (base64 in JSON)                       string / binary
``org.apache.kafka.connect.data.Decimal``             decimal(precision, scale), exact
``...Timestamp`` (epoch ms), ``io.airconnect.Timestamp`` (ISO-8601)   timestamp[us, UTC]
``...Date`` (epoch days), ``io.airconnect.Date`` (ISO date)           date32
====================================================  =========================================

Rows are written in row groups of ``ROW_GROUP_ROWS``, streamed into the object's multipart
upload, so memory is bounded by a row group and a part. The bytes are the same for the same
records (same pyarrow version), so a re-run overwrites an object with identical bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from airconnect.core.errors import DataError
from airconnect.core.jsonexact import parse_timestamp

ROW_GROUP_ROWS: Final = 20_000
CODECS: Final = ("snappy", "gzip", "zstd", "none")
_DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
_TIMESTAMPS: Final = ("org.apache.kafka.connect.data.Timestamp", "io.airconnect.Timestamp")
_DATES: Final = ("org.apache.kafka.connect.data.Date", "io.airconnect.Date")
_EPOCH: Final = dt.date(1970, 1, 1)


def schema_key(schema: Mapping[str, Any]) -> str:
    """A canonical text of a Connect schema, to tell when it changes."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _arrow_type(field: Mapping[str, Any]) -> tuple[Any, Callable[[Any], Any]]:
    """The Arrow type of a Connect field schema and how to convert its JSON value."""
    import pyarrow as pa

    name, kind = field.get("name"), field.get("type")
    if name == _DECIMAL:
        params = field.get("parameters") or {}
        scale = int(params.get("scale", 0))
        precision = int(params.get("connect.decimal.precision", 38))
        return (pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)), \
            (lambda v: v if isinstance(v, Decimal) else Decimal(str(v)))
    if name in _TIMESTAMPS:
        return pa.timestamp("us", tz="UTC"), parse_timestamp
    if name in _DATES:
        return pa.date32(), (lambda v: _EPOCH + dt.timedelta(days=int(v)) if isinstance(v, int) else dt.date.fromisoformat(v))
    simple = {"int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
              "float32": pa.float32(), "float64": pa.float64(), "boolean": pa.bool_(), "string": pa.string()}
    if kind in simple:
        if kind.startswith("float"):
            return simple[kind], float
        return simple[kind], (lambda v: v)
    if kind == "bytes":
        return pa.binary(), (lambda v: base64.b64decode(v) if isinstance(v, str) else bytes(v))
    raise DataError(f"field {field.get('field')!r} has the Connect type {kind!r}"
                    f"{f' ({name})' if name else ''}, which airconnect does not write to Parquet")


class ParquetSchema:
    """A Connect struct schema as a Parquet schema, with the conversion of a payload to a row."""

    def __init__(self, schema: Mapping[str, Any]):
        import pyarrow as pa

        if schema.get("type") != "struct" or not schema.get("fields"):
            raise DataError("ParquetFormat needs a struct schema with fields; this record's schema is "
                            f"{schema_key(schema)[:120]}")
        fields, self._convert = [], []
        for f in schema["fields"]:
            arrow, convert = _arrow_type(f)
            fields.append(pa.field(f["field"], arrow, nullable=bool(f.get("optional", True))))
            self._convert.append((f["field"], bool(f.get("optional", True)), convert))
        self.arrow = pa.schema(fields)
        self.key = schema_key(schema)

    def row(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as a row of this schema; :class:`DataError` if it does not fit."""
        row: dict[str, Any] = {}
        for name, optional, convert in self._convert:
            value = payload.get(name)
            if value is None:
                if not optional:
                    raise DataError(f"field {name!r} is null or missing, but the schema says it is required")
                row[name] = None
                continue
            try:
                row[name] = convert(value)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise DataError(f"field {name!r}: {value!r} does not fit its schema ({exc})") from None
        return row


class ParquetRows:
    """Writes rows of one :class:`ParquetSchema` as Parquet row groups to ``sink`` (an object
    with ``write``), ``ROW_GROUP_ROWS`` at a time."""

    def __init__(self, schema: ParquetSchema, sink: Any, *, codec: str = "snappy"):
        self.schema = schema
        self._sink = sink
        self._codec = "none" if codec == "none" else codec
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None

    def append(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(pa.PythonFile(self._sink, mode="w"), self.schema.arrow,
                                            compression=self._codec)
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema.arrow))
            self._rows.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()
