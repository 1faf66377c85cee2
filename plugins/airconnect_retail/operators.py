"""Operators of the retail scenario (flow 3): the forecast and the orders (the inventory view is
airconnect's JDBC sink, run by its own operator).

Thin, like airconnect's own: validate at parse time, one call into ``airconnect_retail``'s
Airflow-free modules, a small JSON-able result for XCom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airconnect.connectors.jdbc.spec import JDBC_SOURCE
from airconnect.connectors.jdbc_sink.spec import JDBC_SINK, table_name
from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import ConfigError, PermanentError
from airconnect.core.registry import validate
from airconnect.hooks import s3_client
from airconnect.operators import db_connect, s3_sink_config


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


def sink_table(sink: Mapping[str, Any] | ConnectorConfig, orders: ConnectorConfig, what: str) -> str:
    """The table a JDBC sink writes ``what`` (the inventory view, the forecasts) into, which must be in
    the auto-order system's database (the orders' JDBC source's ``db.conn.id``): otherwise a
    ConfigError naming the connector and the key."""
    config = sink if isinstance(sink, ConnectorConfig) else validate(sink)
    if config.cls is not JDBC_SINK:
        raise ConfigError(f"is {config.cls.name}; {what} reach the auto-order system through a JDBC sink",
                          connector=config.name, key="connector.class")
    if config["db.conn.id"] != orders["db.conn.id"]:
        raise ConfigError(f"is {config['db.conn.id']!r}, but the auto-order system's database is "
                          f"{orders['db.conn.id']!r} (the db.conn.id of '{orders.name}', which publishes the orders): "
                          f"the orders read {what} there", connector=config.name, key="db.conn.id")
    fmt, topics = config["table.name.format"], config["topics"]
    if "${topic}" in fmt and len(topics) != 1:
        raise ConfigError(f"{fmt!r} names one table per topic; {what} are one table: name it, or read one topic",
                          connector=config.name, key="table.name.format")
    return table_name(fmt, topics[0] if topics else "")


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
        config = s3_sink_config(connector, type(self).__name__)
        kwargs.setdefault("task_id", "forecast")
        super().__init__(**kwargs)
        self.connector = config.definition()
        self.month = month
        self.forecast_topic = forecast_topic
        self.item_master = item_master
        self.kafka_config_id = kafka_config_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect.hooks import VariableStore, kafka_config
        from airconnect_retail.auto_order import default_item_master
        from airconnect_retail.sales_forecast import (
            build_forecast,
            item_names,
            month_to_forecast_from,
            publish_forecast,
            settings_for,
        )

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


class PlaceOrdersOperator(BaseOperator):
    """Places the orders the latest forecast and the inventory view call for (flow 3).

    Both inputs are tables that JDBC sinks write in the database of the JDBC source that publishes
    the orders: the forecasts (``forecast_connector``, from ``sales-forecast``: ``sales_forecasts``)
    and the inventory view (``inventory_connector``, from ``zaiko-data``: ``inventory_latest``).

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
                 forecast_connector: Mapping[str, Any] | ConnectorConfig,
                 inventory_connector: Mapping[str, Any] | ConnectorConfig, forecast_month: str = "",
                 item_master: str | None = None, safety_stock_days: Any = None, **kwargs: Any):
        orders = _orders_source(orders_connector)
        kwargs.setdefault("task_id", "place_orders")
        super().__init__(**kwargs)
        self.orders_connector = orders.definition()
        self.forecast_table = sink_table(forecast_connector, orders, "the forecasts")
        self.inventory_table = sink_table(inventory_connector, orders, "the inventory view")
        self.forecast_month = forecast_month
        self.item_master = item_master
        self.safety_stock_days = safety_stock_days

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect_retail.auto_order import default_item_master, forecast_from_table, place_orders
        from airconnect_retail.ordering import DEFAULT_SAFETY_STOCK_DAYS, load_item_master

        orders = validate(self.orders_connector)
        try:
            ssd = DEFAULT_SAFETY_STOCK_DAYS if self.safety_stock_days in (None, "") else float(self.safety_stock_days)
        except ValueError:
            raise AirflowFailException(f"safety_stock_days: expected a number of days, got {self.safety_stock_days!r}") from None
        try:
            policies = load_item_master(self.item_master or default_item_master(), default_safety_stock_days=ssd)
            month = str(self.forecast_month or "").strip() or None
            conn = _postgres_connect(orders["db.conn.id"], orders.name)
            try:
                forecast = forecast_from_table(conn, self.forecast_table, month)
                if forecast is None and month:
                    raise PermanentError(f"there is no forecast for {month} in the table {self.forecast_table}: run "
                                         "sales_forecast for the month before it first (its records reach the table "
                                         "through the forecasts' JDBC sink)")
                result = place_orders(conn, forecast, policies, self.inventory_table)
            finally:
                conn.close()
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("orders: %d placed for %s", result["placed"], result.get("month", "-"))
        return result
