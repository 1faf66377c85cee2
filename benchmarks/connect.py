"""Kafka Connect's own FileStreamSource / FileStreamSink in a standalone worker, as
tests/integration/test_kafka_connect_compat.py starts it (the jars scripts/stack.sh fetched)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEAP = "-Xmx512m"


def kafka_libs() -> Path:
    if os.environ.get("KAFKA_HOME"):
        return Path(os.environ["KAFKA_HOME"]) / "libs"
    libs = Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack")) / "kafka-libs"
    if not any(libs.glob("connect-file-*.jar")):
        raise SystemExit(f"Kafka Connect's jars are not in {libs}; run scripts/stack.sh fetch")
    return libs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConnectWorker:
    """A standalone worker running the given connectors (``{"name": ..., key: value}`` each)."""

    def __init__(self, workdir: Path, bootstrap: str, connectors: list[dict[str, str]],
                 plugin_path: Path | None = None):
        """``plugin_path``: a folder of plugin folders (Debezium's jars, isolated from Kafka's)."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        worker = workdir / "worker.properties"
        worker.write_text(
            f"bootstrap.servers={bootstrap}\n"
            "key.converter=org.apache.kafka.connect.json.JsonConverter\n"
            "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
            f"offset.storage.file.filename={workdir / 'connect.offsets'}\n"
            "offset.flush.interval.ms=1000\n"
            f"listeners=http://127.0.0.1:{_free_port()}\n"
            "plugin.discovery=only_scan\n"
            + (f"plugin.path={plugin_path}\n" if plugin_path is not None else "")
        )
        files = []
        for c in connectors:
            path = workdir / f"{c['name']}.properties"
            path.write_text("".join(f"{k}={v}\n" for k, v in c.items()))
            files.append(str(path))
        self.log_path = workdir / "connect.log"
        self._log = self.log_path.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["java", HEAP, "-cp", f"{kafka_libs()}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
             str(worker), *files],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_rss_mb(self) -> float | None:
        """VmHWM: the JVM process's peak resident set so far."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> ConnectWorker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def file_source(name: str, file: Path, topic: str) -> dict[str, str]:
    return {"name": name, "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "tasks.max": "1", "file": str(file), "topic": topic}


def file_sink(name: str, file: Path, topics: str) -> dict[str, str]:
    return {"name": name, "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "tasks.max": "1", "file": str(file), "topics": topics}
