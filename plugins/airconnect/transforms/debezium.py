"""Debezium's ``io.debezium.transforms.ExtractNewRecordState``: a change event becomes the row it
leaves behind (``after``; a delete: nothing, or its ``before`` marked ``__deleted``), so a sink that
knows rows (the S3 sink's monthly export, the JDBC sink) reads a CDC topic.

Options (Debezium's): ``delete.tombstone.handling.mode`` -- ``tombstone`` (default: a delete
becomes a tombstone, and the connector's own tombstones pass), ``drop`` (deletes and tombstones
are dropped), ``rewrite`` (a delete becomes its ``before`` row with ``__deleted="true"``, every
other row gets ``__deleted="false"``; tombstones are dropped), ``rewrite-with-tombstone`` (as
rewrite, tombstones kept); ``add.fields`` -- envelope or source fields appended as ``__<name>``
(``op``, ``ts_ms``, ``source.ts_ms`` -> ``__source_ts_ms``, ``table`` = ``source.table``, ...).
A record that is not a change event (a heartbeat, a schema change) passes unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airconnect.core.config import Key
from airconnect.core.data import STRING, Schema, Struct, struct_schema
from airconnect.transforms.base import OptionError, Transform

MODES = ("tombstone", "drop", "rewrite", "rewrite-with-tombstone")


class ExtractNewRecordState(Transform):
    class_names: ClassVar[tuple[str, ...]] = ("io.debezium.transforms.ExtractNewRecordState",)
    keys: ClassVar[tuple[Key, ...]] = (
        Key("delete.tombstone.handling.mode", "string", "tombstone", "What a delete (and a tombstone) becomes.",
            choices=MODES),
        Key("add.fields", "list", [], "Envelope or source fields to append as __<name> (op, ts_ms, source.ts_ms, "
            "table, lsn, ...)."),
        Key("add.fields.prefix", "string", "__", "The prefix of the appended fields."),
    )
    doc: ClassVar[str] = "Debezium's change event -> the row it leaves (after; a delete per the handling mode)."

    def configure(self, options: dict[str, Any]) -> None:
        self.mode: str = options["delete.tombstone.handling.mode"]
        self.prefix: str = options["add.fields.prefix"]
        self.add: list[tuple[str, str]] = []  # (path, new field name)
        for item in options["add.fields"]:
            path = item.strip()
            if not path:
                continue
            if path.count(".") > 1:
                raise OptionError("add.fields", f"{path!r} is neither an envelope field nor source.<field>")
            self.add.append((path, self.prefix + path.replace(".", "_")))

    def apply(self, record: Any) -> Any:
        value = record.value
        if value is None:  # the connector's tombstone after a delete
            return None if self.mode in ("drop", "rewrite") else record
        if not isinstance(value, Struct) or value.schema.field("op") is None or value.schema.field("after") is None:
            return record
        op = value.get("op")
        rewrite = self.mode.startswith("rewrite")
        if op == "d":
            if self.mode == "drop":
                return None
            if not rewrite:
                return record.new_record(value_schema=None, value=None)
            row, row_field = value.get("before"), value.schema.field("before")
        else:
            row, row_field = value.get("after"), value.schema.field("after")
        if row is None or row_field is None:
            return None
        base: Schema = row_field.schema
        extra: list[tuple[str, Schema, Any]] = []
        for path, name in self.add:
            if "." in path:
                part, sub = path.split(".")
                holder = value.get(part) if value.schema.field(part) is not None else None
                f = holder.schema.field(sub) if isinstance(holder, Struct) else None
                extra.append((name, _optional(f.schema if f else None),
                              holder.get(sub) if f is not None and isinstance(holder, Struct) else None))
            else:
                f = value.schema.field(path)
                if f is None and value.schema.field("source") is not None:  # table, db, lsn, ...: source's
                    source = value.get("source")
                    f2 = source.schema.field(path) if isinstance(source, Struct) else None
                    extra.append((name, _optional(f2.schema if f2 else None), source.get(path) if f2 else None))
                else:
                    extra.append((name, _optional(f.schema if f else None), value.get(path) if f else None))
        if rewrite:
            extra.append((self.prefix + "deleted", Schema(STRING, optional=True), "true" if op == "d" else "false"))
        if not extra:
            return record.new_record(value_schema=base, value=row)
        schema = struct_schema([(f.name, f.schema) for f in base.fields] + [(n, s) for n, s, _ in extra],
                               name=base.name, version=base.version, doc=base.doc, optional=base.optional,
                               parameters=base.parameters)
        out = Struct(schema)
        for f in base.fields:
            out.put(f.name, row.get(f.name))
        for n, _, v in extra:
            out.put(n, v)
        return record.new_record(value_schema=schema, value=out)


def _optional(schema: Schema | None) -> Schema:
    if schema is None:
        return Schema(STRING, optional=True)
    return Schema(schema.type, optional=True, name=schema.name, version=schema.version,
                  parameters=schema.parameters)

