"""airconnect's Airflow-free building blocks and runtime: testable with a temp dir, a real broker
and a dict as the offset store. Nothing in this package imports ``airflow``. (The connectors, in
``airconnect.connectors``, build on it; ``airconnect.core.registry`` lists them and validates
definitions: import it from there, this package's face imports no connector.)"""

from airconnect.core.config import ConnectorConfig
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
    "OffsetError", "Offsets", "PermanentError", "TransientError", "variable_key",
]
