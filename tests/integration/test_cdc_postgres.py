"""PostgreSQL change data capture against the real server: what polling cannot see (a late
commit, an update that keeps its timestamp, a delete), one transaction over two tables, the
position kept across runs, a dropped slot, and SIGKILLs at every step with everything once."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from airconnect.connectors.jdbc.source import JdbcSource
from airconnect.core.errors import ConfigError, DataError, PermanentError
from airconnect.core.manage import reset_offsets
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from helpers import read_topic

ROOT = Path(__file__).resolve().parents[2]
DSN = "postgresql://airconnect:airconnect@127.0.0.1:%s/ec" % os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")


def connect():
    return psycopg2.connect(DSN)


class Pg:
    """Throw-away tables and a slot of their own; the slot is dropped at the end (a leaked slot
    keeps WAL forever)."""

    def __init__(self, unique: str, kafka: dict[str, Any]):
        self.u, self.kafka = unique, kafka
        self.conn = connect()
        self.conn.autocommit = True
        self.slot = f"cdc_{unique}"
        self.prefix = f"cdc-{unique}"
        self.tables: list[str] = []
        self.store = MemoryStore()

    def sql(self, statement: str, params: Any = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)

    def table(self, name: str) -> str:
        table = f"{name}_{self.u}"
        self.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, item varchar(32) NOT NULL, price numeric(12,2), "
                 "sold_at timestamptz(6) NOT NULL DEFAULT now())")
        self.tables.append(table)
        return table

    def topic(self, table: str) -> str:
        return f"{self.prefix}.public.{table}"

    def definition(self, **extra: str) -> dict[str, Any]:
        return {"name": f"cdc-pg-{self.u}", "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector", "db.conn.id": "postgres_ec",
            "topic.prefix": self.prefix, "slot.name": self.slot, "plugin.name": "wal2json",
            "table.include.list": ",".join(f"public\\.{t}" for t in self.tables), **extra}}

    def run(self, connect_with: Any = None, **extra: str) -> dict[str, Any]:
        return run(self.definition(**extra), self.store, self.kafka, connect=connect_with or connect)

    def events(self, table: str) -> list[dict[str, Any] | None]:
        return [None if v is None else json.loads(v)["payload"] for v in read_topic(self.kafka, self.topic(table))]

    def close(self) -> None:
        self.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                 (self.slot,))
        for t in self.tables:
            self.sql(f"DROP TABLE IF EXISTS {t}")
        self.conn.close()


@pytest.fixture
def pg(unique, kafka):
    db = Pg(unique, kafka)
    yield db
    db.close()


def price(after: dict[str, Any]) -> float | None:
    raw = after["price"]
    return None if raw is None else int.from_bytes(base64.b64decode(raw), "big", signed=True) / 100


def ops(events: list[dict[str, Any] | None]) -> list[tuple[Any, ...]]:
    """(op, id, item) of each event; a tombstone is ('tombstone',)."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if e is None:
            out.append(("tombstone",))
        else:
            row = e["after"] if e["after"] is not None else e["before"]
            out.append((e["op"], row["id"], row["item"]))
    return out


