"""The JDBC source's fetch fast path (rows.Fragments: DECIMAL and timestamp values' JSON text taken
from the database's text) writes exactly the bytes of the general path (the driver's values and
the column writers), on values hypothesis finds, stored in and read back from the real PostgreSQL
and MariaDB: decimals with many digits and negative scale, NaN, NULLs, Japanese text, timestamps
with and without a zone (years below 1000, trimmed fractions, infinity), dates, booleans, bytes."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airconnect.connectors.jdbc.dialect import DIALECTS
from airconnect.connectors.jdbc.rows import Column, describe_columns, fragments_for, value_writer, values_writer
from airconnect.core.errors import DataError
from helpers import generator

UTC = dt.timezone.utc
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")

PG_TABLE = ("(id BIGINT PRIMARY KEY, d NUMERIC(30,10), dn NUMERIC, dneg NUMERIC(6,-2), d0 NUMERIC(12,2), "
            "ts TIMESTAMPTZ(6), ts0 TIMESTAMPTZ(0), tsn TIMESTAMP(6), day DATE, flag BOOLEAN, b BYTEA, name TEXT, "
            "f DOUBLE PRECISION)")
MY_TABLE = ("(id BIGINT PRIMARY KEY, d DECIMAL(30,10), d6 DECIMAL(20,6), d0 DECIMAL(12,2), ts TIMESTAMP(6) NULL, "
            "dtm DATETIME(6), dt0 DATETIME, dt3 DATETIME(3), day DATE, flag BOOLEAN, b VARBINARY(64), "
            "name VARCHAR(100), f DOUBLE) CHARACTER SET utf8mb4")

texts = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20) | st.sampled_from(
    ["お茶 500ml", 'say "hi"\\\n\x01', "\u2028", ""])
naive = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 30))
# Fractions PostgreSQL trims ("...:00.5+00"), whole seconds, years below 1000 (the general path's
# own form), and any microsecond.
micros = st.sampled_from([0, 500000, 120000, 100, 1]) | st.integers(0, 999999)
stamps = st.builds(lambda v, us: v.replace(microsecond=us), naive, micros)


def _decimals(places: int, digits: int) -> st.SearchStrategy[Decimal]:
    bound = Decimal(10) ** (digits - places) - 1
    return st.decimals(min_value=-bound, max_value=bound, places=places, allow_nan=False, allow_infinity=False)


def pg_rows() -> st.SearchStrategy[list[tuple]]:
    row = st.tuples(
        st.none() | _decimals(10, 30) | st.sampled_from([Decimal("0.0000001"), Decimal("0E-10"), Decimal("-0.00000010")]),
        st.none() | st.decimals(allow_infinity=False, places=None).filter(
            lambda d: not d.is_snan() and (d.is_nan() or abs(d.adjusted()) < 60))
        | st.sampled_from([Decimal("1E-7"), Decimal("0.000001"), Decimal("12.50"), Decimal("1E+20"), Decimal("NaN")]),
        st.none() | st.integers(-99999949, 99999949),  # NUMERIC(6,-2) rounds to hundreds, below 10^8
        st.none() | _decimals(2, 12),
        st.none() | st.builds(lambda v, z: v.replace(tzinfo=z), stamps, st.sampled_from([UTC, TOKYO]))
        .filter(lambda v: v.astimezone(UTC).year >= 1),  # (a value in Tokyo's year 1 may fall before UTC's)
        st.none() | st.builds(lambda v: v.replace(tzinfo=UTC), stamps),
        st.none() | stamps,
        st.none() | st.dates(min_value=dt.date(1, 1, 1)),
        st.none() | st.booleans(),
        st.none() | st.binary(max_size=20),
        st.none() | texts,
        st.none() | st.floats(allow_nan=False, allow_infinity=False),
    )
    return st.lists(row, min_size=1, max_size=8)


def my_rows() -> st.SearchStrategy[list[tuple]]:
    my_stamps = st.builds(lambda v, us: v.replace(microsecond=us), st.datetimes(
        min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 30)), micros)
    row = st.tuples(
        st.none() | _decimals(10, 30) | st.sampled_from([Decimal("0.0000001"), Decimal("0E-10")]),
        st.none() | _decimals(6, 20),
        st.none() | _decimals(2, 12),
        st.none() | st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2038, 1, 1)),
        st.none() | my_stamps | st.sampled_from([dt.datetime(999, 12, 31, 23, 59, 59, 999999)]),
        st.none() | my_stamps,
        st.none() | my_stamps,
        st.none() | st.dates(min_value=dt.date(1000, 1, 1)),
        st.none() | st.booleans(),
        st.none() | st.binary(max_size=20),
        st.none() | texts,
        st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32),
    )
    return st.lists(row, min_size=1, max_size=8)


def _same(v: object) -> str:
    """What a value is, comparable (NaN != NaN; bytea comes as a memoryview)."""
    return repr(bytes(v) if isinstance(v, memoryview) else v)


class Table:
    def __init__(self, kind: str, name: str, columns: str | None = None):
        gen = generator()
        self.kind, self.name = kind, name
        self.dialect = DIALECTS["postgres" if kind == "postgres" else "mysql"]
        self.conn = gen.connect_pg() if kind == "postgres" else gen.connect_mysql()
        self.dialect.prepare_session(self.conn)
        self.execute(f"CREATE TABLE {name} {columns or (PG_TABLE if kind == 'postgres' else MY_TABLE)}")

    def execute(self, sql: str, params=None) -> None:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        cur.close()
        self.conn.commit()

    def fill(self, rows: list[tuple], extra_sql: list[str] = ()) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(f"DELETE FROM {self.name}")
            marks = ", ".join(["%s"] * (len(rows[0]) + 1))
            cur.executemany(f"INSERT INTO {self.name} VALUES ({marks})", [(i, *r) for i, r in enumerate(rows)])
            for sql in extra_sql:
                cur.execute(sql)
        except Exception:
            self.conn.rollback()
            raise
        finally:
            cur.close()
        self.conn.commit()

    def general(self, zone: dt.tzinfo) -> tuple[Any, list[tuple], list[Column], Callable[[Any], bytes]]:
        """The table's description, its rows as the driver reads them, its columns, the general writer."""
        cur = self.conn.cursor()
        cur.execute(f"SELECT * FROM {self.name} ORDER BY id")
        description = cur.description
        expected_rows = cur.fetchall()
        cur.close()
        columns = describe_columns(self.dialect, description, zone, {})
        return description, expected_rows, columns, value_writer(columns, "t", True)

    def both_ways(self, zone: dt.tzinfo) -> int:
        """Reads the table the general way and the fast way; asserts the same bytes (or the same
        refusal) for every row and the same values read back; returns how many cells the fast path
        took as text."""
        description, expected_rows, columns, general = self.general(zone)
        frag = fragments_for(self.dialect, self.conn, description, columns, zone)
        assert frag is not None
        fast = values_writer(columns, "t", True, fragments=frag)
        cur = self.dialect.server_cursor(self.conn, 3)
        with frag.installed(self.conn, cur):
            cur.execute(f"SELECT * FROM {self.name} ORDER BY id")
        rows = []
        while chunk := cur.fetchmany(3):
            rows += chunk
        cur.close()
        self.conn.commit()
        assert len(rows) == len(expected_rows)
        taken = 0
        for raw, row in zip(expected_rows, rows):
            assert [_same(frag.value(c, v)) for c, v in zip(columns, row)] == [_same(v) for v in raw]
            taken += sum(1 for c, v in zip(columns, row) if v.__class__ is str and frag.casts(c))
            try:
                want: bytes | str = general(raw)
            except DataError as exc:
                want = str(exc)
            try:
                got: bytes | str = fast([row])[0]
            except DataError as exc:
                got = str(exc)
            assert got == want
        return taken

    def close(self) -> None:
        self.execute(f"DROP TABLE {self.name}")
        self.conn.close()


