"""Offsets in Kafka Connect's shapes, kept in a key-value store (Airflow Variables in production).

One Variable per connector, ``airconnect.offsets.<connector>``, holding the document Kafka
Connect's offsets API (KIP-875) returns for ``GET /connectors/<name>/offsets``::

    {"offsets": [{"partition": {"filename": "/zaiko/latest.txt"}, "offset": {"position": 156}}]}

Source partitions and offsets mirror Connect's connectors: file ``{"filename"}`` ->
``{"position"}``; JDBC ``{"table"}`` -> ``{"timestamp", "incrementing"}``; sink partitions are
``{"kafka_topic", "kafka_partition"}`` -> ``{"kafka_offset"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

from airconnect.core.errors import OffsetError
from airconnect.core.failpoints import failpoint

VARIABLE_PREFIX: Final = "airconnect.offsets."


def variable_key(connector: str) -> str:
    return VARIABLE_PREFIX + connector


class KeyValueStore(Protocol):
    """Where offset documents live: Airflow Variables, or a dict in tests."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStore(dict[str, str]):
    """A dict that satisfies :class:`KeyValueStore`; for tests and dry runs."""

    def set(self, key: str, value: str) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def partition_id(partition: Mapping[str, Any]) -> str:
    """A canonical, hashable form of a partition map."""
    return json.dumps(partition, sort_keys=True, separators=(",", ":"))


class Offsets:
    """The offsets of one connector: partition map -> offset map, loaded from and saved to a store."""

    def __init__(self, store: KeyValueStore, connector: str):
        self.store = store
        self.connector = connector
        self.key = variable_key(connector)
        self._entries: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._changed: set[str] = set()  # partitions put since the load (what save writes)
        self._replace = False  # clear() was called: save writes the whole document
        self._load()

    def _fail(self, what: str) -> OffsetError:
        return OffsetError(
            f"the offsets of connector '{self.connector}' (Airflow Variable '{self.key}') are not usable: {what}. "
            f"Expected JSON like "
            '{"offsets": [{"partition": {...}, "offset": {...}}]}; fix the Variable, or delete it to start from the beginning.'
        )

    def _load(self) -> None:
        self._entries = self._read()

    def _read(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        entries: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        raw = self.store.get(self.key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return entries
        if isinstance(raw, str):
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise self._fail(f"not JSON ({exc})") from None
        else:
            doc = raw
        if not isinstance(doc, dict) or not isinstance(doc.get("offsets"), list):
            raise self._fail("no 'offsets' list at the top level")
        for i, entry in enumerate(doc["offsets"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("partition"), dict):
                raise self._fail(f"entry {i} has no 'partition' object")
            offset = entry.get("offset")
            if offset is not None and not isinstance(offset, dict):
                raise self._fail(f"entry {i} has an 'offset' that is not an object: {offset!r}")
            if offset is not None:
                entries[partition_id(entry["partition"])] = (entry["partition"], offset)
        return entries

    def get(self, partition: Mapping[str, Any]) -> dict[str, Any] | None:
        found = self._entries.get(partition_id(partition))
        return dict(found[1]) if found else None

    def get_int(self, partition: Mapping[str, Any], field: str) -> int | None:
        """An integer field of a partition's offset (``None`` when there is no offset), checked."""
        offset = self.get(partition)
        if offset is None:
            return None
        value = offset.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._fail(
                f"partition {partition_id(partition)} has {field}={value!r}; expected a whole number >= 0"
            )
        return value

    def items(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(dict(p), dict(o)) for p, o in self._entries.values()]

    def put(self, partition: Mapping[str, Any], offset: Mapping[str, Any]) -> None:
        """Change an offset in memory; :meth:`save` writes it."""
        pid = partition_id(partition)
        self._entries[pid] = (dict(partition), dict(offset))
        self._changed.add(pid)

    def document(self) -> dict[str, Any]:
        return {"offsets": [{"partition": p, "offset": o} for p, o in self._entries.values()]}

    def save(self) -> None:
        """Write the partitions put since the load into the store, read again just before: the
        tasks of one connector (each with its own tables or topic-partitions) share its Variable,
        and one task's save never rolls back another's entries (read-modify-write per partition).
        After :meth:`clear`, the whole document is written."""
        if not self._replace:
            current = self._read()
            current.update({pid: self._entries[pid] for pid in self._changed if pid in self._entries})
            self._entries = current
        self.store.set(self.key, json.dumps(self.document(), ensure_ascii=False, sort_keys=True))
        self._changed.clear()
        self._replace = False
        failpoint("offsets.saved")

    def clear(self) -> None:
        """Forget every offset; the next :meth:`save` writes only what was put since."""
        self._entries.clear()
        self._changed.clear()
        self._replace = True


# --- shapes of offsets, for the specs' checks of a KIP-875 alter request (each returns what is wrong, or None)


def whole_number(obj: Mapping[str, Any], key: str, *, required: bool = True, negative: bool = False) -> str | None:
    """``obj[key]`` is a whole number (>= 0 unless ``negative``), or absent when not ``required``."""
    if key not in obj:
        return f"needs {key!r}" if required else None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int) or (v < 0 and not negative):
        return f"has {key}={v!r}; expected a whole number" + ("" if negative else " >= 0")
    return None


def only_keys(obj: Mapping[str, Any], allowed: set[str], what: str) -> str | None:
    """``obj`` has no key but ``allowed`` (``what``: "partition" or "offset")."""
    extra = sorted(set(obj) - allowed)
    return f"has unexpected {what} key(s) {extra}; expected {sorted(allowed)}" if extra else None


def text_fields(obj: Mapping[str, Any], *keys: str) -> str | None:
    """Each of ``keys`` present in ``obj`` is a string."""
    return next((f"has a {k!r} that is not a string" for k in keys if k in obj and not isinstance(obj[k], str)), None)

