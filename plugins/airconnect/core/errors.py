"""The errors airconnect raises, grouped by what a scheduler should do about them.

``PermanentError`` and its subclasses mean a retry cannot help (a bad definition, a corrupt
offset, a record that cannot be converted): the Airflow glue turns them into a non-retried
task failure. ``TransientError`` means a server was unavailable: the task is retried.
"""

from __future__ import annotations


class AirconnectError(Exception):
    """Base class of every error airconnect raises on purpose."""


class PermanentError(AirconnectError):
    """A retry will not help; a person has to change something first."""


class ConfigError(PermanentError, ValueError):
    """A connector definition is invalid; the message names the connector and the key."""

    def __init__(self, message: str, *, connector: str | None = None, key: str | None = None):
        self.connector = connector
        self.key = key
        #: The class the definition names, where it names a known one (set by ``validate``): which
        #: DAGs an invalid definition breaks.
        self.connector_class: str | None = None
        #: The file the definition came from, if any.
        self.source: str | None = None
        where = []
        if connector:
            where.append(f"connector '{connector}'")
        if key:
            where.append(f"key '{key}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class InvalidDefinitions(ConfigError):
    """Several definition errors at once (one definition's keys, or a folder's definitions);
    ``errors`` holds each one, and the message lists them all, one a line."""

    def __init__(self, errors: list[ConfigError], *, connector: str | None = None):
        self.errors = list(errors)
        head = (f"{len(self.errors)} errors in the definition of connector '{connector}'" if connector
                else f"{len(self.errors)} invalid connector definition errors")
        super().__init__(head + ":\n" + "\n".join(f"  {e}" for e in self.errors))
        self.connector = connector


class OffsetError(PermanentError):
    """A stored offset is missing parts, of the wrong type, or does not fit the data."""


class RedeliveryRefused(OffsetError):
    """A reset would deliver again what its target already holds; it needs an explicit flag."""


class DataError(PermanentError):
    """A record could not be read or converted; nothing after it was delivered."""


class TransientError(AirconnectError):
    """A server (Kafka, a database, S3) was unavailable or timed out; retrying may succeed."""


class KafkaUnavailableError(TransientError):
    """Kafka could not be reached, or did not acknowledge in time."""
