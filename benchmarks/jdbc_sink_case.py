"""The JDBC sink cases (``jdbc_sink_pg``, ``jdbc_sink_mariadb``): ``size`` records shaped like the
JDBC source's ec_order_lines records (JsonConverter envelope, NUMERIC decimals, ISO timestamps)
written from one topic into a fresh table, against a minimal baseline measured in the same run.

``airconnect``: the JDBC sink in insert mode with auto.create (rows and offsets committed in one
transaction per 100,000 records, then the Variable and the consumer group).

``minimal``: a raw loop: confluent_kafka's consumer, ``json.loads`` of each value (decimals
parsed exactly), and ``psycopg2.extras.execute_values`` (PostgreSQL) or mysqlclient's multi-row
``executemany`` (MariaDB), 3,000 rows a statement, one commit at the end; no offsets, no
exactly-once. ``minimal_copy`` (PostgreSQL): the same loop with ``COPY ... FROM STDIN`` instead,
each row's fields joined by tabs without any escaping (the data needs none): the strongest
honest baseline, and the one the target is checked against. All write the same rows into tables
of the same column types (the bench checks the counts).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

COLUMNS = ("line_id", "order_id", "item_id", "quantity", "unit_price", "ordered_at")
BATCH = 3000


def _table_ddl(kind: str, table: str) -> str:
    if kind == "postgres":
        return (f'CREATE TABLE "{table}" (line_id BIGINT NOT NULL, order_id BIGINT NOT NULL, item_id TEXT NOT NULL, '
                "quantity INT NOT NULL, unit_price DECIMAL NOT NULL, ordered_at TIMESTAMP NOT NULL)")
    return (f"CREATE TABLE `{table}` (line_id BIGINT NOT NULL, order_id BIGINT NOT NULL, item_id TEXT NOT NULL, "
            "quantity INT NOT NULL, unit_price DECIMAL(65,2) NOT NULL, ordered_at DATETIME(6) NOT NULL)")


def run(bench: Any, kind: str) -> None:
    """Run the case for ``kind`` (postgres or mysql) on ``bench`` (benchmarks/bench.py's Bench)."""
    case = "jdbc_sink_pg" if kind == "postgres" else "jdbc_sink_mariadb"
    db = {**(bench.pg if kind == "postgres" else bench.maria), "database": "ec" if kind == "postgres" else "pos"}
    topic = bench.fill_sales_topic()
    variants = ("airconnect", "minimal", "minimal_copy") if kind == "postgres" else ("airconnect", "minimal")
    for rep in range(bench.reps):
        for variant in variants:
            table = bench.name(f"sink-{variant}").replace("-", "_")
            spec: dict[str, Any] = {"kind": "jdbc_sink", "db": db, "topic": topic, "table": table}
            if variant == "airconnect":
                spec["definition"] = {"name": bench.name("jdbc-sink"), "config": {
                    "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "topics": topic,
                    "db.conn.id": "unused-in-the-core", "table.name.format": table, "auto.create": "true"}}
            else:
                spec["group"] = bench.name("min-jdbc-sink")
                spec["copy"] = variant == "minimal_copy"
                _execute(db, _table_ddl(kind, table))
            try:
                out = bench.worker(case, variant, rep, spec)
                rows = _count(db, table)
                if rows != bench.size:
                    raise SystemExit(f"{case} {variant}: {rows} rows in {table}, expected {bench.size}")
                out["rows"] = rows
                bench.record(case, variant, rep, out)
            finally:
                _execute(db, f"DROP TABLE IF EXISTS {_q(kind, table)}")
                if variant == "airconnect":
                    _execute(db, "DELETE FROM airconnect_sink_offsets WHERE connector = %s",
                             (spec["definition"]["name"],))
    bench.drop_topics()
    bench.summarize_throughput(case, variants[1:])


def _q(kind: str, name: str) -> str:
    return f'"{name}"' if kind == "postgres" else f"`{name}`"


def _connect(db: dict[str, Any]) -> Any:
    if db["kind"] == "postgres":
        import psycopg2

        return psycopg2.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                                dbname=db["database"])
    import MySQLdb

    return MySQLdb.connect(host=db["host"], port=db["port"], user=db["user"], passwd=db["password"], db=db["database"],
                           charset="utf8mb4")


def _execute(db: dict[str, Any], sql: str, params: Any = None) -> None:
    conn = _connect(db)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _count(db: dict[str, Any], table: str) -> int:
    conn = _connect(db)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {_q(db['kind'], table)}")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


# ----------------------------------------------------------------------------- in the worker


def airconnect_sink(spec: dict[str, Any]) -> dict[str, Any]:
    from airconnect.core.offsets import MemoryStore
    from airconnect.core.runtime import run as run_connector

    res = run_connector(spec["definition"], MemoryStore(), {"bootstrap.servers": spec["bootstrap"]},
                        connect=lambda: _connect(spec["db"]))
    return {"records": res["records"]}


def minimal_sink(spec: dict[str, Any]) -> dict[str, Any]:
    import worker

    db = spec["db"]
    conn = _connect(db)
    cur = conn.cursor()
    loads = json.JSONDecoder(parse_float=Decimal).decode
    cols = ", ".join(COLUMNS)
    batch: list[tuple[Any, ...]] = []
    if db["kind"] == "postgres" and spec.get("copy"):
        import io

        cur.execute("SET TIME ZONE 'UTC'")
        lines: list[str] = []
        copy = f'COPY "{spec["table"]}" ({cols}) FROM STDIN'

        def each_copy(msg: Any) -> None:
            p = loads(msg.value().decode())["payload"]
            lines.append(f'{p["line_id"]}\t{p["order_id"]}\t{p["item_id"]}\t{p["quantity"]}\t{p["unit_price"]}\t'
                         f'{p["ordered_at"]}\n')
            if len(lines) >= BATCH:
                cur.copy_expert(copy, io.StringIO("".join(lines)), size=1 << 20)
                lines.clear()

        n = worker._consume_all(spec, spec["group"], each_copy)
        if lines:
            cur.copy_expert(copy, io.StringIO("".join(lines)), size=1 << 20)
        conn.commit()
        conn.close()
        return {"records": n}
    if db["kind"] == "postgres":
        from psycopg2.extras import execute_values

        cur.execute("SET TIME ZONE 'UTC'")
        sql = f'INSERT INTO "{spec["table"]}" ({cols}) VALUES %s'

        def write() -> None:
            execute_values(cur, sql, batch, page_size=BATCH)
    else:
        sql = f"INSERT INTO `{spec['table']}` ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"

        def write() -> None:
            cur.executemany(sql, batch)  # mysqlclient sends one multi-row INSERT

    def each(msg: Any) -> None:
        p = loads(msg.value().decode())["payload"]
        ts = p["ordered_at"]
        batch.append((p["line_id"], p["order_id"], p["item_id"], p["quantity"], p["unit_price"],
                      ts[:-1] if db["kind"] != "postgres" else ts))  # MariaDB's DATETIME takes no 'Z'
        if len(batch) >= BATCH:
            write()
            batch.clear()

    n = worker._consume_all(spec, spec["group"], each)
    if batch:
        write()
    conn.commit()
    conn.close()
    return {"records": n}