def test_snapshot_then_changes_polling_cannot_see(pg):
    sales = pg.table("sales")
    pg.sql(f"INSERT INTO {sales} (id, item, price, sold_at) VALUES (1, 'apple', 1.50, '2018-10-01T00:00:00Z'), "
           f"(2, 'pear', 2.25, '2018-10-01T00:00:00Z')")
    first = pg.run()
    assert first["snapshot_records"] == 2
    snap = pg.events(sales)
    assert [(e["op"], e["after"]["id"], e["source"]["snapshot"]) for e in snap] == [(("r", 1, "first")),
                                                                                   ("r", 2, "last")]
    assert snap[0]["after"]["sold_at"] == "2018-10-01T00:00:00.000000Z" and price(snap[0]["after"]) == 1.5

    # A late commit: opened before, committed after a later row (and its run): still delivered.
    late = connect()
    try:
        with late.cursor() as cur:
            cur.execute(f"INSERT INTO {sales} (id, item, price, sold_at) VALUES (3, 'late', 3.00, "
                        "'2018-10-01T00:00:01Z')")
        pg.sql(f"INSERT INTO {sales} (id, item, price, sold_at) VALUES (4, 'early', 4.00, '2018-10-01T00:00:02Z')")
        assert ops(pg.events(sales)[2:]) == [] and pg.run()["records"] == 1
        late.commit()
    finally:
        late.close()
    # An update that keeps its timestamp, and a delete.
    pg.sql(f"UPDATE {sales} SET price = 9.99 WHERE id = 1")
    pg.sql(f"DELETE FROM {sales} WHERE id = 2")
    third = pg.run()
    assert third["snapshot_records"] == 0 and third["transactions"] == 3
    assert ops(pg.events(sales)[2:]) == [("c", 4, "early"), ("c", 3, "late"), ("u", 1, "apple"), ("d", 2, ""),
                                        ("tombstone",)]
    update = pg.events(sales)[4]
    assert update["before"] is None and price(update["after"]) == 9.99
    assert update["after"]["sold_at"] == "2018-10-01T00:00:00.000000Z"  # the timestamp polling would read did not move
    delete = pg.events(sales)[5]
    assert delete["before"] == {"id": 2, "item": "", "price": None, "sold_at": ""}  # the key (replica identity)

    # Polling with a lookback cannot see any of the three (the JDBC source, same table).
    store = MemoryStore()
    jdbc = validate({"name": f"poll-{pg.u}", "config": {
        "connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "db.conn.id": "postgres_ec",
        "mode": "timestamp+incrementing", "incrementing.column.name": "id", "timestamp.column.name": "sold_at",
        "table.whitelist": sales, "topic.prefix": f"poll-{pg.u}-", "timestamp.lookback.ms": "1000",
        "reconcile.on.mismatch": "warn"}})
    assert JdbcSource(jdbc, store, pg.kafka, connect).run().records == 3  # ids 1, 3, 4 as they are now
    pg.sql(f"UPDATE {sales} SET price = 1.00 WHERE id = 4")
    pg.sql(f"DELETE FROM {sales} WHERE id = 3")
    assert JdbcSource(jdbc, store, pg.kafka, connect).run().records == 0
    assert pg.run()["transactions"] == 2
    assert ops(pg.events(sales)[7:]) == [("u", 4, "early"), ("d", 3, ""), ("tombstone",)]


def test_one_transaction_over_two_tables_and_the_position_across_runs(pg):
    sales, stock = pg.table("sales"), pg.table("stock")
    assert pg.run(**{"snapshot.mode": "no_data", "tombstones.on.delete": "false"})["records"] == 0
    pg.sql(f"BEGIN; INSERT INTO {sales} (id, item) VALUES (1, 'apple'); INSERT INTO {stock} (id, item) VALUES (1, "
           f"'apple'); UPDATE {stock} SET item = 'apples' WHERE id = 1; DELETE FROM {sales} WHERE id = 1; COMMIT")
    result = pg.run(**{"snapshot.mode": "no_data", "tombstones.on.delete": "false"})
    assert result["transactions"] == 1 and result["records"] == 4
    assert ops(pg.events(sales)) == [("c", 1, "apple"), ("d", 1, "")]
    assert ops(pg.events(stock)) == [("c", 1, "apple"), ("u", 1, "apples")]
    txids = {e["source"]["txId"] for e in pg.events(sales) + pg.events(stock) if e}
    assert len(txids) == 1
    # The position is kept: nothing twice, and the next change only.
    assert pg.run(**{"snapshot.mode": "no_data"})["records"] == 0
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (2, 'pear')")
    assert pg.run(**{"snapshot.mode": "no_data"})["records"] == 1
    assert ops(pg.events(sales)) == [("c", 1, "apple"), ("d", 1, ""), ("c", 2, "pear")]
    offset = json.loads(pg.store[f"airconnect.offsets.cdc-pg-{pg.u}"])["offsets"][0]
    assert offset["partition"] == {"server": pg.prefix} and offset["offset"]["lsn"] > 0


def connect_psycopg3():
    """What the Postgres provider's hook hands out under Airflow when psycopg 3 is installed."""
    import psycopg

    return psycopg.connect(DSN)


def test_a_dropped_slot_is_a_clear_error_and_a_reset_recovers(pg):
    sales = pg.table("sales")
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (1, 'apple')")
    pg.run(connect_psycopg3)
    pg.sql("SELECT pg_drop_replication_slot(%s)", (pg.slot,))
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (2, 'pear')")
    with pytest.raises(PermanentError) as err:
        pg.run()
    message = str(err.value)
    assert f"connector 'cdc-pg-{pg.u}'" in message and "'slot.name'" in message and pg.slot in message
    assert "reset" in message
    config = validate(pg.definition())
    assert config.topics == [pg.topic(sales)]
    reset_offsets(config, pg.store, pg.kafka, redeliver=True)  # `airconnect reset --redeliver`
    again = pg.run(connect_psycopg3)
    assert again["snapshot_records"] == 2
    assert [(e["op"], e["after"]["id"]) for e in pg.events(sales)] == [("r", 1), ("r", 1), ("r", 2)]


