"""What differs between PostgreSQL and MariaDB: quoting, cursors, sessions, primary keys, errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from airconnect.core.errors import ConfigError, PermanentError, TransientError

# ----------------------------------------------------------------------------- dialects

@dataclass(frozen=True)
class Dialect:
    """What differs between PostgreSQL and MySQL/MariaDB for this connector."""

    name: str
    quote_char: str
    now_sql: str
    now_is_utc_naive: bool

    def quote(self, identifier: str, *, dotted: bool = False) -> str:
        """A quoted identifier: PostgreSQL's double quotes (as psycopg's ``sql.Identifier``), or
        MySQL/MariaDB's backticks, the quote character doubled inside. ``dotted``: a table name,
        where a dot separates schema and table (``pos.Sales Table`` -> ```pos`.`Sales Table```)."""
        parts = identifier.split(".") if dotted else [identifier]
        if not all(parts) or "\x00" in identifier:  # validation refuses these first; never build such SQL
            raise ConfigError(f"{identifier!r} is not a name (empty, or it holds a NUL byte)")
        q = self.quote_char
        return ".".join(q + p.replace(q, q + q) + q for p in parts)

    def server_cursor(self, conn: Any, batch: int) -> Any:
        if self.name == "postgres":
            cur = conn.cursor(name="airconnect_stream")
            cur.itersize = batch
            return cur
        import MySQLdb.cursors  # noqa: PLC0415 - only with a MySQL connection

        return conn.cursor(MySQLdb.cursors.SSCursor)

    def prepare_session(self, conn: Any) -> None:
        cur = conn.cursor()
        if self.name == "postgres":
            cur.execute("SET TIME ZONE 'UTC'")
        else:
            cur.execute("SET time_zone = '+00:00'")
        cur.close()

    def primary_key(self, conn: Any, table: str) -> list[str]:
        cur = conn.cursor()
        if self.name == "postgres":
            cur.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)",
                (self.quote(table, dotted=True),),
            )
        else:
            schema, _, name = table.rpartition(".")
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_NAME = 'PRIMARY' "
                "AND TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (schema or None, name),
            )
        cols = [r[0] for r in cur.fetchall()]
        cur.close()
        return cols


DIALECTS: Final = {
    "postgres": Dialect("postgres", '"', "SELECT clock_timestamp()", False),
    "mysql": Dialect("mysql", "`", "SELECT UTC_TIMESTAMP(6)", True),
}


def dialect_of(conn: Any) -> Dialect:
    module = type(conn).__module__
    if module.startswith("psycopg"):  # psycopg2, or psycopg 3 (the Postgres provider's default when installed)
        return DIALECTS["postgres"]
    if module.startswith("MySQLdb"):
        return DIALECTS["mysql"]
    raise PermanentError(f"unsupported database connection {module}.{type(conn).__name__}: airconnect reads PostgreSQL "
                         "(psycopg 3 or psycopg2) and MySQL/MariaDB (mysqlclient)")


def _missing_relation(exc: BaseException) -> bool:
    """The database says the table (or its schema) does not exist."""
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)  # psycopg2 / psycopg 3
    if code in ("42P01", "3F000"):  # undefined_table, invalid_schema_name
        return True
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return bool(args) and args[0] in (1146, 1049)  # MySQL/MariaDB: no such table, no such database


def _detail(exc: BaseException) -> str:
    """The database's message, on one line."""
    text = str(exc).strip()
    return " ".join(line.strip() for line in text.splitlines()[:2]) if text else type(exc).__name__


def _db_error(exc: BaseException, what: str) -> Exception:
    """Map a DB-API error: unreachable/timeouts are transient; missing tables/columns are not."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).strip()
    detail = _detail(exc)
    if "authentication failed" in text or (getattr(exc, "pgcode", None) or "").startswith("28"):
        # PostgreSQL: wrong login or password (SQLSTATE class 28). A retry cannot fix it.
        return PermanentError(f"{what}: {detail}; check the login and password")
    if names & {"OperationalError", "InterfaceError"} and not names & {"ProgrammingError"}:
        code = getattr(exc, "args", [None])[0]
        # MySQL: 1054 unknown column, 1146 no such table are "operational" in mysqlclient.
        if code in (1045, 1044):  # MySQL/MariaDB: access denied
            return PermanentError(f"{what}: {detail}; check the login and password")
        if code in (1054, 1146, 1049):
            return PermanentError(f"{what}: {detail}")
        return TransientError(f"{what}: the database is unreachable or failed: {detail}")
    return PermanentError(f"{what}: {detail}")
