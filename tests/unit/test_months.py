"""Which month a run exports: the closed month before the logical date, or the one asked for."""

import datetime as dt

import pytest

from airconnect.core.errors import ConfigError
from airconnect.core.months import month_to_export


@pytest.mark.parametrize(("logical", "expected"), [
    (dt.datetime(2018, 11, 1, 3, 0, tzinfo=dt.timezone.utc), "2018-10"),
    (dt.datetime(2019, 1, 1), "2018-12"),
    (dt.date(2018, 3, 15), "2018-02"),
])
def test_the_month_before_the_logical_date(logical, expected):
    assert month_to_export(logical) == expected


def test_an_explicit_month_wins():
    assert month_to_export(dt.datetime(2018, 11, 1), "2017-05") == "2017-05"
    assert month_to_export(dt.datetime(2018, 11, 1), "  ") == "2018-10"


@pytest.mark.parametrize("bad", ["2018-13", "201810", "2018/10", "Oct 2018"])
def test_a_bad_month_names_itself(bad):
    with pytest.raises(ConfigError, match=f"month '{bad}' is not of the form YYYY-MM"):
        month_to_export(dt.datetime(2018, 11, 1), bad)
