"""One DAG per connector created at runtime (REST ``POST /connectors``, ``airconnect create``).

The definitions live in Airflow's metadata database (``airconnect.definitions_db``: Airflow
Variables ``airconnect.connector.<name>``); each valid one becomes the DAG
``connector_<name>``, run by the same operators as the connectors of the file-defined DAGs:

- a file source: ``@continuous``; each run waits in the triggerer until the file grows, then
  delivers the new lines;
- a JDBC source or a CDC source: a run every ``poll.interval.ms`` (Kafka Connect's and Debezium's
  key; default 5 s);
- a sink (file, S3): ``@continuous``; each run waits in the triggerer until its topics hold
  records beyond its offsets, then delivers them.

Pausing the connector pauses its DAG; ``initial_state`` PAUSED or STOPPED creates it paused.
A stored definition that is invalid (or whose name a file in the connectors folder defines)
makes no DAG: ``connector_definitions.py``'s import error names it, and the other connectors
run on. The REST API asks the DAG processor to parse this file as soon as a definition changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airconnect.connectors.file.source import FILE_SOURCE
from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.core.config import ConnectorConfig
from airconnect.definitions_db import RUNTIME_TAG, runtime_connectors, runtime_dag_id
from airconnect.sensors import FileChangeSensor, TopicRecordsSensor
from airconnect.tasks import connector_task


def connector_dag(config: ConnectorConfig, initial_state: str) -> DAG:
    polled = config.cls is JDBC_SOURCE or "poll.interval.ms" in config.cls.all_keys()  # (CDC sources too)
    schedule = timedelta(milliseconds=config["poll.interval.ms"]) if polled else "@continuous"
    with DAG(
        dag_id=runtime_dag_id(config.name),
        description=f"{config.cls.name} '{config.name}' ({config.kind}: {', '.join(config.topics)})",
        schedule=schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,  # one run at a time: offsets never race
        is_paused_upon_creation=initial_state != "RUNNING",
        default_args={"retries": 3, "retry_delay": timedelta(seconds=5), "retry_exponential_backoff": True},
        tags=["airconnect", RUNTIME_TAG, config.kind],
        doc_md=__doc__,
    ) as dag:
        run = connector_task(config)  # tasks.max above 1: a split, then one mapped task per share
        if config.cls is FILE_SOURCE:
            FileChangeSensor(connector=config, poll_interval=0.5, max_wait=timedelta(minutes=30)) >> run
        elif config.kind == "sink":
            TopicRecordsSensor(connector=config, poll_interval=0.5, max_wait=timedelta(minutes=30)) >> run
    return dag


configs, _errors = runtime_connectors()  # (the errors are connector_definitions.py's import error)
for _config, _state in configs:
    globals()[runtime_dag_id(_config.name)] = connector_dag(_config, _state)
