"""docker-compose.yaml and the Dockerfile agree with the code (no Docker engine needed: YAML only)."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-init")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def env_sh() -> str:
    return (ROOT / "scripts" / "env.sh").read_text()


def _env_default(env_sh: str, var: str) -> str:
    m = re.search(r'export %s="\$\{%s:-([^}"]+)\}"' % (var, var), env_sh)
    assert m, f"scripts/env.sh has no default for {var}"
    return m.group(1)


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # As compose resolves them with no variable set: ${VAR:-default} is the default.
    return {k: re.sub(r"\$\{[A-Za-z0-9_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def _host_ports(service: dict) -> dict[int, int]:
    """host port -> container port."""
    found = {}
    for p in service.get("ports") or []:
        parts = str(p).split(":")
        found[int(parts[-2])] = int(parts[-1].split("/")[0])
    return found


def _used_conn_ids() -> set[str]:
    """Connection ids the connector definitions and the DAGs use."""
    from airconnect.core.registry import load_definitions

    used = set()
    for c in load_definitions(ROOT / "include" / "connectors"):
        used |= {str(v) for k, v in c.values.items() if k.endswith("conn.id") and v}
    for dag in (ROOT / "dags").glob("*.py"):
        used |= set(re.findall(r"""conn_id\s*=\s*["']([A-Za-z0-9_]+)["']""", dag.read_text()))
    return used


def test_every_service_is_there_and_airflow_is_built_with_airconnect(compose):
    services = compose["services"]
    for name in (*AIRFLOW_SERVICES, "kafka", "postgres", "mariadb", "minio", "minio-init"):
        assert name in services, name
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"] in (".", {"context": "."}), name
        env = _env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:airflow@postgres:5432/airflow")
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
        assert env["AIRCONNECT_CONNECTORS_DIR"] == "/opt/airflow/include/connectors"
        assert env["AIRCONNECT_DATA_DIR"] == "/opt/airflow/data"
    commands = {n: services[n].get("command") for n in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"


def test_the_passwords_file_gives_admin_admin(compose):
    env = _env(compose["services"]["airflow-apiserver"])
    path = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert path.startswith("/opt/airflow/include/")
    assert json.loads((ROOT / "include" / path.removeprefix("/opt/airflow/include/")).read_text()) == {"admin": "admin"}


def test_connection_ids_match_scripts_env_sh(compose, env_sh):
    in_env_sh = set(re.findall(r"AIRFLOW_CONN_([A-Z0-9_]+)=", env_sh))
    used = {c.upper() for c in _used_conn_ids()}
    assert used, "no connection ids found in the definitions"
    assert used <= in_env_sh, f"used but not in scripts/env.sh: {used - in_env_sh}"
    for name in AIRFLOW_SERVICES:
        env = _env(compose["services"][name])
        in_compose = {k.removeprefix("AIRFLOW_CONN_") for k in env if k.startswith("AIRFLOW_CONN_")}
        assert in_env_sh & used <= in_compose, f"{name} lacks {(in_env_sh & used) - in_compose}"
        assert "POSTGRES_AUTOORDER" in in_compose
    env = _env(compose["services"]["airflow-scheduler"])
    assert json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"])["extra"]["bootstrap.servers"] == "kafka:9092"
    assert env["AIRFLOW_CONN_POSTGRES_EC"] == "postgresql://airconnect:airconnect@postgres:5432/ec"
    assert env["AIRFLOW_CONN_POSTGRES_AUTOORDER"] == "postgresql://airconnect:airconnect@postgres:5432/autoorder"
    assert env["AIRFLOW_CONN_MYSQL_POS"] == "mysql://airconnect:airconnect@mariadb:3306/pos"
    aws = json.loads(env["AIRFLOW_CONN_AWS_FORECAST"])
    assert aws["extra"]["endpoint_url"] == "http://minio:9000"
    minio = _env(compose["services"]["minio"])
    assert (aws["login"], aws["password"]) == (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == ("airconnect", "airconnect-secret")


def test_ports_match_the_local_stack(compose, env_sh):
    services = compose["services"]
    expected = {
        "kafka": _env_default(env_sh, "AIRCONNECT_KAFKA_PORT"),
        "postgres": _env_default(env_sh, "AIRCONNECT_POSTGRES_PORT"),
        "mariadb": _env_default(env_sh, "AIRCONNECT_MARIADB_PORT"),
        "minio": _env_default(env_sh, "AIRCONNECT_S3_PORT"),
        "airflow-apiserver": _env_default(env_sh, "AIRCONNECT_API_PORT"),
    }
    assert expected == {"kafka": "9092", "postgres": "5432", "mariadb": "3306", "minio": "9000", "airflow-apiserver": "8080"}
    for service, port in expected.items():
        assert int(port) in _host_ports(services[service]), f"{service} does not publish {port}"
    # Inside the network Kafka listens on kafka:9092, as the connection says.
    kafka = _env(services["kafka"])
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert "localhost:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert kafka["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_databases_and_bucket(compose):
    services = compose["services"]
    pg = _env(services["postgres"])
    assert (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]) == ("airconnect", "airconnect", "ec")
    init = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in str(v)]
    sql = "".join((ROOT / str(v).split(":")[0]).read_text() for v in init)
    for db in ("airflow", "autoorder"):
        assert re.search(rf"CREATE DATABASE {db}\b", sql), db
    assert "CREATE USER airflow WITH PASSWORD 'airflow'" in sql
    maria = _env(services["mariadb"])
    assert (maria["MARIADB_DATABASE"], maria["MARIADB_USER"], maria["MARIADB_PASSWORD"]) == ("pos", "airconnect", "airconnect")
    assert "local/airconnect-forecast" in " ".join(services["minio-init"]["command"])
    assert json.loads((ROOT / "include" / "connectors" / "s3-forecast.json").read_text())["config"]["s3.bucket.name"] == "airconnect-forecast"


def test_mounted_folders_exist(compose):
    for name in AIRFLOW_SERVICES:
        mounts = {}
        for v in compose["services"][name]["volumes"]:
            if isinstance(v, dict):
                mounts[v["source"]] = (v["target"], v.get("bind", {}).get("create_host_path", False))
            else:
                src, target = str(v).split(":")[:2]
                mounts[src] = (target, False)
        assert {src: t for src, (t, _) in mounts.items()} == {
            "./dags": "/opt/airflow/dags", "./plugins": "/opt/airflow/plugins",
            "./include": "/opt/airflow/include", "./data": "/opt/airflow/data"}
        for src, (_, created) in mounts.items():
            # data/ is git-ignored runtime state: compose creates it (create_host_path).
            assert (ROOT / src).is_dir() or created, f"{src} does not exist in the repository"
    for service in compose["services"].values():
        for v in service.get("volumes") or []:
            src = v["source"] if isinstance(v, dict) else str(v).split(":")[0]
            if src.startswith("./") and src != "./data":
                assert (ROOT / src).exists(), src


def test_every_image_tag_is_pinned(compose):
    images = [s["image"] for s in compose["services"].values() if "image" in s]
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    for image in [*images, base]:
        name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        assert tag and tag != "latest", f"{image} is not pinned"
    expected = {"postgres": "airconnect-postgres:15", "mariadb": "mariadb:10.11", "kafka": "apache/kafka:4.1.1"}
    for service, image in expected.items():
        assert compose["services"][service]["image"] == image
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", compose["services"]["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", compose["services"]["minio-init"]["image"])


def test_the_databases_can_give_their_change_logs(compose):
    """The CDC sources' needs: wal2json and wal_level=logical; a row binlog and replication grants."""
    services = compose["services"]
    pg = services["postgres"]
    dockerfile = (ROOT / pg["build"]["context"] / pg["build"]["dockerfile"]).read_text()
    assert "FROM postgres:15\n" in dockerfile and "postgresql-15-wal2json" in dockerfile
    assert "wal_level=logical" in pg["command"]
    maria = services["mariadb"]
    assert {"--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id=1"} <= set(maria["command"])
    init = [v for v in maria["volumes"] if "docker-entrypoint-initdb.d" in str(v)]
    sql = "".join((ROOT / str(v).split(":")[0]).read_text() for v in init)
    assert "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'airconnect'@'%'" in sql


def test_dockerfile_airflow_matches_pyproject_and_the_installed_one():
    dockerfile = (ROOT / "Dockerfile").read_text()
    m = re.search(r"^FROM apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)$", dockerfile, re.M)
    assert m, "the Dockerfile is not FROM apache/airflow:<version>-python<version>"
    image_version = tuple(int(x) for x in m.group(1).split("."))
    pin = re.search(r'"apache-airflow>=(\d+)\.(\d+),<(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert pin, "pyproject.toml has no apache-airflow>=X.Y,<X.Z pin"
    low, high = (int(pin.group(1)), int(pin.group(2))), (int(pin.group(3)), int(pin.group(4)))
    assert low <= image_version[:2] < high
    assert m.group(1) == version("apache-airflow"), "the image's Airflow differs from the one the tests run"
    assert "pip install --no-cache-dir" in dockerfile and re.search(r"^COPY\b", dockerfile, re.M)
