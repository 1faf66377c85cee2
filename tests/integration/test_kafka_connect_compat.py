"""Interoperability with the real Kafka Connect (standalone worker, the jars the stack fetched):
Connect's FileStreamSink reads what airconnect's source wrote, airconnect's sink reads what
Connect's FileStreamSource wrote, and the record values are the same bytes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from airconnect.core.offsets import MemoryStore
from airconnect.core.runtime import run
from helpers import file_sink, file_source, read_topic

ROOT = Path(__file__).resolve().parents[2]
LINES = "ITEM001,SHOP001,929,2018-10-01 01:01:01\nITEM002,SHOP001,480,2018-10-01 01:01:01\nITEM010,SHOP001,12,お茶 500ml 🍵\n"


def _kafka_libs() -> Path:
    if os.environ.get("KAFKA_HOME"):
        return Path(os.environ["KAFKA_HOME"]) / "libs"
    libs = Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack")) / "kafka-libs"
    if not any(libs.glob("connect-file-*.jar")):
        pytest.fail(f"Kafka Connect's jars are not in {libs}; run scripts/stack.sh fetch")
    return libs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(path: Path, content: bytes, timeout: float = 90.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes() == content:
            return content
        time.sleep(0.25)
    return path.read_bytes() if path.exists() else b"<missing>"


def test_kafka_connect_and_airconnect_read_each_others_topics(tmp_path, kafka, unique):
    ours_topic, connect_topic = f"ours-{unique}", f"connect-{unique}"
    inventory = tmp_path / "latest.txt"
    inventory.write_text(LINES, encoding="utf-8")
    store = MemoryStore()
    run(file_source(f"load-{unique}", inventory, ours_topic), store, kafka)

    worker = tmp_path / "worker.properties"
    worker.write_text(
        f"bootstrap.servers={kafka['bootstrap.servers']}\n"
        "key.converter=org.apache.kafka.connect.json.JsonConverter\n"
        "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
        f"offset.storage.file.filename={tmp_path / 'connect.offsets'}\n"
        "offset.flush.interval.ms=1000\n"
        f"listeners=http://127.0.0.1:{_free_port()}\n"
        "plugin.discovery=only_scan\n"
    )
    (tmp_path / "sink.properties").write_text(
        f"name=connect-sink-{unique}\nconnector.class=org.apache.kafka.connect.file.FileStreamSinkConnector\n"
        f"tasks.max=1\nfile={tmp_path / 'connect-ec.txt'}\ntopics={ours_topic}\n"
    )
    (tmp_path / "source.properties").write_text(
        f"name=connect-source-{unique}\nconnector.class=org.apache.kafka.connect.file.FileStreamSourceConnector\n"
        f"tasks.max=1\nfile={inventory}\ntopic={connect_topic}\n"
    )
    log = (tmp_path / "connect.log").open("w")
    proc = subprocess.Popen(
        ["java", "-Xmx512m", "-cp", f"{_kafka_libs()}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
         str(worker), str(tmp_path / "sink.properties"), str(tmp_path / "source.properties")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        # Connect's sink wrote every payload airconnect's source produced.
        got = _wait_for(tmp_path / "connect-ec.txt", LINES.encode())
        assert got == LINES.encode(), (tmp_path / "connect.log").read_text()[-3000:]
        # Connect's source wrote the same record values as airconnect's, byte for byte.
        deadline = time.monotonic() + 60
        while len(read_topic(kafka, connect_topic)) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert read_topic(kafka, connect_topic) == read_topic(kafka, ours_topic)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    # airconnect's sink reads Connect's topic.
    ec = tmp_path / "ours-ec.txt"
    assert run(file_sink(f"sink-{unique}", ec, connect_topic), store, kafka)["records"] == 3
    assert ec.read_text(encoding="utf-8") == LINES
