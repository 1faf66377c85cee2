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
    (None, None, None, None, None, None, None, None, None, None, None),
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
