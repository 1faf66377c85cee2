"""MariaDB change data capture against the real server: the row binlog from a GTID position, a
consistent first snapshot, what polling misses, one transaction over two tables, the position
across runs, and SIGKILLs at every step with everything once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airconnect.core.errors import ConfigError
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import generator, read_topic

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("AIRCONNECT_MARIADB_PORT", "3306"))
URL = f"mysql://airconnect:airconnect@127.0.0.1:{PORT}/pos"
PARAMS = {"host": "127.0.0.1", "port": PORT, "user": "airconnect", "password": "airconnect", "database": "pos"}


def connect():
    return generator().connect_mysql(URL)


class Maria:
    def __init__(self, unique: str, kafka: dict[str, Any]):
        self.u, self.kafka = unique, kafka
        self.conn = connect()
        self.conn.autocommit(True)
        self.prefix = f"cdcm-{unique}"
        self.tables: list[str] = []
        self.store = MemoryStore()

    def sql(self, statement: str, params: Any = None) -> None:
        cur = self.conn.cursor()
        cur.execute(statement, params)
        cur.close()

    def table(self, name: str) -> str:
        table = f"{name}_{self.u}"
        self.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, item VARCHAR(32) NOT NULL, price DECIMAL(12,2), "
                 "sold_at DATETIME(6) NOT NULL DEFAULT '2018-10-01 00:00:00')")
        self.tables.append(table)
        return table

    def topic(self, table: str) -> str:
        return f"{self.prefix}.pos.{table}"

    def definition(self, **extra: str) -> dict[str, Any]:
        return {"name": f"cdc-maria-{self.u}", "config": {
            "connector.class": "io.debezium.connector.mariadb.MariaDbConnector", "db.conn.id": "mysql_pos",
            "topic.prefix": self.prefix, "database.include.list": "pos",
            "table.include.list": ",".join(f"pos\\.{t}" for t in self.tables), **extra}}

    def run(self, **extra: str) -> dict[str, Any]:
        return run(self.definition(**extra), self.store, self.kafka, connect=connect, db_params=PARAMS)

    def events(self, table: str) -> list[dict[str, Any] | None]:
        return [None if v is None else json.loads(v)["payload"] for v in read_topic(self.kafka, self.topic(table))]

    def close(self) -> None:
        for t in self.tables:
            self.sql(f"DROP TABLE IF EXISTS {t}")
        self.conn.close()


@pytest.fixture
def maria(unique, kafka):
    db = Maria(unique, kafka)
    yield db
    db.close()


def ops(events):
    out = []
    for e in events:
        if e is None:
            out.append(("tombstone",))
        else:
            row = e["after"] if e["after"] is not None else e["before"]
            out.append((e["op"], row["id"], row["item"]))
    return out


def test_snapshot_then_the_changes_polling_cannot_see(maria):
    sales, stock = maria.table("sales"), maria.table("stock")
    maria.sql(f"INSERT INTO {sales} (id, item, price) VALUES (1, 'apple', 1.50), (2, 'pear', 2.25)")
    first = maria.run()
    assert first["snapshot_records"] == 2
    snap = maria.events(sales)
    assert [(e["op"], e["after"]["id"], e["source"]["snapshot"]) for e in snap] == [("r", 1, "first"),
                                                                                   ("r", 2, "last_in_data_collection")]
    assert snap[0]["after"]["sold_at"] == 1538352000000000  # MicroTimestamp of 2018-10-01T00:00:00

    late = connect()  # opened before, committed after a later row and its run
    try:
        cur = late.cursor()
        cur.execute(f"INSERT INTO {sales} (id, item, price) VALUES (3, 'late', 3.00)")
        maria.sql(f"INSERT INTO {sales} (id, item, price) VALUES (4, 'early', 4.00)")
        assert maria.run()["records"] == 1
        late.commit()
    finally:
        late.close()
    maria.sql(f"UPDATE {sales} SET price = 9.99 WHERE id = 1")  # sold_at unchanged
    maria.sql(f"DELETE FROM {sales} WHERE id = 2")
    maria.sql(f"START TRANSACTION; INSERT INTO {stock} (id, item) VALUES (1, 'apple'); "
              f"UPDATE {sales} SET item = 'apples' WHERE id = 1; COMMIT")
    result = maria.run()
    assert result["transactions"] == 4
    assert ops(maria.events(sales)[2:]) == [("c", 4, "early"), ("c", 3, "late"), ("u", 1, "apple"), ("d", 2, "pear"),
                                           ("tombstone",), ("u", 1, "apples")]
    update = maria.events(sales)[4]
    assert update["before"]["price"] != update["after"]["price"] and update["before"]["sold_at"] == update["after"]["sold_at"]
    assert ops(maria.events(stock)) == [("c", 1, "apple")]
    assert maria.events(sales)[7]["source"]["gtid"] == maria.events(stock)[0]["source"]["gtid"]  # one transaction
    # The position is kept.
    assert maria.run()["records"] == 0
    maria.sql(f"INSERT INTO {sales} (id, item) VALUES (5, 'fig')")
    assert maria.run()["records"] == 1
    offset = json.loads(maria.store[f"airconnect.offsets.cdc-maria-{maria.u}"])["offsets"][0]
    assert offset["partition"] == {"server": maria.prefix} and offset["offset"]["gtids"]


def test_unsupported_keys_are_refused_naming_the_key(maria):
    for key, value in (("database.hostname", "db"), ("include.schema.changes", "true"),
                       ("schema.history.internal.kafka.topic", "h"), ("snapshot.mode", "when_needed")):
        with pytest.raises(ConfigError) as err:
            validate(maria.definition(**{key: value}))
        assert f"key '{key}'" in str(err.value)


CHILD = str(ROOT / "tests" / "crash_child.py")
POINTS = ("kafka.produced", "kafka.before_commit", "kafka.after_commit", "offsets.saved", "cdc.committed")


def test_sigkill_at_every_step_delivers_everything_once(maria, tmp_path):
    sales = maria.table("sales")
    maria.sql(f"INSERT INTO {sales} (id, item) VALUES (1, 's1'), (2, 's2'), (3, 's3')")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"definition": maria.definition(**{"max.batch.size": "3"}), "kafka": maria.kafka,
                                "store": str(tmp_path / "offsets.json"),
                                "resources": {"db": URL, "db_params": PARAMS}}))

    def child(point: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "AIRCONNECT_FAILPOINT"}
        if point:
            env["AIRCONNECT_FAILPOINT"] = point
        proc = subprocess.run([sys.executable, CHILD, str(spec)], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.returncode

    kills = (child("kafka.produced:1") == -signal.SIGKILL) + (child("cdc.snapshot_committed:1") == -signal.SIGKILL)
    assert kills == 2
    next_id = 100
    for round_, point in enumerate([f"{p}:{n}" for p in POINTS for n in ((1, 2) if p.startswith("cdc.") else (2,))]):
        for _ in range(3):
            maria.sql(f"START TRANSACTION; INSERT INTO {sales} (id, item) VALUES ({next_id}, 'r{round_}'), "
                      f"({next_id + 1}, 'r{round_}'); COMMIT")
            next_id += 2
        maria.sql(f"DELETE FROM {sales} WHERE id = {next_id - 1}")
        kills += child(point) == -signal.SIGKILL
        assert child(None) == 0
    assert kills >= 8
    events = maria.events(sales)
    assert sorted(e["after"]["id"] for e in events if e and e["op"] == "r") == [1, 2, 3]
    assert sorted(e["after"]["id"] for e in events if e and e["op"] == "c") == list(range(100, next_id))
    assert sorted(e["before"]["id"] for e in events if e and e["op"] == "d") == list(range(105, next_id, 6))
    assert sum(1 for e in events if e is None) == len(range(105, next_id, 6))


def test_the_operator_runs_it_with_the_airflow_connection(maria):
    """Under Airflow: the binlog reader gets the address and credentials of db.conn.id's Connection."""
    from airconnect.core.offsets import Offsets
    from airconnect.hooks import VariableStore
    from airconnect.operators import ConnectorOperator

    sales = maria.table("sales")
    maria.sql(f"INSERT INTO {sales} (id, item) VALUES (1, 'apple')")
    op = ConnectorOperator(connector=maria.definition())
    assert op.execute({})["snapshot_records"] == 1
    maria.sql(f"UPDATE {sales} SET item = 'apples' WHERE id = 1")
    assert op.execute({})["records"] == 1
    assert ops(maria.events(sales)) == [("r", 1, "apple"), ("u", 1, "apples")]
    offsets = Offsets(VariableStore(), f"cdc-maria-{maria.u}")
    assert offsets.get({"server": maria.prefix})["gtids"]
    offsets.clear()
