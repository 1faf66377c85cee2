"""Shared fixtures. Integration tests talk to the real servers scripts/stack.sh starts."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

# The same defaults as scripts/env.sh, for a plain `pytest` run.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRCONNECT_CONNECTORS_DIR", str(ROOT / "include" / "connectors"))
os.environ.setdefault("AIRCONNECT_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
os.environ.setdefault(
    "AIRFLOW_CONN_KAFKA_DEFAULT",
    '{"conn_type": "kafka", "extra": {"bootstrap.servers": "%s"}}' % os.environ["AIRCONNECT_KAFKA_BOOTSTRAP"],
)
os.environ.setdefault("AIRFLOW_CONN_POSTGRES_EC", "postgresql://airconnect:airconnect@127.0.0.1:%s/ec"
                      % os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432"))
os.environ.setdefault("AIRFLOW_CONN_POSTGRES_AUTOORDER", "postgresql://airconnect:airconnect@127.0.0.1:%s/autoorder"
                      % os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432"))
os.environ.setdefault("AIRFLOW_CONN_MYSQL_POS", "mysql://airconnect:airconnect@127.0.0.1:%s/pos"
                      % os.environ.get("AIRCONNECT_MARIADB_PORT", "3306"))


@pytest.fixture(scope="session")
def kafka() -> dict[str, str]:
    """librdkafka config for the local broker; fails (not skips) when it is not running."""
    from confluent_kafka.admin import AdminClient

    conf = {"bootstrap.servers": os.environ["AIRCONNECT_KAFKA_BOOTSTRAP"]}
    try:
        AdminClient(conf).list_topics(timeout=10)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Kafka at {conf['bootstrap.servers']} is not reachable ({exc}); start it: scripts/stack.sh start kafka")
    return conf


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and connector names, so tests never share state."""
    return uuid.uuid4().hex[:10]
