"""airconnect's connector logic, free of Airflow: testable with a temp dir, a real broker and a
dict as the offset store. Nothing in this package imports ``airflow``."""

from airconnect.core.config import ConnectorConfig, connector_classes, load_definitions, validate
from airconnect.core.errors import (
    AirconnectError,
    ConfigError,
    DataError,
    KafkaUnavailableError,
    OffsetError,
    PermanentError,
    TransientError,
)
from airconnect.core.offsets import MemoryStore, Offsets, variable_key

__all__ = [
    "AirconnectError", "ConfigError", "ConnectorConfig", "DataError", "KafkaUnavailableError", "MemoryStore",
    "OffsetError", "Offsets", "PermanentError", "TransientError", "connector_classes", "load_definitions",
    "validate", "variable_key",
]
