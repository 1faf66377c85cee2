"""What differs between PostgreSQL and MariaDB for the JDBC sink: column types (Confluent's
dialects'), statements, the offsets table, the run's lock, and which errors belong to a record.

Every table and column name is quoted by the dialect's rules (:meth:`Dialect.quote` of the JDBC
source: PostgreSQL's double quotes, MariaDB's backticks, the quote doubled inside).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from airconnect.connectors.jdbc.dialect import Dialect
from airconnect.connectors.jdbc_sink.spec import OFFSETS_TABLE

DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
#: Connect's logical types (and the JDBC source's own, which carry ISO-8601 text), by schema name.
LOGICAL: Final = {
    DECIMAL: "decimal",
    "org.apache.kafka.connect.data.Date": "date",
    "org.apache.kafka.connect.data.Time": "time",
    "org.apache.kafka.connect.data.Timestamp": "timestamp",
    "io.airconnect.Timestamp": "timestamp",
    "io.airconnect.Date": "date",
}
PRIMITIVES: Final = ("int8", "int16", "int32", "int64", "float32", "float64", "boolean", "string", "bytes")

_PG_TYPES: Final = {
    "int8": "SMALLINT", "int16": "SMALLINT", "int32": "INT", "int64": "BIGINT", "float32": "REAL",
    "float64": "DOUBLE PRECISION", "boolean": "BOOLEAN", "string": "TEXT", "bytes": "BYTEA", "decimal": "DECIMAL",
    "date": "DATE", "time": "TIME", "timestamp": "TIMESTAMP",
}
# Confluent's MySqlDialect, with microseconds kept (TIME(6), DATETIME(6); Confluent has (3)): the
# JDBC source's timestamps carry them. A key column must be bounded: VARCHAR(256), VARBINARY(767).
_MYSQL_TYPES: Final = {
    "int8": "TINYINT", "int16": "SMALLINT", "int32": "INT", "int64": "BIGINT", "float32": "FLOAT",
    "float64": "DOUBLE", "boolean": "TINYINT", "string": "TEXT", "bytes": "BLOB", "date": "DATE",
    "time": "TIME(6)", "timestamp": "DATETIME(6)",
}
_MYSQL_KEY_TYPES: Final = {"string": "VARCHAR(256)", "bytes": "VARBINARY(767)"}
#: MariaDB: the named locks that make up a connector's lock (see :meth:`SinkSql.try_share`): at
#: most this many runs of one connector write at once (each task of a split is one).
LOCK_SLOTS: Final = 64

#: MariaDB's errors that are a record's fault (its value does not fit the column or the table's rules).
_MYSQL_RECORD_ERRORS: Final = frozenset({
    1048,  # column cannot be null
    1062,  # duplicate entry
    1264,  # out of range
    1265,  # data truncated
    1292,  # incorrect date/time value
    1366,  # incorrect integer/string value
    1367,  # illegal value
    1406,  # data too long
    1452,  # foreign key
    3819, 4025,  # check constraint
})


@dataclass(frozen=True)
class Column:
    """A column the sink writes: a record field (or a Kafka coordinate), its kind and nullability."""

    name: str
    kind: str  # a Connect primitive type, or decimal/date/time/timestamp
    optional: bool
    key: bool = False
    scale: int = 0


class SinkSql:
    """Statements and types for one dialect."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.postgres = dialect.name == "postgres"

    def q(self, name: str, *, params: bool = True) -> str:
        """A quoted column name; in a statement run with parameters a ``%`` is doubled (the drivers'
        ``%s`` placeholders make it special there)."""
        quoted = self.dialect.quote(name)
        return quoted.replace("%", "%%") if params else quoted

    def table(self, name: str, *, params: bool = True) -> str:
        quoted = self.dialect.quote(name, dotted=True)
        return quoted.replace("%", "%%") if params else quoted

    def name_problem(self, name: str) -> str | None:
        """What makes ``name`` unusable as a table or column name here (PostgreSQL cuts names
        longer than 63 bytes; MariaDB refuses more than 64 characters), or ``None``."""
        if self.postgres and len(name.encode("utf-8")) > 63:
            return f"{len(name.encode('utf-8'))} bytes long; PostgreSQL keeps at most 63"
        if not self.postgres and len(name) > 64:
            return f"{len(name)} characters long; MariaDB takes at most 64"
        return None

    # -- types and DDL

    def sql_type(self, col: Column) -> str:
        if self.postgres:
            return _PG_TYPES[col.kind]
        if col.kind == "decimal":
            return f"DECIMAL(65,{min(max(col.scale, 0), 30)})"
        if col.key and col.kind in _MYSQL_KEY_TYPES:
            return _MYSQL_KEY_TYPES[col.kind]
        return _MYSQL_TYPES[col.kind]

    def column_ddl(self, col: Column) -> str:
        return f"{self.q(col.name, params=False)} {self.sql_type(col)}{'' if col.optional and not col.key else ' NOT NULL'}"

    def create_table(self, table: str, columns: Sequence[Column]) -> str:
        parts = [self.column_ddl(c) for c in columns]
        keys = [c.name for c in columns if c.key]
        if keys:
            parts.append(f"PRIMARY KEY ({', '.join(self.q(k, params=False) for k in keys)})")
        return f"CREATE TABLE {self.table(table, params=False)} (\n  " + ",\n  ".join(parts) + "\n)"

    def add_column(self, table: str, col: Column) -> str:
        return f"ALTER TABLE {self.table(table, params=False)} ADD {self.column_ddl(col)}"

    def table_columns(self, cur: Any, table: str) -> dict[str, bool] | None:
        """The table's columns (name -> nullable), or ``None`` when it does not exist."""
        schema, _, name = table.rpartition(".")
        current = "current_schema()" if self.postgres else "DATABASE()"
        cur.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                    f"WHERE table_schema = COALESCE(%s, {current}) AND table_name = %s", (schema or None, name))
        rows = cur.fetchall()
        return {r[0]: r[1] == "YES" for r in rows} if rows else None

    # -- writes

    def insert(self, table: str, columns: Sequence[Column], rows: int, upsert: bool) -> str:
        cols = ", ".join(self.q(c.name) for c in columns)
        one = "(" + ",".join(["%s"] * len(columns)) + ")"
        sql = f"INSERT INTO {self.table(table)} ({cols}) VALUES " + ",".join([one] * rows)
        if not upsert:
            return sql
        keys = [self.q(c.name) for c in columns if c.key]
        others = [self.q(c.name) for c in columns if not c.key]
        if self.postgres:
            if not others:
                return sql + f" ON CONFLICT ({', '.join(keys)}) DO NOTHING"
            return sql + f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(f"{c}=EXCLUDED.{c}" for c in others)
        return sql + " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c}=VALUES({c})" for c in others or keys)

    def update(self, table: str, columns: Sequence[Column]) -> str:
        """``UPDATE``: the non-key columns' values, then the key's."""
        sets = ", ".join(f"{self.q(c.name)}=%s" for c in columns if not c.key)
        return f"UPDATE {self.table(table)} SET {sets} WHERE {self._where(columns)}"

    def delete(self, table: str, columns: Sequence[Column]) -> str:
        return f"DELETE FROM {self.table(table)} WHERE {self._where(columns)}"

    def _where(self, columns: Sequence[Column]) -> str:
        return " AND ".join(f"{self.q(c.name)}=%s" for c in columns if c.key)

    # -- the offsets table, the session, the lock

    def create_offsets_table(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.q(OFFSETS_TABLE, params=False)} (connector VARCHAR(200) NOT NULL, "
                "topic VARCHAR(249) NOT NULL, kafka_partition INT NOT NULL, next_offset BIGINT NOT NULL, "
                "PRIMARY KEY (connector, topic, kafka_partition))")

    def select_offsets(self) -> str:
        return f"SELECT topic, kafka_partition, next_offset FROM {self.q(OFFSETS_TABLE)} WHERE connector = %s"

    def upsert_offsets(self, rows: int) -> str:
        sql = (f"INSERT INTO {self.q(OFFSETS_TABLE)} (connector, topic, kafka_partition, next_offset) VALUES "
               + ",".join(["(%s,%s,%s,%s)"] * rows))
        if self.postgres:
            return sql + " ON CONFLICT (connector, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
        return sql + " ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset)"

    def prepare_session(self, cur: Any, zone: str, *, side_by_side: bool = False) -> None:
        """The session's zone (and MariaDB's strict mode); ``side_by_side``: a task of a split, whose
        siblings write the same tables at once."""
        if self.postgres:
            cur.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
        else:
            # Naive DATETIME values are written in db.timezone by the sink itself; strict mode makes a
            # value that does not fit its column an error (a dead letter), never a silent truncation.
            cur.execute("SET time_zone = '+00:00', "
                        "sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')")
            if side_by_side:
                # Tasks of a split write one table (and the offsets table) at once: READ COMMITTED
                # takes no gap locks, whose crossing inserts would deadlock them. (Not with a binary
                # log in STATEMENT format, which refuses InnoDB writes at READ COMMITTED.)
                cur.execute("SELECT @@log_bin, @@binlog_format")
                row = cur.fetchone()
                if not (row and row[0] and str(row[1]).upper() == "STATEMENT"):
                    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

    # Locks, all held by the run's database session (the database drops them with it, so a killed
    # run leaves none behind), all tried without waiting:
    # - the connector's lock, exclusive: a run with no topic-partition yet, a reset or an alter of
    #   its offsets (:meth:`try_lock`);
    # - shared by every run that writes topic-partitions (:meth:`try_share`), with
    # - one lock per topic-partition it writes (:meth:`try_lock_partition`): two tasks (of one
    #   split, or of splits that differ between runs, or a zombie) never write the same partition.
    # PostgreSQL: advisory locks (a shared and an exclusive mode on one key). MariaDB's GET_LOCK has
    # no shared mode: the connector's lock is LOCK_SLOTS named locks, all of them taken by try_lock,
    # any one of them by try_share. Names are hashed (MariaDB's names take at most 64 characters).

    def _key(self, *parts: str) -> str:
        return "airconnect-sink:" + hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:40]

    def _slots(self, connector: str) -> list[str]:
        token = self._key(connector)
        return [token] + [f"{token}:{i}" for i in range(1, LOCK_SLOTS)]

    def try_lock(self, cur: Any, connector: str) -> bool:
        """The connector's lock, exclusive: no run of the connector writes while it is held, and it
        is not taken while one does."""
        if self.postgres:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self._key(connector),))
            row = cur.fetchone()
            return bool(row and row[0])
        slots = self._slots(connector)
        cur.execute("SELECT " + ", ".join(["GET_LOCK(%s, 0)"] * len(slots)), slots)
        row = cur.fetchone()
        return bool(row and all(row))

    def try_share(self, cur: Any, connector: str) -> bool:
        """The connector's lock, shared with its other runs (each writing its own topic-partitions)."""
        if self.postgres:
            cur.execute("SELECT pg_try_advisory_lock_shared(hashtextextended(%s, 0))", (self._key(connector),))
            row = cur.fetchone()
            return bool(row and row[0])
        for slot in self._slots(connector):
            cur.execute("SELECT GET_LOCK(%s, 0)", (slot,))
            row = cur.fetchone()
            if row and row[0]:
                return True
        return False

    def try_lock_partition(self, cur: Any, connector: str, topic: str, partition: int) -> bool:
        """One topic-partition's lock: the run that holds it is the only one writing its records."""
        token = self._key(connector, topic, str(partition))
        if self.postgres:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (token,))
        else:
            cur.execute("SELECT GET_LOCK(%s, 0)", (token,))
        row = cur.fetchone()
        return bool(row and row[0])

    def lock_table(self, cur: Any, table: str, wait: float) -> bool:
        """A table's DDL lock (several tasks creating or altering one table take turns), waiting up
        to ``wait`` seconds; :meth:`unlock_table` releases it."""
        token = self._key("ddl", table)
        if self.postgres:
            deadline = time.monotonic() + wait
            while True:
                cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (token,))
                row = cur.fetchone()
                if row and row[0]:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
        cur.execute("SELECT GET_LOCK(%s, %s)", (token, wait))
        row = cur.fetchone()
        return bool(row and row[0])

    def unlock_table(self, cur: Any, table: str) -> None:
        token = self._key("ddl", table)
        if self.postgres:
            cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (token,))
        else:
            cur.execute("SELECT RELEASE_LOCK(%s)", (token,))
        cur.fetchone()


def record_error(exc: BaseException) -> bool:
    """Whether a database error is the record's fault (a value that does not fit its column, a
    NULL in a NOT NULL column, a duplicate key), not the database's or the connection's."""
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)  # psycopg2 / psycopg 3
    if isinstance(code, str) and code:
        return code[:2] in ("22", "23")
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return bool(args) and args[0] in _MYSQL_RECORD_ERRORS
