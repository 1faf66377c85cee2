"""The JDBC source's row writer: the compiled form writes exactly what the plain loop writes,
and what it writes is the record a Kafka Connect user expects."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from decimal import Decimal

import pytest

from airconnect.connectors.jdbc.dialect import DIALECTS
from airconnect.connectors.jdbc.rows import describe_columns, value_writer, value_writer_reference, values_writer
from airconnect.core.errors import DataError

UTC = dt.timezone.utc
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")

# (name, PostgreSQL type oid, precision, scale): every kind the source maps.
PG_COLUMNS = [
    ("id", 20, None, None), ("small", 21, None, None), ("flag", 16, None, None), ("ratio", 701, None, None),
    ("price", 1700, 10, 2), ("sold_at", 1184, None, None), ("local_at", 1114, None, None), ("day", 1082, None, None),
    ("blob", 17, None, None), ("name", 25, None, None), ("odd \"col\"", 1043, None, None),
]

ROWS = [
    (1, 2, True, 0.5, Decimal("12.30"), dt.datetime(2018, 10, 31, 23, 30, tzinfo=UTC), dt.datetime(2018, 11, 1, 8, 30),
     dt.date(2018, 11, 1), b"\x00\xff", "お茶 500ml", 'say "hi"\\\n\x01'),
    (3, None, None, None, None, None, None, None, None, None, None),  # (id is NOT NULL)
    # Values in another zone, microseconds, an int subclass (bool in an int column), a str subclass,
    # Decimal exponent forms, a year below 1000, a timestamp given as text.
    (True, 7, False, 1e-300, Decimal("1E+3"), dt.datetime(2018, 3, 25, 1, 59, 59, 999999, tzinfo=TOKYO),
     dt.datetime(999, 1, 1), dt.date(1, 1, 1), bytearray(b"abc"), type("S", (str,), {})("sub"), ""),
    (2**63 - 1, -32768, 0, -0.0, Decimal("-0.00"), dt.datetime(1, 1, 1, tzinfo=UTC),
     "2018-01-01 00:00:00", dt.date(9999, 12, 31), b"", "\u2028\ud7ff", "x" * 1000),
]


def pg_columns(zone: dt.tzinfo = UTC):
    description = [(name, oid, None, None, precision, scale) for name, oid, precision, scale in PG_COLUMNS]
    return describe_columns(DIALECTS["postgres"], description, zone, {"id": False})


@pytest.mark.parametrize("zone", [UTC, TOKYO], ids=["utc", "tokyo"])
@pytest.mark.parametrize("envelope", [True, False], ids=["schemas", "schemaless"])
def test_compiled_writer_equals_the_plain_loop(zone, envelope):
    columns = pg_columns(zone)
    fast = value_writer(columns, "public.sales", envelope)
    plain = value_writer_reference(columns, "public.sales", envelope)
    for row in ROWS:
        assert fast(row) == plain(row)
        json.loads(fast(row))  # valid JSON, whatever the values


@pytest.mark.parametrize("zone", [UTC, TOKYO], ids=["utc", "tokyo"])
@pytest.mark.parametrize("envelope", [True, False], ids=["schemas", "schemaless"])
def test_the_chunk_writer_equals_the_row_writer(zone, envelope):
    """values_writer writes a fetched chunk at once: the same bytes as value_writer row by row,
    for the value and for a key read at indexes (the fast path's equality with the database's
    text is held by tests/integration/test_jdbc_fast_path.py)."""
    columns = pg_columns(zone)
    assert values_writer(columns, "public.sales", envelope)(ROWS) == [value_writer(columns, "public.sales", envelope)(r)
                                                                      for r in ROWS]
    key_cols, idx = [columns[0], columns[9], columns[4]], [0, 9, 4]
    assert values_writer(key_cols, "c.Key", envelope, idx)(ROWS) == [value_writer(key_cols, "c.Key", envelope, idx)(r)
                                                                     for r in ROWS]
    row = list(ROWS[0])
    row[4] = Decimal("NaN")
    with pytest.raises(DataError, match="DECIMAL value NaN"):
        values_writer(columns, "t", envelope)([ROWS[0], row])


@pytest.mark.parametrize("envelope", [True, False], ids=["schemas", "schemaless"])
def test_a_null_in_a_not_null_column_is_refused_naming_the_column(envelope):
    """MariaDB gives None for a zero date (0000-00-00) even in a NOT NULL column: its field is
    required, so every writer refuses it (JsonConverter would, and Kafka Connect's JDBC source
    does) instead of writing a null a consumer cannot read."""
    columns = pg_columns()
    row = (None,) + ROWS[0][1:]
    for write in (value_writer(columns, "t", envelope), value_writer_reference(columns, "t", envelope),
                  lambda r: values_writer(columns, "t", envelope)([ROWS[0], r])):
        with pytest.raises(DataError, match="column 'id' is NOT NULL, yet the database gave no value"):
            write(row)


def test_the_written_record():
    columns = pg_columns(TOKYO)
    doc = json.loads(value_writer(columns, "public.sales", True)(ROWS[0]), parse_float=Decimal)
    assert doc["schema"]["name"] == "public.sales"
    assert [f["field"] for f in doc["schema"]["fields"]] == [c[0] for c in PG_COLUMNS]
    assert doc["payload"] == {
        "id": 1, "small": 2, "flag": True, "ratio": Decimal("0.5"), "price": Decimal("12.30"),  # exact decimals
        "sold_at": "2018-10-31T23:30:00.000000Z",
        "local_at": "2018-10-31T23:30:00.000000Z",  # naive: read in db.timezone (Tokyo, +09:00)
        "day": "2018-11-01", "blob": "AP8=", "name": "お茶 500ml", 'odd "col"': 'say "hi"\\\n\x01',
    }
    assert json.loads(value_writer(columns, "t", True)(ROWS[2]))["payload"]["sold_at"] == "2018-03-24T16:59:59.999999Z"


def test_key_writer_reads_the_key_columns_of_the_row():
    columns = pg_columns()
    key = value_writer([columns[0], columns[9]], "c.Key", False, indexes=[0, 9])
    assert json.loads(key(ROWS[0])) == {"id": 1, "name": "お茶 500ml"}


def test_a_value_json_cannot_hold_is_refused_by_both():
    columns = pg_columns()
    row = list(ROWS[0])
    row[4] = Decimal("NaN")
    for writer in (value_writer(columns, "t", True), value_writer_reference(columns, "t", True)):
        with pytest.raises(DataError, match="DECIMAL value NaN"):
            writer(row)


@pytest.mark.parametrize("zone", [UTC, TOKYO], ids=["utc", "tokyo"])
def test_timestamp_fast_paths_write_the_general_form(zone):
    from airconnect.core.jsonexact import iso_utc

    by_name = {c.name: c for c in pg_columns(zone)}
    values = [dt.datetime(2018, 10, 31, 23, 30, 1, 5), dt.datetime(2018, 10, 31, 23, 30, tzinfo=UTC),
              dt.datetime(2018, 10, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(0))),
              dt.datetime(2018, 10, 31, 23, 30, tzinfo=TOKYO), dt.datetime(999, 12, 31, 23, 59, 59), dt.datetime(1000, 1, 1)]
    for v in values:
        for name, naive_zone in (("sold_at", UTC), ("local_at", zone)):
            aware = v if v.tzinfo is not None else v.replace(tzinfo=naive_zone)
            assert by_name[name].write(v) == '"' + iso_utc(aware) + '"', (name, v)


def test_text_beyond_the_bmp_and_control_characters_as_connects_jsonconverter_writes_them():
    # Jackson (Connect's JsonConverter) escapes each half of a surrogate pair and writes control
    # characters in upper-case hex: the bytes tests/smt/cases.json holds from Connect itself.
    columns = pg_columns()
    row = (1, None, None, None, None, None, None, None, None, "おにぎり 🍙", "tab\x1fend")
    for write in (value_writer(columns, "t", True), value_writer_reference(columns, "t", True)):
        value = write(row)
        assert "\"name\":\"おにぎり \\uD83C\\uDF59\"".encode() in value
        assert b'"odd \\"col\\"":"tab\\u001Fend"' in value
    assert values_writer(columns, "t", True)([row]) == [value_writer(columns, "t", True)(row)]


# MySQL/MariaDB: (name, type code, display length, scale) as mysqlclient describes the columns.
MY_COLUMNS = [
    ("id", 8, 20, 0), ("price", 246, 14, 2), ("whole", 246, 36, 0), ("micro", 246, 22, 6), ("tiny", 246, 32, 10),
    ("dt0", 12, 19, 0), ("dt1", 12, 21, 1), ("dt3", 12, 23, 3), ("dt5", 12, 25, 5), ("dt6", 12, 26, 6),
    ("ts6", 7, 26, 6), ("odd", 12, 26, 31), ("name", 253, 400, 0),
]
# The server's text, as mysqlclient hands it with str as the converter: NULLs, ordinary values,
# zero and invalid dates (the driver reads None), years 999 and 1000, Feb 29 in a leap year and
# not, fractions of every length, a fraction the column did not announce, negative and large
# decimals, and places beyond 6 (exponent forms).
MY_TEXT_ROWS = [
    (1, "12.30", "-5", "0.000001", "-123.4560000000", "2018-10-31 23:30:00", "2018-10-31 23:30:00.5",
     "2018-10-31 23:30:00.123", "2018-10-31 23:30:00.12345", "2018-10-31 23:30:00.123456", "2018-10-31 23:30:00.000001",
     "2018-10-31 23:30:00.12", "お茶"),
    (2, None, None, None, None, None, None, None, None, None, None, None, None),
    (3, "-0.01", "99999999999999999999999999999999999", "-0.000001", "0.0000000100", "0000-00-00 00:00:00",
     "0000-00-00 00:00:00.0", "2018-02-30 10:00:00.000", "2018-00-10 00:00:00.00000", "0999-12-31 23:59:59.999999",
     "0000-00-00 00:00:00.000000", "0999-01-01 00:00:00", 'say "hi"'),
    (4, "12345678901234567890.12", "0", "0.000000", "0.0000000000", "1000-01-01 00:00:00", "2020-02-29 12:00:00.1",
     "2019-02-29 12:00:00.100", "9999-12-31 23:59:59.99999", "2018-10-31 23:30:00", "1970-01-01 00:00:01.000000",
     "2018-13-01 00:00:00", "x"),
    (5, "12.5", "-0", "1.5", "1", "2018-10-31 23:30:00.123456", "2018-10-31 23:30:00.12", "2018-10-31 23:30:00",
     "2018-10-31 23:30:00.1234567", "2018-04-31 00:00:00.000000", "2038-01-19 03:14:07.999999", "2018-10-31", ""),
]


@pytest.mark.parametrize("zone", [UTC, TOKYO], ids=["utc", "tokyo"])
def test_mysql_text_fast_path_writes_the_general_paths_bytes(zone):
    """The MySQL/MariaDB fast path (the server's DECIMAL and DATETIME text, written into JSON by the
    compiled writers) gives the bytes of the general path (mysqlclient's own converters, then the
    column writers) on the edge values, and reads back the driver's values for offsets
    (tests/integration/test_jdbc_fast_path.py holds the same against a real MariaDB)."""
    from MySQLdb.converters import conversions

    from airconnect.connectors.jdbc.rows import mysql_fragments

    description = [(name, code, size, size, size, scale, 1) for name, code, size, scale in MY_COLUMNS]
    columns = describe_columns(DIALECTS["mysql"], description, zone, {"id": False})
    frag = mysql_fragments(description, columns, zone, dict(conversions), "utf8mb4")
    assert frag is not None
    assert mysql_fragments(description, columns, zone, dict(conversions), "binary") is None  # (no codec for it)
    as_text = {code for code, conv in frag.codes.items() if conv is str}
    assert as_text == ({246, 7, 12} if zone is UTC else {246, 7})

    def driver(text_row, keep=frozenset()):  # what mysqlclient gives with its own converters (keep: with str)
        return tuple(v if v is None or d[1] not in (246, 7, 12) or d[1] in keep else conversions[d[1]](v)
                     for d, v in zip(description, text_row))

    general_rows = [driver(r) for r in MY_TEXT_ROWS]
    fast_rows = [driver(r, as_text) for r in MY_TEXT_ROWS]
    for envelope in (True, False):
        general = value_writer(columns, "pos.sales", envelope)
        assert values_writer(columns, "pos.sales", envelope, fragments=frag)(fast_rows) == [general(r) for r in general_rows]
        idx = [9, 1, 0]  # a key with a text column
        key = value_writer([columns[i] for i in idx], "k", envelope, idx)
        assert (values_writer([columns[i] for i in idx], "k", envelope, idx, frag)(fast_rows)
                == [key(r) for r in general_rows])
    for fast, general_row in zip(fast_rows, general_rows):
        assert [frag.value(c, v) for c, v in zip(columns, fast)] == list(general_row)
