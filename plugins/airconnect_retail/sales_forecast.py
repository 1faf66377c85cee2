"""Flow 3, part 1: next month's demand per item (and shop) from the monthly sales exports in S3.

Reads every month up to the exported month M from the S3 sink's folders
(``<topics.dir>/<topic>/year=YYYY/month=MM/``), leaving out the objects that sink's own monthly
manifests (``manifests/<connector>/year=YYYY/month=MM/manifest.json``) list as stale (written
from an earlier life of a topic that was deleted and created again), sums ``quantity`` per
series and month — POS
series are ``(item_id, shop_id)``, EC series ``(item_id, "EC")`` — and forecasts month M+1 with
:func:`airconnect_retail.forecast.forecast_all`, holding month M out to measure the accuracy
(WAPE, MAPE). Writes ``forecast/year=YYYY/month=MM/forecast.json`` (MM = M+1) and a PNG of
actual vs forecast for the top items beside it, and publishes one record per series to the
topic ``sales-forecast`` exactly once per forecast month.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import tempfile
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from airconnect.connectors.s3.manifest import MANIFEST_PREFIX
from airconnect.connectors.s3.spec import TOPIC_ID_METADATA
from airconnect.core.data import FLOAT64, STRING, Schema, Struct, from_connect, struct_schema
from airconnect.core.delivery import SourceDelivery
from airconnect.core.errors import DataError, PermanentError
from airconnect.core.months import parse_month
from airconnect.core.offsets import KeyValueStore
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

FORECAST_TOPIC: Final = "sales-forecast"
FORECAST_PREFIX: Final = "forecast"
_FOLDER = re.compile(r"/year=(\d{4})/month=(\d{2})/")
#: A forecast record's value on ``sales-forecast``: a struct in Kafka Connect's JSON envelope (schema +
#: payload), so that a JDBC sink can write it (the auto-order system's ``sales_forecasts``).
FORECAST_SCHEMA: Final = struct_schema([("month", Schema(STRING)), ("item_id", Schema(STRING)), ("shop_id", Schema(STRING)),
                                        ("units", Schema(FLOAT64)), ("method", Schema(STRING))], name="sales_forecast")


@dataclass(frozen=True)
class ForecastSettings:
    bucket: str
    topics: Sequence[str]
    topics_dir: str = "topics"
    quantity_field: str = "quantity"
    item_field: str = "item_id"
    shop_field: str = "shop_id"
    default_shop: str = "EC"
    forecast_topic: str = FORECAST_TOPIC
    publisher: str = "sales-forecast"  # the offsets name of the publication
    connector: str | None = None  # the S3 sink whose manifests say which objects are stale (None: no manifests read)
    manifest_prefix: str = MANIFEST_PREFIX


def next_month(month: str) -> str:
    y, m = parse_month(month)
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def _month_list(first: tuple[int, int], last: tuple[int, int]) -> list[str]:
    out = []
    y, m = first
    while (y, m) <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _records(body: Any, key: str) -> Any:
    """The records of one exported object (its body): JSON lines (optionally gzipped), or Parquet rows."""
    if key.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(io.BytesIO(body.read())).to_pylist()  # one object: at most flush.size rows
        return
    stream = gzip.GzipFile(fileobj=body) if key.endswith(".gz") else body
    for line in io.TextIOWrapper(stream, encoding="utf-8"):
        try:
            yield json.loads(line)
        except ValueError as exc:
            yield exc


def stale_objects(s3: Any, settings: ForecastSettings, until: str) -> dict[str, str | None]:
    """``{key: the topic id it was written with}`` of the objects the sink's manifests of the
    months up to ``until`` list as stale (nothing without ``settings.connector``)."""
    if not settings.connector:
        return {}
    limit = parse_month(until)
    prefix = f"{settings.manifest_prefix.strip('/')}/{settings.connector}/"
    stale: dict[str, str | None] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            m = _FOLDER.search(obj["Key"])
            if not m or not obj["Key"].endswith("/manifest.json") or (int(m.group(1)), int(m.group(2))) > limit:
                continue
            try:
                doc = json.loads(s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read())
                entries = doc.get("stale") or []
                stale.update({e["key"]: e.get("topic_id") for e in entries})
            except (ValueError, AttributeError, TypeError, KeyError) as exc:
                raise DataError(f"connector '{settings.connector}': s3://{settings.bucket}/{obj['Key']} is not a "
                                f"manifest airconnect wrote ({exc!r}); write it again with monthly_forecast_export"
                                ) from None
    return stale


def monthly_units(s3: Any, settings: ForecastSettings, until: str) -> tuple[dict[tuple[str, str], dict[str, float]], int]:
    """``{(item, shop): {"YYYY-MM": units}}`` for every month up to ``until``; and the object count.

    An object the sink's manifest of its month lists as stale is left out, unless it was
    written again since (its ``kafka-topic-id`` is no longer the one the manifest recorded).
    """
    limit = parse_month(until)
    units: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    objects = 0
    stale = stale_objects(s3, settings, until)
    skipped: list[str] = []
    progress = Progress(log, "reading monthly sales from S3", unit="records")
    paginator = s3.get_paginator("list_objects_v2")
    for topic in settings.topics:
        prefix = f"{settings.topics_dir}/{topic}/"
        for page in paginator.paginate(Bucket=settings.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                m = _FOLDER.search(obj["Key"])
                if not m or (int(m.group(1)), int(m.group(2))) > limit:
                    continue
                month = f"{m.group(1)}-{m.group(2)}"
                response = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])
                if obj["Key"] in stale and (response.get("Metadata") or {}).get(TOPIC_ID_METADATA) == stale[obj["Key"]]:
                    response["Body"].close()
                    skipped.append(obj["Key"])
                    continue
                objects += 1
                n = 0
                for lineno, rec in enumerate(_records(response["Body"], obj["Key"]), 1):
                    try:
                        if isinstance(rec, Exception):
                            raise rec
                        key = (str(rec[settings.item_field]), str(rec.get(settings.shop_field) or settings.default_shop))
                        units[key][month] += float(rec[settings.quantity_field])
                    except (ValueError, KeyError, TypeError) as exc:
                        raise DataError(f"s3://{settings.bucket}/{obj['Key']} line {lineno}: not a sales record "
                                        f"with {settings.item_field} and {settings.quantity_field} ({exc})") from None
                    n += 1
                progress.add(n)
    progress.done()
    if skipped:
        log.warning("connector '%s': %d stale object(s) (of an earlier life of their topic, as the connector's "
                    "manifests say) left out of the forecast: %s", settings.connector, len(skipped), ", ".join(skipped))
    return units, objects


def build_forecast(s3: Any, settings: ForecastSettings, month: str, *, chart_dir: str | None = None,
                   names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Forecast month ``month``+1 from everything up to ``month``; write the JSON and PNG to S3.

    Returns the forecast document (also written to S3) with ``key`` and ``chart_key`` added.
    """
    from airconnect_retail.charts import plot_actual_vs_forecast
    from airconnect_retail.forecast import forecast_all

    target = next_month(month)
    units, objects = monthly_units(s3, settings, month)
    if not units:
        raise PermanentError(
            f"no sales found in s3://{settings.bucket}/{settings.topics_dir}/ for {', '.join(settings.topics)} up to "
            f"{month}: run the monthly export (monthly_forecast_export) for that month first")
    first = min(min(parse_month(m) for m in per.keys()) for per in units.values())
    months = _month_list(first, parse_month(month))
    if month not in {m for per in units.values() for m in per}:
        raise PermanentError(f"the export has no sales for {month} itself in s3://{settings.bucket}: "
                             f"the forecast would be blind to the latest month; run its export first")
    keys = sorted(units)
    series: dict[Hashable, list[float]] = {k: [units[k].get(m, 0.0) for m in months] for k in keys}
    report = forecast_all(series, holdout=1)
    rows = []
    for k in keys:
        r = report.results[k]
        rows.append({
            "item_id": k[0], "shop_id": k[1], "units": round(r.next_value, 3), "method": r.method,
            "holdout_actual": [round(v, 3) for v in r.holdout_actual],
            "holdout_forecast": [round(v, 3) for v in r.holdout_forecast],
            **({"note": r.note} if r.note else {}),
        })
    base = f"{FORECAST_PREFIX}/year={target[:4]}/month={target[5:]}"
    doc: dict[str, Any] = {
        "month": target,
        "based_on": {"months": f"{months[0]}..{month}", "objects": objects, "series": len(keys)},
        "accuracy": {"holdout_month": month,
                     "wape": None if report.wape is None else round(report.wape, 4),
                     "mape": None if report.mape is None else round(report.mape, 4),
                     "points": report.holdout_points},
        "methods": {m: n for m, n in sorted(report.method_counts.items()) if n},
        "series": rows,
    }
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1).encode()
    s3.put_object(Bucket=settings.bucket, Key=f"{base}/forecast.json", Body=body, ContentType="application/json")

    # The chart: per item (shops summed), the items with the most units.
    per_item: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(months))
    fc_item: dict[str, float] = defaultdict(float)
    for k in keys:
        label = f"{k[0]} {names.get(k[0], '')}".strip() if names else k[0]
        for i, v in enumerate(series[k]):
            per_item[label][i] += v
        fc_item[label] += report.results[k].next_value
    with tempfile.TemporaryDirectory(dir=chart_dir) as tmp:
        png = Path(tmp) / "chart.png"
        drawn = plot_actual_vs_forecast(png, dict(per_item), dict(fc_item), [*months, target],
                                        f"Units sold and forecast for {target} (hold-out {month}: WAPE "
                                        f"{doc['accuracy']['wape'] if doc['accuracy']['wape'] is not None else 'n/a'})")
        s3.put_object(Bucket=settings.bucket, Key=f"{base}/actual-vs-forecast.png", Body=png.read_bytes(),
                      ContentType="image/png")
    log.info("forecast for %s: %s; written to s3://%s/%s/forecast.json; chart of %s at s3://%s/%s/actual-vs-forecast.png",
             target, report.summary(), settings.bucket, base, ", ".join(drawn), settings.bucket, base)
    doc["key"] = f"{base}/forecast.json"
    doc["chart_key"] = f"{base}/actual-vs-forecast.png"
    return doc


