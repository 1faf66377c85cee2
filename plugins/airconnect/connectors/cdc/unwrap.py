"""Reading what Debezium's ExtractNewRecordState wrote (:mod:`airconnect.transforms.debezium`)
back into a table's state: each key's latest row, deletes honoured."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def latest_state(rows: Iterable[Mapping[str, Any]], key_fields: Sequence[str], *, order_field: str | None = None,
                 deleted_field: str = "__deleted") -> dict[tuple[Any, ...], dict[str, Any]]:
    """What a table holds, from the rows ``ExtractNewRecordState`` (``delete.tombstone.handling.mode=
    rewrite``) wrote: each key's last row, without the keys whose last row is a delete. Rows come in
    the log's order, or are put in it by ``order_field`` (``add.fields=source.lsn`` gives
    ``__source_lsn``: a monthly export's objects are per month, and a change can move a row to
    another month's folder). The marker and order fields are left out."""
    drop = {deleted_field, order_field}
    state: dict[tuple[Any, ...], dict[str, Any]] = {}
    ordered = sorted(rows, key=lambda r: r.get(order_field) or 0) if order_field else rows
    for row in ordered:
        key = tuple(row.get(k) for k in key_fields)
        if str(row.get(deleted_field)).lower() == "true":
            state.pop(key, None)
        else:
            state[key] = {k: v for k, v in row.items() if k not in drop}
    return state