@pytest.fixture(scope="module")
def pg_table():
    import uuid

    t = Table("postgres", f"fast_{uuid.uuid4().hex[:10]}")
    yield t
    t.close()


@pytest.fixture(scope="module")
def my_table():
    import uuid

    t = Table("mysql", f"fast_{uuid.uuid4().hex[:10]}")
    yield t
    t.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=pg_rows(), zone=st.sampled_from([UTC, TOKYO]))
def test_postgres_fast_path_writes_the_general_paths_bytes(pg_table, rows, zone):
    pg_table.fill(rows)
    pg_table.both_ways(zone)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=my_rows(), zone=st.sampled_from([UTC, TOKYO]))
def test_mariadb_fast_path_writes_the_general_paths_bytes(my_table, rows, zone):
    my_table.fill(rows)
    my_table.both_ways(zone)


def test_the_fast_path_is_taken_and_leaves_the_odd_forms_to_the_general_one(pg_table, my_table):
    """Ordinary values come as text; infinity, NaN, a year below 1000, a BC-free but odd zone, and
    MariaDB's zero and invalid dates come through the driver, with the general path's bytes."""
    ts = dt.datetime(2018, 10, 31, 23, 30, 0, 123450, tzinfo=UTC)
    row = (Decimal("12.5000000000"), Decimal("NaN"), 1200, Decimal("3.10"), ts, ts, ts.replace(tzinfo=None),
           dt.date(2018, 11, 1), True, b"\x00\xff", "お茶", 0.5)
    pg_table.fill([row, row[:1] + (Decimal("1.5"),) + row[2:]], [
        f"INSERT INTO {pg_table.name} (id, ts, ts0, tsn, day) VALUES "
        "(10, 'infinity', '-infinity', '0999-01-01 00:00:00.5', 'infinity'), "
        "(11, '2018-10-31 23:30:00.5+09', '2018-10-31 23:30:00', '2018-10-31 23:30:00', '0999-01-01')"])
    assert pg_table.both_ways(UTC) >= 10

    my_row = (Decimal("12.5"), Decimal("0.000001"), Decimal("3.10"), ts.replace(tzinfo=None), ts.replace(tzinfo=None),
              ts.replace(tzinfo=None, microsecond=0), ts.replace(tzinfo=None), dt.date(2018, 11, 1), True, b"\x00", "お茶", 0.5)
    my_table.fill([my_row])
    my_table.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
    my_table.execute(f"INSERT INTO {my_table.name} (id, dtm, dt0, dt3, day) VALUES "
                     "(10, '0000-00-00 00:00:00', '2018-02-30 10:00:00', '2018-00-10 00:00:00.5', '0000-00-00')")
    assert my_table.both_ways(UTC) >= 5


