"""Which calendar month a run exports.

Airflow 3's cron schedules have zero-length data intervals: a monthly run on the 1st has
only its logical date. A run exports the month *before* its logical date's month (the run on
2018-11-01 exports 2018-10, the month that has just closed), unless a month is given
explicitly (the trigger form's ``month`` parameter, ``--conf '{"month": "2018-10"}'``).
"""

from __future__ import annotations

import datetime as dt
import re

from airconnect.core.errors import ConfigError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str) -> tuple[int, int]:
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ConfigError(f"month {text!r} is not of the form YYYY-MM (e.g. 2018-10)")
    return int(m.group(1)), int(m.group(2))


def month_to_export(logical_date: dt.datetime | dt.date, requested: str | None = None) -> str:
    """``YYYY-MM``: ``requested`` if given, else the month before ``logical_date``'s month."""
    if requested and requested.strip():
        y, m = parse_month(requested)
        return f"{y:04d}-{m:02d}"
    first = dt.date(logical_date.year, logical_date.month, 1)
    previous = first - dt.timedelta(days=1)
    return f"{previous.year:04d}-{previous.month:02d}"
