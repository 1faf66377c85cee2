"""PostgreSQL writes the rows' JSON: the JDBC source's fast path for PostgreSQL.

The query runs as ``COPY (SELECT ...) TO STDOUT``: for each row the server builds the text of the
record's payload fields (and of its key's) with ``||`` over each value's JSON text, and psycopg2
hands each line over as bytes. The client only adds the envelope (the schema, built once) and
produces: no Python value per column, no per-value formatting. The database does the encoding on
its own core while this process produces, and COPY sends rows faster than a cursor's fetches.

The bytes are the general path's (:func:`airconnect.connectors.jdbc.rows.values_writer` over the
driver's values; the unit tests hold them equal), because the server writes only what it writes
the same way, and marks the rest:

- whole numbers: their text; booleans: ``true``/``false``;
- DECIMAL with a declared scale of 0 to 6: its text (``str(Decimal(text))`` is the text then);
  NaN goes to the general path, which refuses it as it does today;
- text, varchar, char: ``to_json`` (the escapes of Python's ``json``); a control character other
  than ``\\b\\f\\n\\r\\t`` (``\\u00xx``) or a character beyond U+FFFF is rewritten here as Jackson
  writes it (:func:`airconnect.core.jsonexact.encode_str`);
- timestamps from year 1000 to 9999 (with time zone; without one when the connector's zone is
  UTC): ``to_char`` as ``"YYYY-MM-DDTHH:MM:SS.ffffffZ"``.

A row with a value outside these forms comes as ``X`` and the text of each of its values
(``json_build_array``); this module casts them with psycopg2's own casters and the general
writer writes the row, so it is written (or refused) exactly as the cursor path would.

A table with a column of another type (float, date, json, uuid, arrays...) is read by the cursor
path, as are tables on any other driver.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from airconnect.connectors.jdbc.offset import UTC
from airconnect.connectors.jdbc.rows import Column, _envelope_ends, _is_utc, values_writer
from airconnect.core.data import json_string

_INTS: Final = (20, 21, 23)
_TEXTS: Final = (25, 1043, 1042)
_TS_FORMAT: Final = "'\\\"YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\\\"'"
_TS_RANGE: Final = "{c} >= '1000-01-01' AND {c} < '10000-01-01'"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value_sql(oid: int, c: str, nullable: bool, scale: Any, utc: bool) -> str | None:
    """The SQL of a column's JSON text (NULL for a value the server cannot write as the writer
    does); None for a column whose type the server does not write here at all."""
    if oid in _INTS:
        expr = f"{c}::text"
        return f"COALESCE({expr}, 'null')" if nullable else expr
    if oid == 16:
        return (f"CASE WHEN {c} THEN 'true' WHEN NOT {c} THEN 'false' ELSE 'null' END" if nullable
                else f"CASE WHEN {c} THEN 'true' ELSE 'false' END")
    if oid in _TEXTS:
        expr = f"to_json({c})::text"
        return f"COALESCE({expr}, 'null')" if nullable else expr
    if oid == 1700 and isinstance(scale, int) and 0 <= scale <= 6:
        expr = f"NULLIF({c}::text, 'NaN')"
    elif oid == 1184 or (oid == 1114 and utc):
        expr = f"CASE WHEN {_TS_RANGE.format(c=c)} THEN to_char({c}, {_TS_FORMAT}) END"
    else:
        return None
    return f"CASE WHEN {c} IS NULL THEN 'null' ELSE {expr} END" if nullable else expr


# A JSON string's escapes the server writes as Python's json does but Jackson does not (upper-case
# hex), and characters beyond U+FFFF (Jackson: escaped surrogate pairs); an escaped backslash is
# matched first so that ``\\u00`` (a backslash, then "u00") stays text.
_REWRITE: Final = re.compile(r"\\\\|\\u00([0-9a-f]{2})|[\U00010000-\U0010FFFF]")


def _jackson(m: re.Match[str]) -> str:
    text = m.group(0)
    if text == "\\\\":
        return text
    ch = chr(int(m.group(1), 16)) if m.group(1) else text
    return json_string(ch)[1:-1]


def _rewrite(line: bytes) -> bytes:
    return _REWRITE.sub(_jackson, line.decode()).encode()


@dataclass
class ServerRows:
    """How one query's rows come as their JSON: the COPY's SELECT list, and the line readers."""

    select: str  # "payload-or-X, key"
    columns: list[Column]
    oids: list[int]
    value_head: bytes
    value_tail: bytes
    key_head: bytes | None  # the key's envelope before its fields (None: no key)
    texts: bool  # a text column: its JSON may need Jackson's escapes
    general_values: Callable[[Sequence[Sequence[Any]]], list[bytes]]
    general_keys: Callable[[Sequence[Sequence[Any]]], list[bytes]] | None
    casters: list[Callable[[str | None, Any], Any] | None]
    cursor: Any = None  # for psycopg2's casters (the session's time zone)

    def copy_sql(self, query: str, order: str) -> str:
        return f"COPY (SELECT {self.select} FROM ({query}) AS airconnect_rows{order}) TO STDOUT"

    def __post_init__(self) -> None:
        self._parsed: dict[bytes, tuple[Any, ...]] = {}
        self._odd_chunk = True  # the last prepared chunk has a row the server left to the general path

    def prepare(self, lines: list[bytes]) -> list[bytes]:
        """COPY's lines as this module's readers take them: COPY's text format doubles a backslash
        (JSON's escapes have one; a NULL key is ``\\N``), and a text's escapes become Jackson's.
        The records of these lines (or of runs of them) are asked for before the next chunk's."""
        big = b"".join(lines)
        escapes = b"\\" in big
        if escapes:
            lines = [line.replace(b"\\\\", b"\\") if b"\\" in line else line for line in lines]
        if self.texts and ((escapes and b"\\u00" in big) or not big.isascii()):
            lines = [line if line[:1] == b"X" or (b"\\u00" not in line and line.isascii()) else _rewrite(line)
                     for line in lines]
        self._odd_chunk = big.startswith(b"X") or b"\nX" in big
        return lines

    def records(self, lines: Sequence[bytes]) -> tuple[list[bytes], list[bytes] | None]:
        """The (prepared) lines' values and keys: Kafka Connect's JSON, the general path's bytes.
        The server wrote each record but its schema (its envelope's head)."""
        vh, kh = self.value_head, self.key_head
        if kh is None:
            if self._odd_chunk:
                return [self._odd(line)[0] if line[:1] == b"X" else vh + line[:-1] for line in lines], None
            return [vh + line[:-1] for line in lines], None
        parts = [line[:-1].split(b"\t") for line in lines]
        if not self._odd_chunk:
            return [vh + p for p, _ in parts], [kh + k for _, k in parts]
        values: list[bytes] = []
        keys: list[bytes] = []
        for line, (p, k) in zip(lines, parts):
            if p[:1] == b"X":
                value, key = self._odd(line)
                values.append(value)
                keys.append(key or b"")
            else:
                values.append(vh + p)
                keys.append(kh + k)
        return values, keys

    def _odd(self, line: bytes) -> tuple[bytes, bytes | None]:
        """A row the server left to the general path: its record by the general writers."""
        row = self.row(line)
        keys = self.general_keys([row]) if self.general_keys else None
        return self.general_values([row])[0], keys[0] if keys else None

    def envelope(self, line: bytes) -> bytes:
        """The row's record value (what identifies a row without a key)."""
        p = line[:-1].split(b"\t", 1)[0]
        return self._odd(line)[0] if p[:1] == b"X" else self.value_head + p

    def row(self, line: bytes) -> tuple[Any, ...]:
        """The (prepared) line's values as the driver gives them (for offsets and row identities);
        the rows a run reads again (the lookback window's) come from a small cache."""
        row = self._parsed.get(line)
        if row is None:
            if len(self._parsed) >= 4096:
                self._parsed.clear()
            row = self._parsed[line] = self._parse(line)
        return row

    def _parse(self, line: bytes) -> tuple[Any, ...]:
        p = line[:-1].split(b"\t", 1)[0]
        if p[:1] == b"X":
            texts = json.loads(p[1:])
            return tuple(t if t is None or caster is None else caster(t, self.cursor)
                         for t, caster in zip(texts, self.casters))
        obj = json.loads(b"{" + p[:-len(self.value_tail)] + b"}", parse_float=Decimal)
        out: list[Any] = []
        for v, oid in zip(obj.values(), self.oids):
            if v is None:
                out.append(None)
            elif oid == 1700:
                out.append(v if isinstance(v, Decimal) else Decimal(v))
            elif oid in (1184, 1114):
                t = dt.datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append(t.replace(tzinfo=UTC) if oid == 1184 else t)
            else:
                out.append(v)
        return tuple(out)


def server_rows(conn: Any, description: Sequence[Sequence[Any]], columns: Sequence[Column],
                nullable: dict[str, bool], key_idx: Sequence[int], zone: dt.tzinfo, quote: Callable[[str], str],
                record_name: str, value_envelope: bool, key_name: str, key_envelope: bool) -> ServerRows | None:
    """The server-written rows for this query's columns, or None (another driver than psycopg2, a
    column of a type the server does not write as the writer does, repeated column names)."""
    if not type(conn).__module__.startswith("psycopg2") or getattr(conn, "encoding", "") != "UTF8":
        return None
    names = [c.name for c in columns]
    if len(set(names)) != len(names) or not columns:
        return None
    utc = _is_utc(zone)
    import psycopg2.extensions as ext  # noqa: PLC0415 - only with a psycopg2 connection

    exprs: list[str] = []
    oids: list[int] = []
    casters: list[Any] = []
    for d, c in zip(description, columns):
        oid = d[1]
        scale = d[5] if len(d) > 5 else None
        expr = _value_sql(oid, quote(c.name), nullable.get(c.name, True), scale, utc)
        if expr is None:
            return None
        exprs.append(expr)
        oids.append(oid)
        casters.append((getattr(conn, "string_types", None) or {}).get(oid) or ext.string_types.get(oid))

    def fields(indexes: Sequence[int]) -> str:
        parts = []
        for n, i in enumerate(indexes):
            name = ("," if n else "") + json_string(columns[i].name) + ":"
            parts.append(f"{_literal(name)} || {exprs[i]}")
        return " || ".join(parts)

    # Each value's text as the driver reads it (a char(n) keeps its padding, which ::text drops).
    raw = ", ".join(quote(c.name) if oid == 1042 else f"{quote(c.name)}::text" for c, oid in zip(columns, oids))
    vh, vt = _envelope_ends(columns, record_name, value_envelope)
    select = f"COALESCE({fields(range(len(columns)))} || {_literal(vt)}, 'X' || json_build_array({raw})::text)"
    key_cols = [columns[i] for i in key_idx]
    kh = ""
    if key_idx:
        kh, kt = _envelope_ends(key_cols, key_name, key_envelope)
        select += f", {fields(key_idx)} || {_literal(kt)}"
    return ServerRows(
        select=select, columns=list(columns), oids=oids, value_head=vh.encode(), value_tail=vt.encode(),
        key_head=kh.encode() if key_idx else None, texts=any(o in _TEXTS for o in oids),
        general_values=values_writer(columns, record_name, value_envelope),
        general_keys=values_writer(key_cols, key_name, key_envelope, list(key_idx)) if key_idx else None,
        casters=casters, cursor=conn.cursor())


class CopyChunks:
    """The COPY's lines, ``size`` at a time, handed to ``consume`` (prepared) from inside the COPY:
    psycopg2 calls :meth:`write` with each line, and every ``size`` lines the chunk is written and
    sent before the next is read. One thread: the server computes the next rows meanwhile (its
    output waits in the socket's buffer, up to megabytes on loopback), and no second Python thread
    takes the GIL from this one (a fetching thread would, once per row: psycopg2 lets go of it
    for each row it waits for). Memory holds a chunk and the socket's buffer."""

    def __init__(self, conn: Any, sql: str, size: int, prepare: Callable[[list[bytes]], list[bytes]]):
        self._conn, self._sql, self._size, self._prepare = conn, sql, size, prepare
        self._buf: list[bytes] = []
        self._consume: Callable[[list[bytes]], None] | None = None
        self._failed: BaseException | None = None  # consume's error, raised through the COPY
        self._cur = conn.cursor()

    def run(self, consume: Callable[[list[bytes]], None], db_error: Callable[[BaseException], Exception]) -> None:
        """``consume(lines)`` for each chunk, in order; an error of ``consume`` is raised as it is,
        one of the COPY as ``db_error(exc)``."""
        self._consume = consume
        try:
            self._cur.copy_expert(self._sql, self)
        except BaseException as exc:
            if exc is self._failed:
                raise
            raise db_error(exc) from None
        if self._buf:
            self._hand_over()

    def write(self, line: bytes) -> None:
        buf = self._buf
        buf.append(line)
        if len(buf) >= self._size:
            self._hand_over()

    def _hand_over(self) -> None:
        lines, self._buf = self._buf, []
        assert self._consume is not None
        try:
            self._consume(self._prepare(lines))
        except BaseException as exc:
            self._failed = exc  # psycopg2 stops the COPY and raises it from copy_expert
            raise

    def close(self) -> None:
        """After an error mid-COPY: the server stops sending, the session is usable again."""
        if self._failed is not None:
            try:
                self._conn.cancel()
                self._conn.rollback()
            except Exception:  # noqa: BLE001
                pass
        try:
            self._cur.close()
        except Exception:  # noqa: BLE001
            pass
