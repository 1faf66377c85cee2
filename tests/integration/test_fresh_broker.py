"""A freshly started broker: its group coordinator is not ready for the first seconds.

The demo's second run on a just-started stack failed with
``deleting group connect-…: Broker: Not coordinator``. Every place that touches a consumer
group (reset, lag, offsets, commits) rides that out as the transient condition it is.
The module starts a one-broker cluster of its own (ports from 19192,
``AIRCONNECT_KAFKA_FRESH_PORT``), formatted anew, and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from airconnect.core import manage
from airconnect.core.kafka_client import commit_group_offsets
from airconnect.core.offsets import MemoryStore
from airconnect.core.registry import validate
from helpers import file_sink

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("AIRCONNECT_KAFKA_FRESH_PORT", "19192"))
STACK = ROOT / ".stack" / "kafka-fresh-test"


def stack(*args: str) -> None:
    env = {**os.environ, "AIRCONNECT_STACK_DIR": str(STACK), "AIRCONNECT_KAFKA_LIBS": str(ROOT / ".stack" / "kafka-libs"),
           "AIRCONNECT_KAFKA_PORT": str(PORT), "AIRCONNECT_KAFKA_BROKERS": "1",
           "AIRCONNECT_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT}"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def fresh_broker():
    """A broker started a moment ago on empty storage: no __consumer_offsets yet."""
    stack("stop", "kafka")
    shutil.rmtree(STACK, ignore_errors=True)
    stack("start", "kafka")  # returns as soon as the port accepts connections
    try:
        yield {"bootstrap.servers": f"127.0.0.1:{PORT}"}
    finally:
        stack("stop", "kafka")
        shutil.rmtree(STACK, ignore_errors=True)


def test_reset_lag_and_commit_ride_out_a_coordinator_that_is_not_ready(fresh_broker, tmp_path):
    config = validate(file_sink("sink-fresh-tenpo", tmp_path / "out.txt", "tenpo-zaiko"))
    store = MemoryStore()
    # What the demo does first on a just-started stack: reset the sink (deletes its group).
    assert manage.reset_offsets(config, store, fresh_broker)["message"].endswith("reset successfully")
    # Then a commit and a read of the group's offsets, as a sink run and `airconnect lag` do.
    manage.Admin(fresh_broker).ensure_topic("tenpo-zaiko")
    commit_group_offsets(fresh_broker, manage.sink_group(config), {("tenpo-zaiko", 0): 0})
    assert manage.group_offsets(config, fresh_broker) == [
        {"kafka_topic": "tenpo-zaiko", "kafka_partition": 0, "kafka_offset": 0}]
