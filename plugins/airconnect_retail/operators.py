"""Operators of the retail scenario (flow 3): the forecast, the inventory view, the orders.

Thin, like airconnect's own: validate at parse time, one call into ``airconnect_retail``'s
Airflow-free modules, a small JSON-able result for XCom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airconnect.connectors.jdbc.spec import JDBC_SOURCE
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
        from airconnect.hooks import VariableStore, kafka_config
        from airconnect_retail.auto_order import OrderSettings, update_inventory_view

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
        forecast = s3_sink_config(forecast_connector, type(self).__name__)
        kwargs.setdefault("task_id", "place_orders")
        super().__init__(**kwargs)
        self.orders_connector = orders.definition()
        self.forecast_connector = forecast.definition()
        self.forecast_month = forecast_month
        self.item_master = item_master
        self.safety_stock_days = safety_stock_days

    def execute(self, context: Any) -> dict[str, Any]:
        from airconnect_retail.auto_order import default_item_master, place_orders
        from airconnect_retail.ordering import DEFAULT_SAFETY_STOCK_DAYS, load_item_master
        from airconnect_retail.sales_forecast import latest_forecast

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