def publish_forecast(doc: Mapping[str, Any], settings: ForecastSettings, kafka: Mapping[str, Any],
                     store: KeyValueStore) -> dict[str, Any]:
    """One record per series on ``sales-forecast``, once per forecast month (a re-run publishes nothing).

    The key is ``{"item_id", "shop_id"}`` (plain JSON); the value a struct (:data:`FORECAST_SCHEMA`:
    month, item_id, shop_id, units, method) in Kafka Connect's JSON envelope, as JsonConverter writes it.

    The publication is a Kafka transaction carrying its offset ``{"month": ...}`` in the journal,
    like every source; the Variable ``airconnect.offsets.<publisher>`` is set after the commit.
    """
    partition = {"forecast": settings.forecast_topic}
    with SourceDelivery(settings.publisher, store, kafka, topics=[settings.forecast_topic]) as delivery:
        current = delivery.resume(partition)
        published = (current or {}).get("months", [])
        if doc["month"] in published:
            log.info("the forecast for %s was already published to %s; nothing to do", doc["month"], settings.forecast_topic)
            return {"published": 0, "month": doc["month"], "already_published": True}
        values: list[bytes] = []
        keys: list[bytes] = []
        for row in doc["series"]:
            keys.append(json.dumps({"item_id": row["item_id"], "shop_id": row["shop_id"]}, sort_keys=True).encode())
            value = Struct(FORECAST_SCHEMA, {"month": doc["month"], "item_id": row["item_id"], "shop_id": row["shop_id"],
                                             "units": float(row["units"]), "method": row["method"]})
            values.append(cast(bytes, from_connect(FORECAST_SCHEMA, value)))  # (None only for a null value)
        delivery.send(settings.forecast_topic, values, keys)
        delivery.commit(partition, {"months": sorted({*published, doc["month"]})[-24:]})
        return {"published": len(values), "month": doc["month"], "already_published": False}


