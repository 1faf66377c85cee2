"""The JDBC source's offsets: timestamps as microseconds, in Kafka Connect's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

UTC: Final = dt.timezone.utc
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- offsets

def micros_of(value: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def ts_offset(micros: int) -> dict[str, int]:
    """Kafka Connect's timestamp offset fields: epoch milliseconds + nanoseconds of the second."""
    return {"timestamp": micros // 1000, "timestamp_nanos": (micros % 1_000_000) * 1000}


def ts_micros_from_offset(offset: Mapping[str, Any]) -> int | None:
    ms = offset.get("timestamp")
    if ms is None:
        return None
    nanos = offset.get("timestamp_nanos")
    if nanos is None:
        return int(ms) * 1000
    return (int(ms) // 1000) * 1_000_000 + int(nanos) // 1000
