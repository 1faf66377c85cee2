"""Property tests: each fast path equals the general path it mirrors, on any input hypothesis finds
(the example-based tests beside them keep the awkward cases that once broke)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from airconnect.connectors.jdbc.dialect import DIALECTS
from airconnect.connectors.jdbc.rows import describe_columns, value_writer, value_writer_reference
from airconnect.core.config import JSON_CONVERTER, STRING_CONVERTER
from airconnect.core.converters import StringValueWriter, payload_text, plain_lines, plain_payload

lines = st.lists(st.text(alphabet=st.characters(exclude_characters="\n", exclude_categories=("Cs",)), max_size=40),
                 min_size=1, max_size=20)


@given(lines, st.sampled_from([(JSON_CONVERTER, True), (JSON_CONVERTER, False), (STRING_CONVERTER, False)]))
def test_the_file_sources_bulk_values_equal_one_line_at_a_time(texts, converter):
    writer = StringValueWriter(*converter)
    raw = [t.encode("utf-8") for t in texts]
    if plain_lines(b"\n".join(raw)):  # the file source takes the bulk path only for such chunks
        assert writer.plain_values(raw) == [writer(t) for t in texts]


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60))
def test_the_file_sinks_payload_shortcut_equals_the_parse(text):
    for value in (StringValueWriter(JSON_CONVERTER, True)(text), StringValueWriter(JSON_CONVERTER, False)(text)):
        fast = plain_payload(value)
        if fast is not None:
            assert fast == payload_text(value).encode("utf-8")


UTC = dt.timezone.utc
COLUMNS = [("id", 20, None, None), ("flag", 16, None, None), ("ratio", 701, None, None), ("price", 1700, 12, 2),
           ("sold_at", 1184, None, None), ("local_at", 1114, None, None), ("day", 1082, None, None),
           ("blob", 17, None, None), ("name", 25, None, None)]
timestamps = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30))
rows = st.tuples(
    st.none() | st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.none() | st.booleans(),
    st.none() | st.floats(allow_nan=False, allow_infinity=False),
    st.none() | st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2),
    st.none() | timestamps.map(lambda d: d.replace(tzinfo=UTC)),
    st.none() | timestamps,
    st.none() | st.dates(),
    st.none() | st.binary(max_size=20),
    st.none() | st.text(max_size=30),
)


@settings(max_examples=300)
@given(st.lists(rows, min_size=1, max_size=5), st.booleans(), st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York"]))
def test_the_jdbc_sources_compiled_row_writer_equals_the_plain_loop(batch, envelope, zone):
    import zoneinfo

    description = [(name, oid, None, None, precision, scale) for name, oid, precision, scale in COLUMNS]
    columns = describe_columns(DIALECTS["postgres"], description, zoneinfo.ZoneInfo(zone), {})
    fast = value_writer(columns, "public.uriage", envelope)
    plain = value_writer_reference(columns, "public.uriage", envelope)
    for row in batch:
        assert fast(row) == plain(row)
        json.loads(fast(row))
