"""Thin operators over airconnect's core: validate at parse time, run one pass, return counts.

Errors a retry cannot fix (a bad definition or offset, a record that cannot be converted)
fail the task without retries; broker, database and S3 outages raise and are retried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airconnect.connectors.file.sink import FILE_SINK
from airconnect.connectors.file.source import FILE_SOURCE
from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.jdbc_sink.spec import JDBC_SINK
from airconnect.connectors.s3.manifest import MANIFEST_PREFIX, write_month_manifest
from airconnect.connectors.s3.spec import S3_SINK
from airconnect.core.config import ConnectorClass, ConnectorConfig
from airconnect.core.errors import ConfigError, PermanentError
from airconnect.core.months import parse_month
from airconnect.core.registry import validate
from airconnect.core.runtime import run
from airconnect.hooks import s3_client


class ConnectorOperator(BaseOperator):
    """Runs one bounded pass of a connector defined like a Kafka Connect connector.

    :param connector: the definition, ``{"name": ..., "config": {...}}`` as posted to Connect.
        It is validated when the DAG is parsed; the task id defaults to the connector's name.
    :param kafka_config_id: Airflow connection to Kafka (default: the definition's
        ``kafka.conn.id``, else ``kafka_default``).
    :param task_config: one task's share of the connector's work (a JSON map from
        :func:`airconnect.core.split.task_configs`; mapped tasks get theirs from ``expand``, see
        :func:`airconnect.tasks.connector_task`); ``None``: all of it.
    """

    template_fields: Sequence[str] = ("connector",)
    ui_color = "#e8f0fe"
    connector_class: ClassVar[ConnectorClass | None] = None

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, kafka_config_id: str | None = None,
                 task_config: Mapping[str, Any] | None = None, **kwargs: Any):
        config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
        if self.connector_class is not None and config.cls is not self.connector_class:
            raise ConfigError(f"is {config.cls.name}; {type(self).__name__} runs {self.connector_class.name}",
                              connector=config.name, key="connector.class")
        kwargs.setdefault("task_id", config.name)
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.kafka_config_id = kafka_config_id
        self.task_config = dict(task_config) if task_config is not None else None

    def connector_resources(self, config: ConnectorConfig) -> dict[str, Any]:
        """What the connector's spec says it needs besides Kafka and the offset store, from Airflow:
        a DB-API connection factory (``connect``), a boto3 S3 client (``s3_client``)."""
        return resources_for(config)

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.hooks import VariableStore, kafka_config

        config = validate(self.connector).for_task(self.task_config)
        kafka = kafka_config(self.kafka_config_id or config["kafka.conn.id"])
        if self.task_config is not None:
            self.log.info("connector '%s', task %s of its split: %s", config.name, self.task_config.get("task"),
                          {k: v for k, v in self.task_config.items() if k != "task"} or "all of its work")
        try:
            result = run(config, VariableStore(), kafka, **self.connector_resources(config))
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("connector '%s': %s", config.name, result)
        for outlet in self.outlets:  # e.g. inventory_sync's load tells auto_order that inventory changed
            context["outlet_events"][outlet].extra = {"connector": config.name, "records": result.get("records")}
        return result


class FileSourceOperator(ConnectorOperator):
    """Delivers each new complete line of a file to a topic, exactly once.

    Guarantee: each batch of lines and its file position are committed to Kafka in one
    transaction; the position is then saved in the Airflow Variable. A run killed at any point
    and run again delivers every line once (read_committed consumers never see a batch twice).
    """

    connector_class = FILE_SOURCE


class FileSinkOperator(ConnectorOperator):
    """Appends each new committed record's payload to a file, one line each, exactly once.

    Guarantee: the file is fsynced before offsets are saved; a run killed after writing but
    before saving truncates the file back to the saved length on its next run, so no line is
    written twice and none is lost.
    """

    connector_class = FILE_SINK


def db_connect(conn_id: str, connector: str) -> Any:
    """A DB-API connection factory from an Airflow Connection (postgres or mysql type)."""
    from airflow.sdk.bases.hook import BaseHook

    conn_type = (BaseHook.get_connection(conn_id).conn_type or "").lower()
    if conn_type in ("postgres", "postgresql"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=conn_id).get_conn
    if conn_type in ("mysql", "mariadb"):
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        return MySqlHook(mysql_conn_id=conn_id).get_conn
    raise AirflowFailException(
        f"connector '{connector}', key 'db.conn.id': the Airflow Connection '{conn_id}' has type "
        f"'{conn_type}'; expected a postgres or mysql connection"
    )


def db_params(conn_id: str) -> dict[str, Any]:
    """An Airflow Connection's address and credentials, for what a DB-API connection cannot open
    (a CDC source's replication connection, a binlog stream)."""
    from airflow.sdk.bases.hook import BaseHook

    c = BaseHook.get_connection(conn_id)
    return {"host": c.host, "port": c.port, "user": c.login, "password": c.password, "database": c.schema}


#: How the Airflow glue provides each resource a connector's spec names (``ConnectorClass.resources``).
RESOURCES: dict[str, Callable[[ConnectorConfig], Any]] = {
    "connect": lambda config: db_connect(config["db.conn.id"], config.name),
    "s3_client": lambda config: s3_client(config["aws.conn.id"]),
    "db_params": lambda config: db_params(config["db.conn.id"]),
}


def resources_for(config: ConnectorConfig) -> dict[str, Any]:
    """What ``config``'s class needs besides Kafka and the offset store (its spec's ``resources``),
    from Airflow's Connections: for its runs, and for the CLI and the REST API, which read, reset
    and alter the offsets a class keeps outside the Variable (a JDBC sink's, in its database)."""
    return {name: RESOURCES[name](config) for name in config.cls.resources}


def offsets_resources(config: ConnectorConfig) -> dict[str, Any] | None:
    """The resources ``manage`` needs to read or change ``config``'s offsets: its class's, when it
    keeps offsets outside the Variable (``ConnectorClass.kept_offsets``: a JDBC sink's database)."""
    return resources_for(config) if config.cls.kept_offsets is not None else None


class JdbcSourceOperator(ConnectorOperator):
    """Reads new rows of database tables into topics, exactly once (Kafka Connect's JDBC source).

    Guarantee: each batch of rows and its offset (timestamp/incrementing) are committed to Kafka
    in one transaction, then the offset is saved in the Airflow Variable; a run killed at any
    point and run again delivers every row once. The database connection comes from the
    Airflow Connection named by the definition's ``db.conn.id`` (postgres or mysql).
    """

    connector_class = JDBC_SOURCE


class JdbcSinkOperator(ConnectorOperator):
    """Writes each new committed struct record into database tables, exactly once (Confluent's
    JDBC sink: insert, upsert, update, delete on tombstones).

    Guarantee: the rows and the consumed offsets are committed in one database transaction (the
    offsets in the table ``airconnect_sink_offsets``, authoritative at the next start); the Airflow
    Variable and the consumer group follow. A run killed at any point and run again writes every
    record once. The database connection comes from the Airflow Connection named by ``db.conn.id``.
    """

    connector_class = JDBC_SINK


class S3SinkOperator(ConnectorOperator):
    """Exports each new committed record to S3 as JSON lines, one folder per month, exactly once.

    Guarantee: object keys depend only on (topic, partition, first offset) and objects are cut
    at offsets a re-run reproduces; a partition's offset is saved in the Airflow Variable only
    after all its objects are uploaded. A run killed at any point and run again overwrites the
    same keys with the same bytes: no record is lost or stored twice. The S3 client comes from
    the Airflow AWS Connection named by the definition's ``aws.conn.id``.
    """

    connector_class = S3_SINK


class MonthManifestOperator(BaseOperator):
    """Writes ``manifests/<connector>/year=YYYY/month=MM/manifest.json`` for one month of an S3
    sink's objects: the connector's name; per topic its Kafka topic id, each object's key, size,
    records and sha256, and the totals; under ``stale``, objects of an earlier life of their
    topic (deleted and created again), which are not counted. Deterministic, so a re-run writes
    the same bytes. Each outlet Asset's event carries ``{"month", "bucket", "key", "connector"}``.

    :param connector: the S3 sink's definition (bucket, ``topics.dir``, topics, ``aws.conn.id``).
    :param month: ``YYYY-MM`` (templated, or an XComArg).
    :param kafka_config_id: Airflow connection to Kafka, for the topics' ids (default: the
        definition's ``kafka.conn.id``, else ``kafka_default``).
    """

    template_fields: Sequence[str] = ("month",)
    ui_color = "#e8f0fe"

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, month: Any,
                 manifest_prefix: str = MANIFEST_PREFIX, kafka_config_id: str | None = None, **kwargs: Any):
        config = s3_sink_config(connector, type(self).__name__)
        kwargs.setdefault("task_id", f"{config.name}-manifest")
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.month = month
        self.manifest_prefix = manifest_prefix
        self.kafka_config_id = kafka_config_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.hooks import kafka_config

        config = validate(self.connector)
        try:
            year, month = parse_month(str(self.month))
            manifest = write_month_manifest(config, s3_client(config["aws.conn.id"]),
                                            kafka_config(self.kafka_config_id or config["kafka.conn.id"]),
                                            year, month, manifest_prefix=self.manifest_prefix)
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        bucket = config["s3.bucket.name"]
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"month": f"{year:04d}-{month:02d}", "bucket": bucket,
                                                      "key": manifest["key"], "connector": config.name}
        return {"key": manifest["key"], "records": manifest["records"], "objects": manifest["objects"]}


def s3_sink_config(connector: Mapping[str, Any] | ConnectorConfig, operator: str) -> ConnectorConfig:
    config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
    if config.cls is not S3_SINK:
        raise ConfigError(f"is {config.cls.name}; {operator} needs an S3 sink", connector=config.name,
                          key="connector.class")
    return config
