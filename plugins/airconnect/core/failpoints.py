"""Named crash points, for the crash tests (tests/integration/test_crash.py).

Each place where a run could die with a half-done effect calls :func:`failpoint` with a name.
``AIRCONNECT_FAILPOINT=name:n`` (set only by the crash tests) makes the process SIGKILL itself
the n-th time it passes ``name`` (n defaults to 1): exactly what a power cut, an OOM kill or
``kill -9`` does at that moment, with no ``finally`` block or atexit handler run. Unset, a call
costs one comparison.

The points, in the order a run passes them:

==========================  ============================================================
``kafka.produced``          a source's batch is in an open Kafka transaction
``kafka.before_commit``     its journal entry is produced too; the commit is not sent
``kafka.after_commit``      the transaction is committed; the Variable is not set
``offsets.saved``           the Variable was just written (a sink has not committed its group)
``file_sink.written``       lines are written to the file, not fsynced, offsets not saved
``file_sink.fsynced``       the file is fsynced; offsets not saved
``s3.part_uploaded``        one part of a multipart upload is uploaded
``s3.object_uploaded``      an object is complete in S3; its partition's offset not saved
``jdbc_sink.written``       a JDBC sink's rows and offsets are in the open DB transaction
``jdbc_sink.committed``     that transaction is committed; the Variable is not saved
``orders.inserted``         orders are inserted in the open database transaction
``orders.committed``        the orders are committed
``view.applied``            inventory changes are in the open database transaction
``view.committed``          they are committed; the view's offsets are not saved
``cdc.snapshot_committed``  a CDC source's first snapshot is committed and saved
``cdc.committed``           a CDC batch is committed and saved; the slot is not advanced
``cdc.advanced``            the PostgreSQL slot is advanced past that batch
==========================  ============================================================
"""

from __future__ import annotations

import os
import signal
from typing import Final

ENV: Final = "AIRCONNECT_FAILPOINT"

_armed: str | None = None
_hit: int = 1
_seen: int = 0


def _parse(spec: str | None) -> None:
    global _armed, _hit, _seen
    _armed, _hit, _seen = None, 1, 0
    if spec:
        name, _, n = spec.partition(":")
        _armed, _hit = name.strip(), int(n) if n.strip() else 1


def failpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and this is its n-th pass."""
    global _seen
    if _armed is None or name != _armed:
        return
    _seen += 1
    if _seen == _hit:
        os.kill(os.getpid(), signal.SIGKILL)


_parse(os.environ.get(ENV))
