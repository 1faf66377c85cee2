"""The JDBC sink's offsets in its target database (``airconnect_sink_offsets``), for KIP-875's
read, reset and alter (:class:`airconnect.core.config.KeptOffsets`).

The sink commits them with its rows and trusts them over the Airflow Variable at its start, so
``manage`` shows these, and a reset or an alter changes these too, last (the database is the
commit point: see :func:`airconnect.core.manage.reset_offsets`). A change takes the connector's
lock first (:meth:`SinkSql.try_lock`): while a run is writing, it is refused, never interleaved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airconnect.connectors.jdbc.dialect import _db_error, dialect_of
from airconnect.connectors.jdbc_sink.spec import OFFSETS_TABLE, table_name
from airconnect.connectors.jdbc_sink.sql import SinkSql
from airconnect.core.config import ConnectorConfig
from airconnect.core.errors import AirconnectError, ConfigError, OffsetError, PermanentError, TransientError


class DatabaseOffsets:
    """One JDBC sink's rows of ``airconnect_sink_offsets``, through its DB-API factory ``connect``."""

    def __init__(self, config: ConnectorConfig, connect: Callable[[], Any] | None):
        if connect is None:
            raise ConfigError("the JDBC sink's offsets are in its database: its connection factory (the Airflow "
                              "Connection named by db.conn.id) is needed to read or change them",
                              connector=config.name, key="db.conn.id")
        self.config, self.name, self.connect = config, config.name, connect

    def read(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        conn = self._open("reading the offsets")
        try:
            cur = conn.cursor()
            sql = SinkSql(dialect_of(conn))
            if sql.table_columns(cur, OFFSETS_TABLE) is None:
                return []  # no run has written into this database yet
            cur.execute(sql.select_offsets() + " ORDER BY topic, kafka_partition", (self.name,))
            rows = cur.fetchall()
            conn.commit()
        except (PermanentError, TransientError):
            raise
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            raise _db_error(exc, f"connector '{self.name}': reading {OFFSETS_TABLE}") from exc
        finally:
            conn.close()
        return [({"kafka_topic": t, "kafka_partition": int(p)}, {"kafka_offset": int(o)}) for t, p, o in rows]

    def holds(self) -> list[str]:
        """In insert mode, the tables of the topics it has offsets for that hold rows: a reset
        would insert every record again beside them. (Upsert and update write the same rows.)"""
        if self.config["insert.mode"] != "insert":
            return []
        topics = sorted({p["kafka_topic"] for p, _ in self.read()})
        if not topics:
            return []
        conn = self._open("checking its tables")
        held = []
        try:
            cur = conn.cursor()
            sql = SinkSql(dialect_of(conn))
            for table in dict.fromkeys(table_name(self.config["table.name.format"], t) for t in topics):
                if sql.table_columns(cur, table) is None:
                    continue
                cur.execute(f"SELECT 1 FROM {sql.table(table, params=False)} LIMIT 1")
                if cur.fetchone() is not None:
                    held.append(f"table {table} (not empty)")
            conn.commit()
        except (PermanentError, TransientError):
            raise
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            raise _db_error(exc, f"connector '{self.name}': checking its tables") from exc
        finally:
            conn.close()
        return held

    def reset(self, first: Callable[[], object]) -> None:
        self._change("resetting", first, lambda cur, sql: cur.execute(
            f"DELETE FROM {sql.q(OFFSETS_TABLE)} WHERE connector = %s", (self.name,)))

    def alter(self, pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
              first: Callable[[], object]) -> None:
        def apply(cur: Any, sql: SinkSql) -> None:
            for partition, offset in pairs:
                if "kafka_topic" not in partition:
                    continue  # (a sink's only partitions are Kafka's; checked before)
                key = (self.name, partition["kafka_topic"], partition["kafka_partition"])
                if offset is None:
                    cur.execute(f"DELETE FROM {sql.q(OFFSETS_TABLE)} WHERE connector = %s AND topic = %s "
                                "AND kafka_partition = %s", key)
                else:
                    cur.execute(sql.upsert_offsets(1), (*key, offset["kafka_offset"]))

        self._change("altering", first, apply)

    def _open(self, what: str) -> Any:
        try:
            return self.connect()
        except Exception as exc:  # noqa: BLE001 - DB-API modules share no base class
            raise _db_error(exc, f"connector '{self.name}': {what} in its database") from exc

    def _change(self, what: str, first: Callable[[], object], apply: Callable[[Any, SinkSql], None]) -> None:
        """Under the connector's lock (dropped with the session): ``first`` (the Variable and the
        group), then ``apply`` in one transaction, committed last."""
        conn = self._open(f"{what} the offsets")
        try:
            cur = conn.cursor()
            sql = SinkSql(dialect_of(conn))
            if not sql.try_lock(cur, self.name):
                raise OffsetError(f"connector '{self.name}': a run of the connector is writing into the database "
                                  f"(it holds the connector's lock); {what} its offsets waits until it has finished "
                                  "(stop the connector first)")
            conn.commit()
            cur.execute(sql.create_offsets_table())
            conn.commit()
            first()
            apply(cur, sql)
            conn.commit()
        except AirconnectError:  # (first's Kafka errors too)
            raise
        except Exception as exc:  # noqa: BLE001 - a DB-API error of any driver
            raise _db_error(exc, f"connector '{self.name}': {what} its offsets in {OFFSETS_TABLE}") from exc
        finally:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back
                pass
            conn.close()