def forecast_topic() -> str:
    """The topic forecasts are published to: ``$AIRCONNECT_FORECAST_TOPIC``, else ``sales-forecast``."""
    import os

    return os.environ.get("AIRCONNECT_FORECAST_TOPIC") or FORECAST_TOPIC


def settings_for(sink: Any, topic: str = FORECAST_TOPIC) -> ForecastSettings:
    """The forecast's inputs from the S3 sink's definition (its bucket, ``topics.dir``, topics
    and name, whose manifests it reads), published to ``topic``; the publication's offsets are
    named after the topic."""
    return ForecastSettings(bucket=sink["s3.bucket.name"], topics=tuple(sink["topics"]),
                            topics_dir=sink["topics.dir"].strip("/"), forecast_topic=topic, publisher=topic,
                            connector=getattr(sink, "name", None))


def month_to_forecast_from(requested: str | None, event_months: Sequence[str]) -> str:
    """The export month ``M`` a forecast run starts from (it forecasts ``M``+1).

    ``requested`` (the trigger form's ``month``) wins; else the newest month among the
    triggering manifest events (the DAG waits for the manifests of its own sink only: each S3
    sink has its Asset, :func:`airconnect.assets.manifest_asset`). With neither, a clear error
    says how to run it.
    """
    if requested and requested.strip():
        y, m = parse_month(requested)
        return f"{y:04d}-{m:02d}"
    months = sorted({f"{y:04d}-{m:02d}" for y, m in (parse_month(e) for e in event_months if e)})
    if not months:
        raise PermanentError("no month to forecast from: this run was not triggered by a month's export manifest; "
                             "trigger it with the parameter month=YYYY-MM (the last exported month)")
    return months[-1]


def item_names(path: str) -> dict[str, str]:
    """``item_id -> name`` from the item master, for the chart's labels (missing file: no names)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return {row["item_id"]: row.get("name") or "" for row in csv.DictReader(f)}
    except (OSError, KeyError):
        return {}