def test_a_snapshot_row_it_cannot_write_names_it_and_the_fixed_row_comes_once(pg):
    sales = pg.table("sales")
    pg.sql(f"INSERT INTO {sales} (id, item, price) VALUES (1, 'apple', 1.5), (2, 'pear', 'NaN')")
    with pytest.raises(DataError) as err:  # Connect's Decimal has no NaN
        pg.run()
    message = str(err.value)
    assert f"connector 'cdc-pg-{pg.u}'" in message and sales in message and "'price'" in message, message
    assert pg.events(sales) == []
    pg.sql(f"UPDATE {sales} SET price = 2 WHERE id = 2")
    pg.run()
    pg.sql(f"INSERT INTO {sales} (id, item, price) VALUES (3, 'fig', 3)")
    pg.run()
    assert [(e["op"], e["after"]["id"], price(e["after"])) for e in pg.events(sales)] == [
        ("r", 1, 1.5), ("r", 2, 2.0), ("c", 3, 3.0)]


def test_unsupported_keys_are_refused_naming_the_key(pg):
    for key, value in (("plugin.name", "pgoutput"), ("database.hostname", "db"), ("slot.drop.on.stop", "true"),
                       ("snapshot.mode", "always")):
        with pytest.raises(ConfigError) as err:
            validate(pg.definition(**{key: value}))
        assert f"key '{key}'" in str(err.value)


# ------------------------------------------------------------------------------ crashes

CHILD = str(ROOT / "tests" / "crash_child.py")
POINTS = ("kafka.produced", "kafka.before_commit", "kafka.after_commit", "offsets.saved", "cdc.committed",
          "cdc.advanced", "cdc.snapshot_committed")


def test_sigkill_at_every_step_delivers_everything_once(pg, tmp_path):
    sales = pg.table("sales")
    pg.sql(f"INSERT INTO {sales} (id, item) SELECT g, 'snap' || g FROM generate_series(1, 5) g")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"definition": pg.definition(**{"max.batch.size": "3"}), "kafka": pg.kafka,
                                "store": str(tmp_path / "offsets.json"), "resources": {"db": DSN}}))

    def child(point: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "AIRCONNECT_FAILPOINT"}
        if point:
            env["AIRCONNECT_FAILPOINT"] = point
        proc = subprocess.run([sys.executable, CHILD, str(spec)], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.returncode

    # The snapshot: killed inside it (the next run drops the slot it made and starts again), then
    # right after it committed.
    kills = (child("kafka.produced:1") == -signal.SIGKILL) + (child("cdc.snapshot_committed:1") == -signal.SIGKILL)
    assert kills == 2
    next_id = 100
    for round_, point in enumerate([f"{p}:{n}" for p in POINTS if p != "cdc.snapshot_committed"
                                     for n in ((1, 2) if p.startswith("cdc.") else (2,))]):
        for _ in range(4):  # two transactions of two rows, and a delete: each run has 2+ batches of 3 changes
            pg.sql(f"BEGIN; INSERT INTO {sales} (id, item) VALUES ({next_id}, 'r{round_}'), ({next_id + 1}, "
                   f"'r{round_}'); COMMIT")
            next_id += 2
        pg.sql(f"DELETE FROM {sales} WHERE id = {next_id - 1}")
        kills += child(point) == -signal.SIGKILL
        assert child(None) == 0
    assert kills >= 10
    events = pg.events(sales)
    snapshot = [e["after"]["id"] for e in events if e and e["op"] == "r"]
    created = [e["after"]["id"] for e in events if e and e["op"] == "c"]
    deleted = [e["before"]["id"] for e in events if e and e["op"] == "d"]
    assert sorted(snapshot) == [1, 2, 3, 4, 5]
    assert sorted(created) == list(range(100, next_id))
    assert sorted(deleted) == list(range(107, next_id, 8))
    assert sum(1 for e in events if e is None) == len(deleted)


def test_the_operator_runs_it_with_the_airflow_connection(pg):
    """Under Airflow: db.conn.id names the Connection (PostgresHook's connection, the replication
    connection from the Connection's address), offsets in the Variable."""
    from airconnect.core.offsets import Offsets
    from airconnect.hooks import VariableStore
    from airconnect.operators import ConnectorOperator

    sales = pg.table("sales")
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (1, 'apple')")
    op = ConnectorOperator(connector=pg.definition())
    assert op.execute({})["snapshot_records"] == 1
    pg.sql(f"DELETE FROM {sales} WHERE id = 1")
    assert op.execute({})["records"] == 2  # the delete and its tombstone
    assert ops(pg.events(sales)) == [("r", 1, "apple"), ("d", 1, ""), ("tombstone",)]
    offsets = Offsets(VariableStore(), f"cdc-pg-{pg.u}")
    assert offsets.get({"server": pg.prefix})["lsn"] > 0
    offsets.clear()
