"""KIP-875's reset of a CDC source whose log position is still there (a PostgreSQL slot that was
not dropped; MariaDB's binlog): the next run delivers a new snapshot of the tables (op ``r``),
as the README's "Change data capture" says, then streams on from the snapshot's position; a
reset never silently resumes where the old offsets were."""

from __future__ import annotations

import pytest
from test_cdc_mariadb import Maria
from test_cdc_postgres import Pg

from airconnect.core.manage import reset_offsets
from airconnect.core.registry import validate


@pytest.fixture
def pg_cdc(unique, kafka):
    db = Pg(unique, kafka)
    yield db
    db.close()


@pytest.fixture
def maria_cdc(unique, kafka):
    db = Maria(unique, kafka)
    yield db
    db.close()


def rows(events):
    return [(e["op"], (e["after"] or e["before"])["id"]) for e in events if e is not None]


def test_a_postgres_reset_with_the_slot_in_place_delivers_a_new_snapshot(pg_cdc):
    pg = pg_cdc
    sales = pg.table("sales")
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (1, 'apple')")
    pg.run()
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (2, 'pear')")
    pg.run()
    assert rows(pg.events(sales)) == [("r", 1), ("c", 2)]
    reset_offsets(validate(pg.definition()), pg.store, pg.kafka, redeliver=True)
    again = pg.run()
    assert again["snapshot_records"] == 2
    pg.sql(f"INSERT INTO {sales} (id, item) VALUES (3, 'fig')")
    pg.run()
    assert rows(pg.events(sales)) == [("r", 1), ("c", 2), ("r", 1), ("r", 2), ("c", 3)]


def test_a_mariadb_reset_delivers_a_new_snapshot(maria_cdc):
    db = maria_cdc
    sales = db.table("sales")
    db.sql(f"INSERT INTO {sales} (id, item) VALUES (1, 'apple')")
    db.run()
    db.sql(f"INSERT INTO {sales} (id, item) VALUES (2, 'pear')")
    db.run()
    assert rows(db.events(sales)) == [("r", 1), ("c", 2)]
    reset_offsets(validate(db.definition()), db.store, db.kafka, redeliver=True)
    assert db.run()["snapshot_records"] == 2
    db.sql(f"INSERT INTO {sales} (id, item) VALUES (3, 'fig')")
    db.run()
    assert rows(db.events(sales)) == [("r", 1), ("c", 2), ("r", 1), ("r", 2), ("c", 3)]
