"""A month's manifest of an S3 sink (its objects, records and checksums), and the objects of a topic's
earlier life (stale): listed, and removed on request."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Mapping
from typing import Any, Final

from airconnect.connectors.s3.spec import _READ_CHUNK, S3_SINK, TOPIC_ID_METADATA
from airconnect.connectors.s3.upload import S3Bucket, _named, is_stale, month_prefix, topic_ids
from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)


# --- monthly manifest ----------------------------------------------------------------------------


MANIFEST_PREFIX: Final = "manifests"
_MONTH_OBJECT = re.compile(r"year=\d{4}/month=\d{2}/[^/]+")


def manifest_key(connector: str, year: int, month: int, manifest_prefix: str = MANIFEST_PREFIX) -> str:
    """``<manifest_prefix>/<connector>/year=YYYY/month=MM/manifest.json``.

    A manifest belongs to its sink: two sinks may share a bucket (a JSON and a Parquet export of
    the same topics, in different ``topics.dir``), and each month's manifest of each must
    survive the other's. Connector names are unique among the definitions and made of letters,
    digits, ``.``, ``_`` and ``-`` (never ``/``), so the name is a folder of its own; a sink's
    manifests are listed under ``<manifest_prefix>/<connector>/``."""
    return f"{manifest_prefix.strip('/')}/{connector}/year={year:04d}/month={month:02d}/manifest.json"


def _sink_bucket(config: ConnectorConfig, client: Any, doing: str) -> S3Bucket:
    if config.cls is not S3_SINK:
        raise ConfigError(f"is {config.cls.name}; {doing} needs an S3 sink", connector=config.name, key="connector.class")
    return S3Bucket(client, config["s3.bucket.name"], connector=config.name,
                    credentials=f"the AWS connection '{config['aws.conn.id']}'")


def _stale_entry(key: str, size: int, topic: str, meta: Mapping[str, str]) -> dict[str, Any]:
    records = meta.get("records", "")
    return {"key": key, "size": size, "topic": topic, "topic_id": meta.get(TOPIC_ID_METADATA) or None,
            "records": int(records) if records.isdigit() else None}


def _warn_stale(connector: str, bucket: str, what: str, stale: list[dict[str, Any]], ids: Mapping[str, str | None]) -> None:
    now = ", ".join(f"{t} {ids.get(t) or '(does not exist)'}" for t in sorted({e["topic"] for e in stale}))
    log.warning("connector '%s': %d object(s) in s3://%s come from an earlier life of their topic (Kafka topic id now: "
                "%s) and %s: %s", connector, len(stale), bucket, now, what,
                ", ".join(f"{e['key']} (topic id {e['topic_id'] or 'none'})" for e in stale))


def write_month_manifest(config: ConnectorConfig, client: Any, kafka: Mapping[str, Any] | None, year: int, month: int,
                         *, manifest_prefix: str = MANIFEST_PREFIX) -> dict[str, Any]:
    """List a month's objects of the S3 sink ``config`` (its bucket, ``topics.dir`` and topics)
    and write them to :func:`manifest_key`.

    The manifest names its ``connector`` and holds, per topic, the topic's current id
    (``topic_id``), each object's key, size, records and sha256 (from the object's metadata;
    for an object written by something else, counted and hashed by reading it), and the totals.
    Objects of another life of their topic (their ``kafka-topic-id`` is not the topic's id now;
    or they have none while the topic has one) are *stale*: not counted, listed under ``stale``
    (key, size, topic, their topic id, records), and named in a WARNING. ``kafka`` None: the
    topics' ids are not asked and every object counts (``topic_id`` null, ``stale`` empty).
    Deterministic (sorted, no generation time): the same objects give a byte-identical manifest.
    Returns the manifest with its ``key``.
    """
    name = config.name
    if not 1 <= month <= 12 or not 1 <= year <= 9999:
        raise ValueError(_named(f"not a calendar month: {year}-{month}", name, None))
    store = _sink_bucket(config, client, "a month's manifest")
    store.check()
    topics_dir = config["topics.dir"].strip("/")
    topics = sorted(set(config["topics"]))
    ids = topic_ids(kafka, topics, connector=name) if kafka is not None else None
    doc_topics: dict[str, Any] = {}
    stale: list[dict[str, Any]] = []
    for topic in topics:
        current = ids.get(topic) if ids is not None else None
        objects = []
        for key, size in store.list_keys(month_prefix(topics_dir, topic, year, month)):
            meta = store.metadata(key)
            if ids is not None and is_stale(meta, current):
                stale.append(_stale_entry(key, size, topic, meta))
                continue
            count, sha256 = meta.get("records", ""), meta.get("sha256", "")
            records = int(count) if count.isdigit() and len(sha256) == 64 else None
            if records is None:
                records, sha256 = _count_and_hash(store, key)
            objects.append({"key": key, "size": size, "records": records, "sha256": sha256})
        doc_topics[topic] = {"objects": objects, "records": sum(o["records"] for o in objects), "topic_id": current}
    manifest = {
        "connector": name,
        "month": f"{year:04d}-{month:02d}",
        "topics": doc_topics,
        "records": sum(t["records"] for t in doc_topics.values()),
        "objects": sum(len(t["objects"]) for t in doc_topics.values()),
        "stale": stale,
    }
    key = manifest_key(name, year, month, manifest_prefix)
    if stale:
        _warn_stale(name, store.name, f"are left out of the manifest of {manifest['month']} (listed under 'stale' in "
                                      f"s3://{store.name}/{key})", stale, ids or {})
    body = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    store.put(key, body, ContentType="application/json")
    log.info("connector '%s': wrote s3://%s/%s: %d objects, %d records%s", name, store.name, key, manifest["objects"],
             manifest["records"], f" ({len(stale)} stale object(s) not counted)" if stale else "")
    return {"key": key, **manifest}


def remove_stale_objects(config: ConnectorConfig, client: Any, kafka: Mapping[str, Any]) -> list[str]:
    """Delete the stale objects of the S3 sink ``config``: those, in every month folder of its
    topics (``<topics.dir>/<topic>/year=YYYY/month=MM/``), that come from another life of their
    topic than the one Kafka has now (the rule of :func:`write_month_manifest`; a topic that no
    longer exists leaves every object naming its old id stale). Returns their keys, sorted, and
    names them in a WARNING. Meant for ``airconnect reset`` of a sink whose topics were deleted:
    objects of the old life at offsets the new life does not reach are never overwritten.
    """
    store = _sink_bucket(config, client, "removing stale objects")
    store.check()
    topics_dir = config["topics.dir"].strip("/")
    topics = sorted(set(config["topics"]))
    ids = topic_ids(kafka, topics, connector=config.name)
    stale: list[dict[str, Any]] = []
    for topic in topics:
        prefix = f"{topics_dir}/{topic}/"
        for key, size in store.list_keys(prefix):
            if not _MONTH_OBJECT.fullmatch(key[len(prefix):]):
                continue  # not in the sink's layout: not the sink's to judge
            meta = store.metadata(key)
            if is_stale(meta, ids.get(topic)):
                stale.append(_stale_entry(key, size, topic, meta))
    keys = sorted(e["key"] for e in stale)
    if keys:
        store.delete(keys)
        _warn_stale(config.name, store.name, "were deleted", sorted(stale, key=lambda e: e["key"]), ids)
    else:
        log.info("connector '%s': no stale objects under s3://%s/%s/", config.name, store.name, topics_dir)
    return keys


class _HashingReader:
    """A file-like view of a stream that hashes every byte read through it."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size) if size is not None and size >= 0 else self.stream.read()
        self.sha256.update(data)
        return data


def _count_and_hash(store: S3Bucket, key: str) -> tuple[int, str]:
    """Lines and sha256 of an object without airconnect's metadata, read in chunks (gunzipped
    when the key ends with ``.gz``)."""
    log.info("s3://%s/%s has no records/sha256 metadata; reading it to count its lines", store.name, key)
    stream = store.get_stream(key)
    raw: Any = _HashingReader(stream)
    reader: Any = gzip.GzipFile(fileobj=raw, mode="rb") if key.endswith(".gz") else raw
    lines, last = 0, b"\n"
    try:
        while chunk := reader.read(_READ_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        while raw.read(_READ_CHUNK):  # anything after the gzip stream still counts in the hash
            pass
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(_named(f"s3://{store.name}/{key} is named .gz but is not valid gzip ({exc})",
                               store.connector, "topics.dir")) from None
    finally:
        stream.close()
    return lines + (last != b"\n"), raw.sha256.hexdigest()
