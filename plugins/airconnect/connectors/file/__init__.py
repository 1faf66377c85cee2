"""The file connectors: Kafka Connect's FileStreamSource and FileStreamSink, exactly once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airconnect.core.offsets import only_keys, text_fields, whole_number


def check_file_offset(partition: Mapping[str, Any], offset: Mapping[str, Any] | None, *, keys: set[str],
                      numbers: Sequence[str] = (), texts: Sequence[str] = ()) -> str | None:
    """A file partition's offset, for a KIP-875 alter: ``{"filename": path}`` -> ``{"position": n}``
    plus the optional ``numbers`` and ``texts`` among ``keys``; what is wrong, or ``None``."""
    problem = only_keys(partition, {"filename"}, "partition")
    if problem is None and (not isinstance(partition.get("filename"), str) or not partition["filename"]):
        problem = "needs 'filename' (a path)"
    if problem is None and offset is not None:
        problem = (whole_number(offset, "position") or only_keys(offset, keys, "offset")
                   or next((p for k in numbers if (p := whole_number(offset, k, required=False))), None)
                   or text_fields(offset, *texts))
    return problem
