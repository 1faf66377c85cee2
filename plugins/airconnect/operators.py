"""Thin operators over airconnect's core: validate at parse time, run one pass, return counts.

Errors a retry cannot fix (a bad definition or offset, a record that cannot be converted)
fail the task without retries; broker, database and S3 outages raise and are retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airconnect.core.config import ConnectorClass, ConnectorConfig, validate
from airconnect.hooks import s3_client
from airconnect.core.errors import ConfigError, PermanentError
from airconnect.core.file_sink import FILE_SINK
from airconnect.core.file_source import FILE_SOURCE
from airconnect.core.jdbc_source import JDBC_SOURCE
from airconnect.core.months import parse_month
from airconnect.core.runtime import run
from airconnect.core.s3_sink import MANIFEST_PREFIX, S3_SINK, write_month_manifest


class ConnectorOperator(BaseOperator):
    """Runs one bounded pass of a connector defined like a Kafka Connect connector.

    :param connector: the definition, ``{"name": ..., "config": {...}}`` as posted to Connect.
        It is validated when the DAG is parsed; the task id defaults to the connector's name.
    :param kafka_config_id: Airflow connection to Kafka (default: the definition's
        ``kafka.conn.id``, else ``kafka_default``).
    """

    template_fields: Sequence[str] = ("connector",)
    ui_color = "#e8f0fe"
    connector_class: ClassVar[ConnectorClass | None] = None

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, kafka_config_id: str | None = None, **kwargs: Any):
        config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
        if self.connector_class is not None and config.cls is not self.connector_class:
            raise ConfigError(f"is {config.cls.name}; {type(self).__name__} runs {self.connector_class.name}",
                              connector=config.name, key="connector.class")
        kwargs.setdefault("task_id", config.name)
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.kafka_config_id = kafka_config_id

    def connector_resources(self, config: ConnectorConfig) -> dict[str, Any]:
        """What the connector needs besides Kafka and the offset store (DB connection, S3 client)."""
        return {}

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.hooks import VariableStore, kafka_config

        config = validate(self.connector)
        kafka = kafka_config(self.kafka_config_id or config["kafka.conn.id"])
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


class JdbcSourceOperator(ConnectorOperator):
    """Reads new rows of database tables into topics, exactly once (Kafka Connect's JDBC source).

    Guarantee: each batch of rows and its offset (timestamp/incrementing) are committed to Kafka
    in one transaction, then the offset is saved in the Airflow Variable; a run killed at any
    point and run again delivers every row once. The database connection comes from the
    Airflow Connection named by the definition's ``db.conn.id`` (postgres or mysql).
    """

    connector_class = JDBC_SOURCE

    def connector_resources(self, config: ConnectorConfig) -> dict[str, Any]:
        return {"connect": db_connect(config["db.conn.id"], config.name)}


class S3SinkOperator(ConnectorOperator):
    """Exports each new committed record to S3 as JSON lines, one folder per month, exactly once.

    Guarantee: object keys depend only on (topic, partition, first offset) and objects are cut
    at offsets a re-run reproduces; a partition's offset is saved in the Airflow Variable only
    after all its objects are uploaded. A run killed at any point and run again overwrites the
    same keys with the same bytes: no record is lost or stored twice. The S3 client comes from
    the Airflow AWS Connection named by the definition's ``aws.conn.id``.
    """

    connector_class = S3_SINK

    def connector_resources(self, config: ConnectorConfig) -> dict[str, Any]:
        return {"s3_client": s3_client(config["aws.conn.id"])}


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
        config = _s3_sink(connector, type(self).__name__)
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


def _postgres_connect(conn_id: str, connector: str) -> Any:
    """A DB-API connection to the auto-order system (PostgreSQL: its SQL uses ON CONFLICT and LOCK TABLE)."""
    from airflow.sdk.bases.hook import BaseHook

    conn_type = (BaseHook.get_connection(conn_id).conn_type or "").lower()
    if conn_type not in ("postgres", "postgresql"):
        raise AirflowFailException(
            f"connector '{connector}', key 'db.conn.id': the auto-order system must be PostgreSQL, but the "
            f"Airflow Connection '{conn_id}' has type '{conn_type}'")
    return db_connect(conn_id, connector)()


def _orders_source(connector: Mapping[str, Any] | ConnectorConfig) -> ConnectorConfig:
    config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
    if config.cls is not JDBC_SOURCE:
        raise ConfigError(f"is {config.cls.name}; the auto-order system is named by the JDBC source that publishes "
                          f"its orders", connector=config.name, key="connector.class")
    return config


def _s3_sink(connector: Mapping[str, Any] | ConnectorConfig, operator: str) -> ConnectorConfig:
    config = connector if isinstance(connector, ConnectorConfig) else validate(connector)
    if config.cls is not S3_SINK:
        raise ConfigError(f"is {config.cls.name}; {operator} needs an S3 sink", connector=config.name,
                          key="connector.class")
    return config


class SalesForecastOperator(BaseOperator):
    """Forecasts next month's demand per item and shop from the S3 sink's monthly exports (flow 3).

    Reads every month up to ``month`` from the sink's folders, holds ``month`` out to measure the
    accuracy (WAPE, MAPE), writes ``forecast/year=YYYY/month=MM/forecast.json`` and an
    actual-vs-forecast PNG beside it, and publishes one record per series to ``sales-forecast``.

    Guarantee: the S3 objects are overwritten with the same bytes by a re-run; the topic gets a
    month's forecast once (a Kafka transaction journals the published months), so a run killed
    at any point and run again publishes nothing twice.

    :param connector: the S3 sink's definition (bucket, ``topics.dir``, topics, ``aws.conn.id``).
    :param month: the last exported month, ``YYYY-MM`` (templated); empty: the newest month among
        the triggering export-manifest Asset events.
    :param forecast_topic: where the forecast is published (its offsets are named after it).
    """

    template_fields: Sequence[str] = ("month",)
    ui_color = "#fdf3e1"

    def __init__(self, *, connector: Mapping[str, Any] | ConnectorConfig, month: str = "",
                 forecast_topic: str = "sales-forecast", item_master: str | None = None,
                 kafka_config_id: str | None = None, **kwargs: Any):
        config = _s3_sink(connector, type(self).__name__)
        kwargs.setdefault("task_id", "forecast")
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.month = month
        self.forecast_topic = forecast_topic
        self.item_master = item_master
        self.kafka_config_id = kafka_config_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.core.auto_order import default_item_master
        from airconnect.core.sales_forecast import (
            build_forecast, item_names, month_to_forecast_from, publish_forecast, settings_for,
        )
        from airconnect.hooks import VariableStore, kafka_config

        config = validate(self.connector)
        events = context.get("triggering_asset_events") or {}
        event_months = [str((e.extra or {}).get("month") or "") for asset in events for e in events[asset]]
        try:
            month = month_to_forecast_from(str(self.month or ""), event_months)
            settings = settings_for(config, self.forecast_topic)
            doc = build_forecast(s3_client(config["aws.conn.id"]), settings, month,
                                 names=item_names(self.item_master or default_item_master()))
            published = publish_forecast(doc, settings, kafka_config(self.kafka_config_id or config["kafka.conn.id"]),
                                         VariableStore())
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        bucket = settings.bucket
        self.log.info("forecast for %s (from %s): WAPE %s over %d series; s3://%s/%s", doc["month"],
                      doc["based_on"]["months"], doc["accuracy"]["wape"], doc["based_on"]["series"], bucket, doc["key"])
        self.log.info("the actual-vs-forecast chart: s3://%s/%s", bucket, doc["chart_key"])
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"month": doc["month"], "bucket": bucket, "key": doc["key"]}
        return {"month": doc["month"], "key": doc["key"], "chart_key": doc["chart_key"],
                "accuracy": doc["accuracy"], "methods": doc["methods"], "published": published["published"]}


class InventoryViewOperator(BaseOperator):
    """Applies the new records of ``zaiko-data`` to the auto-order system's ``inventory_latest``
    (the newest stock per item and shop), reading only what came after its saved offsets.

    Guarantee: the offsets are saved after the database commit; a replay after a crash
    re-applies the same changes, which leaves the view as it was.

    :param orders_connector: the JDBC source that publishes the orders; its ``db.conn.id`` names
        the auto-order system's PostgreSQL database.
    """

    ui_color = "#fdf3e1"

    def __init__(self, *, orders_connector: Mapping[str, Any] | ConnectorConfig, inventory_topic: str = "zaiko-data",
                 kafka_config_id: str | None = None, **kwargs: Any):
        config = _orders_source(orders_connector)
        kwargs.setdefault("task_id", "inventory_view")
        super().__init__(**kwargs)
        self.orders_connector = config.definition()
        self.inventory_topic = inventory_topic
        self.kafka_config_id = kafka_config_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.core.auto_order import OrderSettings, update_inventory_view
        from airconnect.hooks import VariableStore, kafka_config

        config = validate(self.orders_connector)
        conn = _postgres_connect(config["db.conn.id"], config.name)
        try:
            result = update_inventory_view(conn, kafka_config(self.kafka_config_id or config["kafka.conn.id"]),
                                           VariableStore(), OrderSettings(inventory_topic=self.inventory_topic))
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            conn.close()
        self.log.info("inventory view: %s", result)
        return result


class PlaceOrdersOperator(BaseOperator):
    """Places the orders the latest forecast and the inventory view call for (flow 3).

    quantity = demand over the lead time + safety stock - stock on hand - open orders, never
    negative, rounded up to whole packs (pack sizes and lead times from the item master;
    ``safety_stock_days`` is the default for items whose master row has none).

    Guarantee: the orders are computed and inserted in one transaction holding a lock on
    ``auto_orders``; a re-run, or a run after a crash, finds them open and orders nothing twice.

    :param forecast_month: ``YYYY-MM`` of the forecast to order from (templated); empty: the newest.
    """

    template_fields: Sequence[str] = ("forecast_month", "safety_stock_days")
    ui_color = "#fdf3e1"

    def __init__(self, *, orders_connector: Mapping[str, Any] | ConnectorConfig,
                 forecast_connector: Mapping[str, Any] | ConnectorConfig, forecast_month: str = "",
                 item_master: str | None = None, safety_stock_days: Any = None, **kwargs: Any):
        orders = _orders_source(orders_connector)
        forecast = _s3_sink(forecast_connector, type(self).__name__)
        kwargs.setdefault("task_id", "place_orders")
        super().__init__(**kwargs)
        self.orders_connector = orders.definition()
        self.forecast_connector = forecast.definition()
        self.forecast_month = forecast_month
        self.item_master = item_master
        self.safety_stock_days = safety_stock_days

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.core.auto_order import default_item_master, place_orders
        from airconnect.core.ordering import DEFAULT_SAFETY_STOCK_DAYS, load_item_master
        from airconnect.core.sales_forecast import latest_forecast

        orders = validate(self.orders_connector)
        sink = validate(self.forecast_connector)
        try:
            ssd = DEFAULT_SAFETY_STOCK_DAYS if self.safety_stock_days in (None, "") else float(self.safety_stock_days)
        except ValueError:
            raise AirflowFailException(f"safety_stock_days: expected a number of days, got {self.safety_stock_days!r}") from None
        try:
            policies = load_item_master(self.item_master or default_item_master(), default_safety_stock_days=ssd)
            month = str(self.forecast_month or "").strip() or None
            forecast = latest_forecast(s3_client(sink["aws.conn.id"]), sink["s3.bucket.name"], month)
            if forecast is None and month:
                raise PermanentError(f"there is no forecast for {month} in s3://{sink['s3.bucket.name']}/forecast/: "
                                     f"run sales_forecast for the month before it first")
            conn = _postgres_connect(orders["db.conn.id"], orders.name)
            try:
                result = place_orders(conn, forecast, policies)
            finally:
                conn.close()
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("orders: %d placed for %s", result["placed"], result.get("month", "-"))
        return result
