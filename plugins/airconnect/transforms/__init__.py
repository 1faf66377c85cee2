"""Single message transforms (SMTs) and predicates: Kafka Connect's own, under their Connect class
names (``org.apache.kafka.connect.transforms.RegexRouter``, ``...InsertField$Value``, ...), and
airconnect's ``airconnect.transforms.ParseCsv$Value``.

A definition's ``transforms`` and ``predicates`` keys build a :class:`~airconnect.transforms.chain.Chain`
at validation (every bad option is a ConfigError naming the connector and the key); the runtime
(:mod:`airconnect.core.delivery`) applies it to every record of every connector: a source's after
the connector made it and before it is produced, a sink's after it was read and converted and
before the connector writes it. Nothing here imports Airflow.
"""

from airconnect.transforms.chain import (
    PREDICATE_CLASSES,
    TRANSFORM_CLASSES,
    Chain,
    RecordCodec,
    TransformError,
    build_chain,
)

__all__ = ["PREDICATE_CLASSES", "TRANSFORM_CLASSES", "Chain", "RecordCodec", "TransformError", "build_chain"]
