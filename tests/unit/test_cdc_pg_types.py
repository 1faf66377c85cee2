"""PostgreSQL's text forms that the CDC source reads into Debezium's types: the cases the
side-by-side test with Debezium (tests/integration/test_cdc_debezium.py) does not reach."""

from __future__ import annotations

import base64

import pytest

from airconnect.connectors.cdc.postgres import interval_micros, pg_array, pg_column, point, zoned_time


def test_array_texts_with_quotes_escapes_nulls_and_nesting():
    assert pg_array("{}") == []
    assert pg_array('{"a b",c,NULL,"NULL","x\\"y","back\\\\slash",""}') == [
        "a b", "c", None, "NULL", 'x"y', "back\\slash", ""]
    assert pg_array("{{1,2},{3,NULL}}") == [["1", "2"], ["3", None]]
    with pytest.raises(ValueError):
        pg_array("1,2")


def test_arrays_convert_their_elements():
    assert pg_column("n", "integer[]", True, "precise").convert("{1,NULL,-3}") == [1, None, -3]
    assert pg_column("b", "boolean[]", True, "precise").convert("{t,f}") == [True, False]
    assert pg_column("t", "character varying(8)[]", False, "precise").convert('{"a,b",c}') == ["a,b", "c"]


def test_intervals_in_microseconds_a_month_being_365_25_over_12_days():
    assert interval_micros("PT0S") == 0
    assert interval_micros("P1M") == 2_629_800_000_000
    assert interval_micros("P1Y2M3DT4H5M6.789S") == 37_091_106_789_000  # what Debezium 3.6.1 wrote
    assert interval_micros("PT-6.5S") == -6_500_000
    assert interval_micros("P-1DT100H") == 273_600_000_000
    with pytest.raises(ValueError):
        interval_micros("1 day")


def test_times_with_zones_in_utc_wrapping_the_day():
    assert zoned_time("12:34:56.789+09") == "03:34:56.789Z"
    assert zoned_time("01:00:00-05:30") == "06:30:00Z"
    assert zoned_time("02:00:00+03") == "23:00:00Z"
    assert zoned_time("23:59:59.500000+00") == "23:59:59.5Z"


def test_money_as_a_decimal_of_scale_2():
    money = pg_column("cash", "money", True, "precise")
    assert money.schema["parameters"] == {"scale": "2"}
    for text, cents in (("$12.34", 1234), ("-$1,234.56", -123456), ("$0.00", 0)):
        assert int.from_bytes(base64.b64decode(money.convert(text)), "big", signed=True) == cents


def test_points_as_x_y_and_little_endian_wkb():
    assert point("(1.5,2)") == {"x": 1.5, "y": 2.0, "wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAABA", "srid": None}  # Debezium's
    assert point("(-1,0)")["wkb"] == base64.b64encode(bytes.fromhex("0101000000" + "000000000000f0bf" + "00" * 8)).decode()


def test_arrays_of_any_mapped_type_are_arrays():
    assert pg_column("a", "inet[]", True, "precise").schema == {
        "type": "array", "items": {"type": "string", "optional": True}, "optional": True}
    assert pg_column("d", "date[]", True, "precise").convert("{2018-10-01,NULL}") == [17805, None]
