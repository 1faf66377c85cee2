"""One pass of a connector in a process of its own, for the crash tests to SIGKILL.

    python tests/crash_child.py SPEC.json

SPEC: ``{"definition": {...}, "store": path, "kafka": {...}, "resources": {...}}`` runs the
connector's core (``airconnect.core.runtime.run``), or ``{"auto_order": {...}, ...}`` runs the
auto_order DAG's three steps (inventory view, orders, the orders' JDBC publication). Offsets go
to :class:`FileStore`, a JSON file replaced atomically on every write, as a database commits.
``AIRCONNECT_FAILPOINT=name:n`` in the environment arms a kill point (airconnect.core.failpoints).
Exit 0: the pass finished; 3: it raised (the traceback is printed).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


class FileStore:
    """A KeyValueStore in one JSON file; each write is fsynced and renamed into place."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, value: str) -> None:
        data = self._load()
        data[key] = value
        self._write(data)

    def delete(self, key: str) -> None:
        data = self._load()
        data.pop(key, None)
        self._write(data)

    def _write(self, data: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _connect(url: str) -> Any:
    if url.startswith("mysql://"):
        import importlib.util

        spec = importlib.util.spec_from_file_location("generate_sales", ROOT / "include" / "generate_sales.py")
        gen = importlib.util.module_from_spec(spec)
        sys.modules["generate_sales"] = gen  # (its dataclasses look their module up there)
        spec.loader.exec_module(gen)
        return gen.connect_mysql(url)
    import psycopg2

    return psycopg2.connect(url)


def resources(spec: dict[str, Any]) -> dict[str, Any]:
    res = spec.get("resources") or {}
    out: dict[str, Any] = {}
    if "db" in res:
        out["connect"] = lambda: _connect(res["db"])
    if "db_params" in res:  # a CDC source's replication connection / binlog reader
        out["db_params"] = res["db_params"]
    if "s3" in res:
        import boto3

        out["s3_client"] = boto3.client("s3", **res["s3"])
    return out


def auto_order(spec: dict[str, Any], store: FileStore, kafka: dict[str, Any]) -> None:
    from airconnect.core.runtime import run
    from airconnect_retail.auto_order import place_orders
    from airconnect_retail.ordering import load_item_master

    ao = spec["auto_order"]
    run(ao["view"], store, kafka, connect=lambda: _connect(ao["db"]))  # the inventory view: a JDBC sink
    conn = _connect(ao["db"])
    try:
        place_orders(conn, ao["forecast"], load_item_master(ao["item_master"]))
    finally:
        conn.close()
    run(ao["publisher"], store, kafka, connect=lambda: _connect(ao["db"]))


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    store = FileStore(spec["store"])
    try:
        if "auto_order" in spec:
            auto_order(spec, store, spec["kafka"])
        else:
            from airconnect.core.runtime import run

            run(spec["definition"], store, spec["kafka"], **resources(spec))
    except Exception:  # noqa: BLE001 - the parent reads the traceback
        traceback.print_exc()
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