# ----------------------------------------------------------------------------- PostgreSQL writes the JSON (pgcopy)

PG_SERVER_TABLE = ("(id BIGINT PRIMARY KEY, i INT, s SMALLINT, d0 NUMERIC(12,2), d6 NUMERIC(20,6), dz NUMERIC(8,0), "
                   "ts TIMESTAMPTZ(6), ts0 TIMESTAMPTZ(0), tsn TIMESTAMP(6), flag BOOLEAN, name TEXT, v VARCHAR(20), "
                   "c CHAR(5))")
# Text with what JSON escapes, Jackson's upper-case hex, characters beyond U+FFFF, COPY's own escapes.
server_texts = texts | st.sampled_from(["\\u0001", "a\\\\b", "\x1f\x7f\t\r\n\b\f", "😀 \U0001F600x", "\\N", "tab\there"])


def pg_server_rows() -> st.SearchStrategy[list[tuple]]:
    row = st.tuples(
        st.none() | st.integers(-2**31, 2**31 - 1),
        st.none() | st.integers(-2**15, 2**15 - 1),
        st.none() | _decimals(2, 12) | st.just(Decimal("NaN")),
        st.none() | _decimals(6, 20) | st.sampled_from([Decimal("0.000001"), Decimal("0.000000")]),
        st.none() | _decimals(0, 8),
        st.none() | st.builds(lambda v, z: v.replace(tzinfo=z), stamps, st.sampled_from([UTC, TOKYO]))
        .filter(lambda v: v.year > 1),
        st.none() | st.builds(lambda v: v.replace(tzinfo=UTC), stamps),
        st.none() | stamps,
        st.none() | st.booleans(),
        st.none() | server_texts,
        st.none() | server_texts.map(lambda t: t[:20]),
        st.none() | server_texts.map(lambda t: t[:5]),
    )
    return st.lists(row, min_size=1, max_size=8)


