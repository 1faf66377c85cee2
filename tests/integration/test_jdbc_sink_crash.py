"""JDBC sink, exactly once: a pass SIGKILLed at each step of its commit, then run again, leaves
the table as one clean run would (insert mode with no key, where a record written twice shows as
a second row).

The steps (airconnect.core.failpoints): ``jdbc_sink.written`` (rows and offsets in the open
transaction), ``jdbc_sink.committed`` (committed; the Variable not saved), ``offsets.saved`` (the
Variable saved; the consumer group not committed). Each pass runs as a real subprocess
(tests/crash_child.py) against the real servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from airconnect.core.kafka_client import Admin
from helpers import generator

ROOT = Path(__file__).resolve().parents[2]
CHILD = str(ROOT / "tests" / "crash_child.py")
POINTS = ["jdbc_sink.written", "jdbc_sink.committed", "offsets.saved"]
PER_ROUND = 90  # records added before each killed pass: 3 transactions of checkpoint.records=40


def _pass(spec_path: Path, failpoint: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "AIRCONNECT_FAILPOINT"}
    if failpoint:
        env["AIRCONNECT_FAILPOINT"] = failpoint
    proc = subprocess.run([sys.executable, CHILD, str(spec_path)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode in (0, -signal.SIGKILL), f"pass ({failpoint}) failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc.returncode


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_jdbc_sink_killed_at_each_step_writes_every_record_once(tmp_path, kafka, unique, kind):
    gen = generator()
    url = (f"postgresql://airconnect:airconnect@127.0.0.1:{os.environ.get('AIRCONNECT_POSTGRES_PORT', '5432')}/ec"
           if kind == "postgres" else gen.default_mysql_url())
    conn = gen.connect_pg() if kind == "postgres" else gen.connect_mysql()
    topic = f"sink-crash-{unique}"
    Admin(kafka).ensure_topic(topic, partitions=2)
    name = f"sink-test-crash-{unique}"
    spec = {"kafka": kafka, "store": str(tmp_path / "offsets.json"), "resources": {"db": url},
            "definition": {"name": name, "config": {
                "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "topics": topic,
                "db.conn.id": "unused", "auto.create": "true", "batch.size": "15", "checkpoint.records": "40"}}}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    producer = Producer(kafka)
    schema = ('{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"},'
              '{"type":"string","optional":false,"field":"item"}],"optional":false,"name":"line"}')
    produced = 0
    kills = 0
    q = '"' if kind == "postgres" else "`"
    try:
        for hit in (1, 2):
            for point in POINTS:
                for i in range(produced, produced + PER_ROUND):
                    value = f'{{"schema":{schema},"payload":{{"id":{i},"item":"ITEM{i % 97:03d}"}}}}'.encode()
                    producer.produce(topic, value, partition=i % 2)
                assert producer.flush(30) == 0
                produced += PER_ROUND
                kills += _pass(spec_path, f"{point}:{hit}") == -signal.SIGKILL
                assert _pass(spec_path, None) == 0
                cur = conn.cursor()
                cur.execute(f"SELECT id FROM {q}{topic}{q}")
                ids = Counter(r[0] for r in cur.fetchall())
                conn.commit()
                doubled = sorted(k for k, n in ids.items() if n > 1)
                assert not doubled, f"after a kill at {point}:{hit}: ids written twice: {doubled[:10]}"
                assert sorted(ids) == list(range(produced)), f"after a kill at {point}:{hit}: ids lost"
        assert kills == 2 * len(POINTS), f"only {kills} of {2 * len(POINTS)} passes reached their kill point"
    finally:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {q}{topic}{q}")
        cur.execute("DELETE FROM airconnect_sink_offsets WHERE connector = %s", (name,))
        conn.commit()
        conn.close()
