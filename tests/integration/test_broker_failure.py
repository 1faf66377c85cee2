"""Broker failure on a real 3-broker KRaft cluster (replication factor 3, min.insync.replicas 2;
airconnect's producers use acks=all and idempotence).

The module starts its own cluster beside the local stack's broker (scripts/stack.sh with a
stack folder of its own and ports from 19092, AIRCONNECT_KAFKA3_PORT) and stops it at the end:

* a broker SIGKILLed while a file source delivers 400,000 lines: every line arrives once;
* every broker SIGKILLed: the run fails with an error that says Kafka is unreachable, and the
  offsets stay where they were; with the brokers back, the next run delivers the rest once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airconnect.core.errors import KafkaUnavailableError, TransientError
from airconnect.core.offsets import MemoryStore
from airconnect.core.runtime import run
from helpers import file_sink, file_source, read_topic

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("AIRCONNECT_KAFKA3_PORT", "19092"))
BOOTSTRAP = f"127.0.0.1:{PORT},127.0.0.1:{PORT + 2},127.0.0.1:{PORT + 4}"


def stack(*args: str) -> str:
    env = {**os.environ, "AIRCONNECT_STACK_DIR": str(ROOT / ".stack" / "kafka3-test"),
           "AIRCONNECT_KAFKA_LIBS": str(ROOT / ".stack" / "kafka-libs"),
           "AIRCONNECT_KAFKA_PORT": str(PORT), "AIRCONNECT_KAFKA_BROKERS": "3", "AIRCONNECT_KAFKA_BOOTSTRAP": BOOTSTRAP}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def kill_all() -> None:
    for n in ("1", "2", "3"):
        out = stack("status", "kafka")
        if f"broker {n}: running" in out:
            stack("kill-broker", n)


def start_all() -> dict[str, str]:
    """Start the brokers and wait until all three are registered."""
    from confluent_kafka.admin import AdminClient

    stack("start", "kafka")
    conf = {"bootstrap.servers": BOOTSTRAP}
    deadline = time.monotonic() + 90
    while len(AdminClient(conf).list_topics(timeout=10).brokers) < 3:
        assert time.monotonic() < deadline, "the 3-broker cluster did not form within 90 s"
        time.sleep(0.5)
    return conf


@pytest.fixture(scope="module")
def cluster():
    conf = start_all()
    try:
        yield conf
    finally:
        kill_all()  # a throw-away cluster: no controlled shutdown (it waits for a quorum that is leaving)


def test_a_broker_killed_mid_run_loses_and_doubles_nothing(cluster, tmp_path, unique):
    lines = [f"ITEM{i % 997:03d},SHOP{i % 13:03d},{i},2018-10-01 01:01:01" for i in range(400_000)]
    path = tmp_path / "latest.txt"
    path.write_text("".join(line + "\n" for line in lines))
    topic = f"failover-{unique}"
    spec = {"kafka": cluster, "store": str(tmp_path / "offsets.json"),
            "definition": file_source(f"failover-{unique}", str(path), topic, **{"batch.size": "2000"})}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    child = [sys.executable, str(ROOT / "tests" / "crash_child.py"), str(tmp_path / "spec.json")]

    proc = subprocess.Popen(child, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Mid-run: as soon as the first batch is committed (its offset is in the store), the topic
    # exists and batches are streaming. (A fixed sleep missed the run once the source got faster.)
    store, deadline = tmp_path / "offsets.json", time.monotonic() + 60
    while not store.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before a broker could be killed; give it more lines"
    stack("kill-broker", "2")
    out, _ = proc.communicate(timeout=300)
    retries = 0
    while proc.returncode != 0:  # a batch caught by the failover fails as transient: Airflow retries it
        assert "KafkaUnavailableError" in out or "TransientError" in out, out[-3000:]
        retries += 1
        assert retries <= 3, out[-3000:]
        proc = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
    got = [json.loads(v)["payload"] for v in read_topic(cluster, topic, timeout=60)]
    assert len(got) == len(lines) and got == lines

    # The EC side, read from the two brokers left: the file gets every line once.
    ec = tmp_path / "ec.txt"
    run(file_sink(f"failover-sink-{unique}", str(ec), topic), MemoryStore(), cluster)
    assert ec.read_text().splitlines() == lines
    start_all()  # broker 2 back for the next test


def test_with_every_broker_down_the_run_fails_clearly_and_offsets_stay(cluster, tmp_path, unique):
    path = tmp_path / "latest.txt"
    path.write_text("ITEM001,SHOP001,929,2018-10-01 01:01:01\n")
    store, topic = MemoryStore(), f"down-{unique}"
    definition = file_source(f"down-{unique}", str(path), topic)
    run(definition, store, cluster)
    before = dict(store)
    with open(path, "a") as f:
        f.write("ITEM002,SHOP001,480,2018-10-01 01:01:01\n")

    kill_all()  # every broker down at once (SIGKILL, as a power cut does)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match=rf"Kafka at .*{PORT}.* (did not answer|could not)"):
        run(definition, store, cluster)
    assert time.monotonic() - started < 60
    assert dict(store) == before  # the offsets stay where they were

    start_all()  # the brokers back
    for attempt in range(1, 4):
        try:
            run(definition, store, cluster)
            break
        except TransientError:
            # Right after a cluster-wide power cut the transaction coordinator may still be
            # finishing the last commit it had (seen once: "concurrent operation ... ongoing" for
            # 30 s). The run fails as transient, with nothing sent, and Airflow's retry runs it again.
            assert attempt < 3, "the run still failed on its third try after the brokers came back"
    got = [json.loads(v)["payload"] for v in read_topic(cluster, topic, timeout=60)]
    assert got == ["ITEM001,SHOP001,929,2018-10-01 01:01:01", "ITEM002,SHOP001,480,2018-10-01 01:01:01"]