class ServerTable(Table):
    def __init__(self, name: str):
        super().__init__("postgres", name, PG_SERVER_TABLE)

    def both_ways(self, zone: dt.tzinfo = UTC) -> int:
        """The general path (the driver's values, the writers) and the server's JSON over COPY: the
        same value and key bytes (or the same refusal) for every row, the same values read back;
        returns how many rows the server wrote itself."""
        from airconnect.connectors.jdbc.pgcopy import CopyChunks, server_rows

        description, expected_rows, columns, general = self.general(zone)
        general_key = values_writer([columns[0]], "k", True, [0])
        server = server_rows(self.conn, description, columns, {}, [0], zone, self.dialect.quote, "t", True, "k", True)
        assert server is not None
        chunks = CopyChunks(self.conn, server.copy_sql(f"SELECT * FROM {self.name}", " ORDER BY id"), 3, server.prepare)
        lines, got = [], []

        def consume(chunk: list[bytes]) -> None:  # (a chunk's records are asked for before the next chunk)
            lines.extend(chunk)
            for line in chunk:
                try:
                    values, keys = server.records([line])
                    got.append((values[0], keys[0] if keys else None))
                except DataError as exc:
                    got.append(str(exc))

        chunks.run(consume, lambda exc: exc)  # type: ignore[arg-type,return-value]
        chunks.close()
        self.conn.commit()
        assert len(lines) == len(expected_rows)
        own = 0
        for raw, line, record in zip(expected_rows, lines, got):
            own += line[:1] != b"X"
            assert [_same(v) for v in server.row(line)] == [_same(v) for v in raw]
            try:
                want: object = (general(raw), general_key([raw])[0])
            except DataError as exc:
                want = str(exc)
            assert record == want
        return own


@pytest.fixture(scope="module")
def pg_server_table():
    import uuid

    t = ServerTable(f"copy_{uuid.uuid4().hex[:10]}")
    yield t
    t.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=pg_server_rows())
def test_postgres_writes_the_general_paths_bytes(pg_server_table, rows):
    pg_server_table.fill(rows)
    pg_server_table.both_ways()


def test_postgres_writes_ordinary_rows_and_leaves_the_odd_ones_to_the_general_path(pg_server_table):
    """Ordinary rows come as the server's JSON; NaN, infinity and years below 1000 come as their
    values' text and take the general writer (NaN: the same refusal); a table with a column the
    server does not write (a float), or a naive timestamp read in a zone other than UTC, is read
    by the cursor path."""
    from airconnect.connectors.jdbc.pgcopy import server_rows

    ts = dt.datetime(2018, 10, 31, 23, 30, 0, 123450, tzinfo=UTC)
    row = (7, 3, Decimal("3.10"), Decimal("0.000001"), Decimal(12), ts, ts, ts.replace(tzinfo=None), True,
           'say "hi"\\\n\x01😀', "お茶", "ab")
    pg_server_table.fill([row, row], [
        f"INSERT INTO {pg_server_table.name} (id, d0, ts, ts0, tsn) VALUES "
        "(10, 'NaN', 'infinity', '-infinity', '0999-01-01 00:00:00.5'), (11, 1, '2018-10-31 23:30:00.5+09', "
        "'0500-01-01 00:00:00+00', '2018-10-31 23:30:00')"])
    assert pg_server_table.both_ways() == 2 + 0 + 0  # the two ordinary rows; 10 and 11 have an odd value each

    cur = pg_server_table.conn.cursor()
    cur.execute(f"SELECT * FROM {pg_server_table.name} WHERE 1 = 0")
    description = cur.description
    cur.execute("SELECT 1::float8 AS f WHERE 1 = 0")
    with_float = description + cur.description
    cur.close()
    q = pg_server_table.dialect.quote
    columns = describe_columns(pg_server_table.dialect, description, TOKYO, {})
    assert server_rows(pg_server_table.conn, description, columns, {}, [0], TOKYO, q, "t", True, "k", True) is None
    columns = describe_columns(pg_server_table.dialect, with_float, UTC, {})
    assert server_rows(pg_server_table.conn, with_float, columns, {}, [0], UTC, q, "t", True, "k", True) is None
