"""Offsets in Kafka Connect's shapes; a corrupt Variable gives a clear error."""

from __future__ import annotations

import json

import pytest

from airconnect.core.errors import OffsetError
from airconnect.core.offsets import MemoryStore, Offsets


def test_round_trip_in_connects_shape():
    store = MemoryStore()
    o = Offsets(store, "load-zaiko-data")
    o.put({"filename": "/zaiko/latest.txt"}, {"position": 160})
    o.save()
    assert json.loads(store["airconnect.offsets.load-zaiko-data"]) == {
        "offsets": [{"partition": {"filename": "/zaiko/latest.txt"}, "offset": {"position": 160}}]
    }
    assert Offsets(store, "load-zaiko-data").get_int({"filename": "/zaiko/latest.txt"}, "position") == 160


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        ("{not json", "not JSON"),
        ('"160"', "no 'offsets' list"),
        ('{"offsets": {"position": 1}}', "no 'offsets' list"),
        ('{"offsets": [{"offset": {"position": 1}}]}', "entry 0 has no 'partition' object"),
        ('{"offsets": [{"partition": {"filename": "/f"}, "offset": 5}]}', "entry 0 has an 'offset' that is not an object"),
    ],
)
def test_a_corrupt_variable_names_itself_and_what_is_wrong(raw, what):
    with pytest.raises(OffsetError, match=rf"Airflow Variable 'airconnect.offsets.c1'.*{what}"):
        Offsets(MemoryStore({"airconnect.offsets.c1": raw}), "c1")


@pytest.mark.parametrize("position", ["160", -1, 1.5, True, None])
def test_a_position_of_the_wrong_type_is_refused(position):
    store = MemoryStore({"airconnect.offsets.c1": json.dumps(
        {"offsets": [{"partition": {"filename": "/f"}, "offset": {"position": position}}]})})
    with pytest.raises(OffsetError, match=r"position=.*expected a whole number >= 0"):
        Offsets(store, "c1").get_int({"filename": "/f"}, "position")
