"""Sales data generator for the retail data hub (flow 2): EC orders in PostgreSQL, store sales in MariaDB.

Airflow-free on purpose: tests and benchmarks import it directly, and it runs as a CLI::

    python include/generate_sales.py --months 25 --end 2018-10 --target both \\
        --rows-per-month 10000 --seed 42 [--pg-dsn DSN] [--mysql-url URL] [--reset]

Demand follows a known pattern, so a forecast can be checked against it:

* :func:`expected_monthly_units` (pure) gives the expected units of an item in a channel (``SHOP001``..
  ``SHOP010`` or ``'EC'``) for a calendar month: ``base(item) * channel_factor * (1 + trend(item)) ** t *
  SEASONALITY[category][month - 1]``, where ``t`` counts months since 2016-01.
* The generator writes, for each (item, channel, month), about ``expected_monthly_units(...) *
  units_scale(target, rows_per_month)`` units (Gaussian noise, sd 5 %, clipped to +-15 %, stochastic
  rounding). :func:`planned_monthly_units` returns the exact units written, which equal
  ``SUM(quantity)`` in the tables for that month.
* Each month draws from its own ``random.Random`` seeded by (seed, target, month), so a month's rows
  (values and timestamps) are the same whichever range is generated. ``updated_at`` equals the sale time.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import io
import json
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("airconnect.generate_sales")

HERE = Path(__file__).resolve().parent
ITEMS_CSV = HERE / "items.csv"
EC_SCHEMA_SQL = HERE / "sql" / "ec_schema.sql"
POS_SCHEMA_SQL = HERE / "sql" / "pos_schema.sql"

SHOPS: tuple[str, ...] = tuple(f"SHOP{i:03d}" for i in range(1, 11))
EC_CHANNEL = "EC"
TREND_ORIGIN = (2016, 1)  # t = 0 for the trend
DEFAULT_END = "2018-10"
DEFAULT_MONTHS = 25
DEFAULT_ROWS_PER_MONTH = 10_000
DEFAULT_BATCH = 5_000
NOISE_SD = 0.05
NOISE_CLIP = 0.15
PROGRESS_EVERY_S = 2.0
CUSTOMERS = 50_000

# Monthly multipliers (January..December) per category. General goods peak in December.
_GENERAL = (0.85, 0.80, 0.90, 0.95, 1.00, 0.98, 1.02, 1.03, 0.95, 1.00, 1.10, 1.42)
SEASONALITY: dict[str, tuple[float, ...]] = {
    "drinks": (0.75, 0.75, 0.85, 0.95, 1.10, 1.30, 1.50, 1.50, 1.20, 0.95, 0.85, 1.20),
    "frozen": (0.60, 0.60, 0.75, 0.90, 1.15, 1.40, 1.70, 1.65, 1.20, 0.85, 0.70, 0.90),
    "personal_care": (0.70, 0.70, 0.85, 1.00, 1.20, 1.35, 1.45, 1.35, 1.00, 0.85, 0.75, 0.95),
    "seasonal": (0.20, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15, 0.20, 0.40, 0.90, 2.50, 5.00),
    "fresh": (0.95, 0.92, 0.98, 1.00, 1.02, 1.00, 0.98, 0.98, 1.00, 1.02, 1.03, 1.20),
}
# Channel levels relative to an average shop.
CHANNEL_FACTORS: dict[str, float] = {
    shop: f for shop, f in zip(SHOPS, (1.50, 1.30, 1.20, 1.10, 1.00, 0.95, 0.90, 0.80, 0.70, 0.55))
}
CHANNEL_FACTORS[EC_CHANNEL] = 2.50

# Units per row (POS sale / EC order line): 1 most of the time; mean 1.83.
_QTY_TABLE = [1] * 55 + [2] * 25 + [3] * 10 + [4] * 6 + [6] * 4
MEAN_QTY = sum(_QTY_TABLE) / len(_QTY_TABLE)
_ORDER_SIZES = [1, 1, 1, 2, 2, 3, 4]  # lines per EC order


# ---------------------------------------------------------------- item master and the demand model


@dataclass(frozen=True)
class Item:
    item_id: str
    name: str
    category: str
    unit_price: Decimal
    pack_size: int
    lead_time_days: int


@lru_cache(maxsize=4)
def load_items(path: str | os.PathLike | None = None) -> tuple[Item, ...]:
    """The item master (include/items.csv)."""
    with open(path or ITEMS_CSV, newline="", encoding="utf-8") as f:
        return tuple(
            Item(
                item_id=r["item_id"],
                name=r["name"],
                category=r["category"],
                unit_price=Decimal(r["unit_price"]),
                pack_size=int(r["pack_size"]),
                lead_time_days=int(r["lead_time_days"]),
            )
            for r in csv.DictReader(f)
        )


@cache
def _items_by_id() -> dict[str, Item]:
    return {it.item_id: it for it in load_items()}


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) for a string (independent of PYTHONHASHSEED)."""
    return zlib.crc32(text.encode("utf-8")) / 2**32


def item_base_units(item_id: str) -> float:
    """Expected units per month for an average shop at t = 0, before seasonality (20..120)."""
    return 20.0 + 100.0 * _unit_hash("base:" + item_id)


def item_trend(item_id: str) -> float:
    """Compound growth per month, between -0.5 % and +1.5 %."""
    return -0.005 + 0.02 * _unit_hash("trend:" + item_id)


def seasonal_factor(category: str, month: int) -> float:
    return SEASONALITY.get(category, _GENERAL)[month - 1]


def expected_monthly_units(item_id: str, shop_id: str, year: int, month: int) -> float:
    """Expected units of ``item_id`` sold in ``shop_id`` (or ``'EC'``) in year-month, at scale 1.

    Pure: base(item) * channel factor * (1 + trend(item)) ** months-since-2016-01 * seasonal[category][month].
    """
    item = _items_by_id().get(item_id)
    if item is None:
        raise KeyError(f"unknown item {item_id!r}")
    if shop_id not in CHANNEL_FACTORS:
        raise KeyError(f"unknown shop {shop_id!r} (SHOP001..SHOP010 or 'EC')")
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, not {month}")
    t = (year - TREND_ORIGIN[0]) * 12 + (month - TREND_ORIGIN[1])
    return (
        item_base_units(item_id)
        * CHANNEL_FACTORS[shop_id]
        * (1.0 + item_trend(item_id)) ** t
        * seasonal_factor(item.category, month)
    )


def channels(target: str) -> tuple[str, ...]:
    if target == "ec":
        return (EC_CHANNEL,)
    if target == "pos":
        return SHOPS
    raise ValueError(f"target must be 'ec' or 'pos', not {target!r}")


@cache
def _reference_units(target: str) -> float:
    """Average monthly units of a target over the reference year 2017, at scale 1."""
    total = sum(
        expected_monthly_units(it.item_id, ch, 2017, m)
        for it in load_items()
        for ch in channels(target)
        for m in range(1, 13)
    )
    return total / 12.0


def units_scale(target: str, rows_per_month: int) -> float:
    """Factor between expected_monthly_units and the generated units, so that a month of 2017 averages
    ``rows_per_month`` rows (POS sales, or EC order lines) for ``target``."""
    return rows_per_month * MEAN_QTY / _reference_units(target)


def _month_seed(seed: int, target: str, year: int, month: int, stage: str) -> str:
    return f"airconnect-sales:{seed}:{target}:{year:04d}-{month:02d}:{stage}"


def planned_monthly_units(
    target: str, year: int, month: int, rows_per_month: int = DEFAULT_ROWS_PER_MONTH, seed: int = 42
) -> dict[tuple[str, str], int]:
    """The exact units the generator writes per (item_id, channel) for a month (zero entries omitted)."""
    import random

    rng = random.Random(_month_seed(seed, target, year, month, "units"))
    scale = units_scale(target, rows_per_month)
    plan: dict[tuple[str, str], int] = {}
    for it in load_items():
        for ch in channels(target):
            noise = max(-NOISE_CLIP, min(NOISE_CLIP, rng.gauss(0.0, NOISE_SD)))
            x = max(0.0, expected_monthly_units(it.item_id, ch, year, month) * scale * (1.0 + noise))
            units = int(x) + (1 if rng.random() < x - int(x) else 0)
            if units:
                plan[(it.item_id, ch)] = units
    return plan


# ---------------------------------------------------------------- rows


def month_range(end: str = DEFAULT_END, months: int = DEFAULT_MONTHS) -> list[tuple[int, int]]:
    """``months`` calendar months ending at ``end`` ('YYYY-MM'), inclusive, oldest first."""
    try:
        y, m = (int(p) for p in end.split("-"))
        if not 1 <= m <= 12:
            raise ValueError
    except ValueError:
        raise ValueError(f"end must look like YYYY-MM, not {end!r}") from None
    if months < 1:
        raise ValueError("months must be at least 1")
    idx = y * 12 + (m - 1)
    return [((i // 12), (i % 12) + 1) for i in range(idx - months + 1, idx + 1)]


def _split_units(rng, units: int) -> list[int]:
    out = []
    table = _QTY_TABLE
    n = len(table)
    while units > 0:
        q = table[int(rng.random() * n)]
        if q > units:
            q = units
        out.append(q)
        units -= q
    return out


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=timezone.utc)


def pos_month_rows(
    year: int, month: int, rows_per_month: int = DEFAULT_ROWS_PER_MONTH, seed: int = 42
) -> list[tuple[str, str, int, Decimal, datetime]]:
    """A month of store sales, sorted by time: (shop_id, item_id, quantity, unit_price, sold_at UTC)."""
    import random

    plan = planned_monthly_units("pos", year, month, rows_per_month, seed)
    rng = random.Random(_month_seed(seed, "pos", year, month, "rows"))
    items = _items_by_id()
    days = calendar.monthrange(year, month)[1]
    start = _month_start(year, month)
    rows = []
    # Stores are open 08:00-22:00 UTC.
    open_us, span_us = 8 * 3600 * 10**6, 14 * 3600 * 10**6
    for (item_id, shop), units in plan.items():
        price = items[item_id].unit_price
        for q in _split_units(rng, units):
            off = rng.randrange(days) * 86_400 * 10**6 + open_us + rng.randrange(span_us)
            rows.append((off, shop, item_id, q, price))
    rows.sort()
    return [(shop, item_id, q, price, start + timedelta(microseconds=off)) for off, shop, item_id, q, price in rows]


def ec_month_orders(
    year: int, month: int, rows_per_month: int = DEFAULT_ROWS_PER_MONTH, seed: int = 42
) -> list[tuple[int, datetime, list[tuple[str, int, Decimal]]]]:
    """A month of EC orders, sorted by time: (customer_id, ordered_at UTC, [(item_id, quantity, unit_price)])."""
    import random

    plan = planned_monthly_units("ec", year, month, rows_per_month, seed)
    rng = random.Random(_month_seed(seed, "ec", year, month, "rows"))
    items = _items_by_id()
    lines = []
    for (item_id, _), units in plan.items():
        price = items[item_id].unit_price
        lines.extend((item_id, q, price) for q in _split_units(rng, units))
    rng.shuffle(lines)
    span_us = calendar.monthrange(year, month)[1] * 86_400 * 10**6
    orders = []
    i = 0
    while i < len(lines):
        k = _ORDER_SIZES[int(rng.random() * len(_ORDER_SIZES))]
        orders.append((rng.randrange(span_us), rng.randint(1, CUSTOMERS), lines[i : i + k]))
        i += k
    orders.sort(key=lambda o: o[0])
    start = _month_start(year, month)
    return [(cust, start + timedelta(microseconds=off), ls) for off, cust, ls in orders]


# ---------------------------------------------------------------- progress, schemas, connections


class _Progress:
    def __init__(self, label: str, every: float = PROGRESS_EVERY_S, sink: Callable[[str], None] | None = None):
        self.label, self.every, self.sink = label, every, sink or log.info
        self.rows = 0
        self.t0 = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.rows += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.sink(f"{self.label}: {self.rows} rows, {self.rows / (now - self.t0):,.0f} rows/s")

    def done(self, extra: str = "") -> float:
        dt = max(time.monotonic() - self.t0, 1e-9)
        self.sink(f"{self.label}: done, {self.rows} rows in {dt:.1f} s ({self.rows / dt:,.0f} rows/s){extra}")
        return self.rows / dt


def _sql_statements(path: Path) -> list[str]:
    text = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def ensure_ec_schema(conn) -> None:
    """Creates the EC tables (include/sql/ec_schema.sql) on a psycopg2 connection."""
    with conn.cursor() as cur:
        for stmt in _sql_statements(EC_SCHEMA_SQL):
            cur.execute(stmt)
    conn.commit()


def ensure_pos_schema(conn) -> None:
    """Creates the POS table (include/sql/pos_schema.sql) on a MySQLdb connection."""
    cur = conn.cursor()
    try:
        for stmt in _sql_statements(POS_SCHEMA_SQL):
            cur.execute(stmt)
    finally:
        cur.close()
    conn.commit()


def _conn_fields(value: str) -> dict:
    """host/port/login/password/schema from an Airflow connection in URI or JSON form."""
    value = value.strip()
    if value.startswith("{"):
        d = json.loads(value)
        return {k: d.get(k) for k in ("host", "port", "login", "password", "schema")}
    u = urlsplit(value)
    return {
        "host": u.hostname,
        "port": u.port,
        "login": unquote(u.username) if u.username else None,
        "password": unquote(u.password) if u.password else None,
        "schema": unquote(u.path.lstrip("/")) or None,
    }


def _libpq_quote(value) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def default_pg_dsn() -> str:
    env = os.environ.get("AIRFLOW_CONN_POSTGRES_EC")
    if env:
        f = _conn_fields(env)
        parts = {
            "host": f["host"] or "127.0.0.1",
            "port": f["port"] or 5432,
            "user": f["login"] or "airconnect",
            "password": f["password"] or "",
            "dbname": f["schema"] or "ec",
        }
        return " ".join(f"{k}='{_libpq_quote(v)}'" for k, v in parts.items())
    port = os.environ.get("AIRCONNECT_POSTGRES_PORT", "5432")
    return f"postgresql://airconnect:airconnect@127.0.0.1:{port}/ec"


def default_mysql_url() -> str:
    env = os.environ.get("AIRFLOW_CONN_MYSQL_POS")
    if env and env.strip().startswith("{"):
        f = _conn_fields(env)
        return "mysql://{}:{}@{}:{}/{}".format(
            f["login"] or "airconnect", f["password"] or "", f["host"] or "127.0.0.1", f["port"] or 3306, f["schema"] or "pos"
        )
    if env:
        return env
    port = os.environ.get("AIRCONNECT_MARIADB_PORT", "3306")
    return f"mysql://airconnect:airconnect@127.0.0.1:{port}/pos"


def connect_pg(dsn: str | None = None):
    import psycopg2

    conn = psycopg2.connect(dsn or default_pg_dsn())
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def connect_mysql(url: str | None = None):
    import MySQLdb

    f = _conn_fields(url or default_mysql_url())
    conn = MySQLdb.connect(
        host=f["host"] or "127.0.0.1",
        port=int(f["port"] or 3306),
        user=f["login"] or "airconnect",
        passwd=f["password"] or "",
        db=f["schema"] or "pos",
        charset="utf8mb4",
        autocommit=False,
    )
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cur.close()
    return conn


# ---------------------------------------------------------------- writers


def _months_arg(months: int | Sequence[tuple[int, int]], end: str) -> list[tuple[int, int]]:
    return month_range(end, months) if isinstance(months, int) else list(months)


def generate_ec(
    conn,
    *,
    months: int | Sequence[tuple[int, int]] = DEFAULT_MONTHS,
    end: str = DEFAULT_END,
    rows_per_month: int = DEFAULT_ROWS_PER_MONTH,
    seed: int = 42,
    reset: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Writes EC orders and lines into PostgreSQL (a psycopg2 connection) with COPY, committing every
    ~``batch_size`` lines. ``months`` is a count ending at ``end`` or a list of (year, month).
    Returns {'ec_orders': n, 'ec_order_lines': n}."""
    ensure_ec_schema(conn)
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        if reset:
            cur.execute("TRUNCATE ec_order_lines, ec_orders RESTART IDENTITY")
    conn.commit()
    prog = _Progress("ec", sink=progress)
    n_orders = 0

    def flush(orders: list) -> None:
        nonlocal n_orders
        if not orders:
            return
        with conn.cursor() as cur:
            cur.execute("SELECT nextval('ec_orders_order_id_seq') FROM generate_series(1, %s)", (len(orders),))
            ids = sorted(r[0] for r in cur.fetchall())
            obuf, lbuf = io.StringIO(), io.StringIO()
            nlines = 0
            for oid, (cust, ts, lines) in zip(ids, orders):
                t = ts.isoformat(" ")
                obuf.write(f"{oid}\t{cust}\t{t}\t{t}\n")
                for item_id, q, price in lines:
                    lbuf.write(f"{oid}\t{item_id}\t{q}\t{price}\t{t}\t{t}\n")
                    nlines += 1
            obuf.seek(0)
            lbuf.seek(0)
            cur.copy_expert("COPY ec_orders (order_id, customer_id, ordered_at, updated_at) FROM STDIN", obuf)
            cur.copy_expert(
                "COPY ec_order_lines (order_id, item_id, quantity, unit_price, ordered_at, updated_at) FROM STDIN", lbuf
            )
        conn.commit()
        n_orders += len(orders)
        prog.add(nlines)

    for y, m in _months_arg(months, end):
        batch: list = []
        lines_in_batch = 0
        for order in ec_month_orders(y, m, rows_per_month, seed):
            batch.append(order)
            lines_in_batch += len(order[2])
            if lines_in_batch >= batch_size:
                flush(batch)
                batch, lines_in_batch = [], 0
        flush(batch)
    prog.done(f", {n_orders} orders")
    return {"ec_orders": n_orders, "ec_order_lines": prog.rows}


def generate_pos(
    conn,
    *,
    months: int | Sequence[tuple[int, int]] = DEFAULT_MONTHS,
    end: str = DEFAULT_END,
    rows_per_month: int = DEFAULT_ROWS_PER_MONTH,
    seed: int = 42,
    reset: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Writes store sales into MariaDB/MySQL (a MySQLdb connection) with multi-row INSERTs of
    ``batch_size`` rows, one commit each. Returns {'pos_sales': n}."""
    ensure_pos_schema(conn)
    cur = conn.cursor()
    try:
        cur.execute("SET time_zone = '+00:00'")
        if reset:
            cur.execute("TRUNCATE TABLE pos_sales")
        conn.commit()
        prog = _Progress("pos", sink=progress)
        sql = (
            "INSERT INTO pos_sales (shop_id, item_id, quantity, unit_price, sold_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)"
        )
        for y, m in _months_arg(months, end):
            rows = pos_month_rows(y, m, rows_per_month, seed)
            for i in range(0, len(rows), batch_size):
                chunk = []
                for shop, item_id, q, price, ts in rows[i : i + batch_size]:
                    t = ts.strftime("%Y-%m-%d %H:%M:%S.%f")
                    chunk.append((shop, item_id, q, str(price), t, t))
                cur.executemany(sql, chunk)
                conn.commit()
                prog.add(len(chunk))
        prog.done()
        return {"pos_sales": prog.rows}
    finally:
        cur.close()


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate retail sales: EC orders (PostgreSQL) and store sales (MariaDB).")
    p.add_argument("--months", type=int, default=DEFAULT_MONTHS, help="number of months (default %(default)s)")
    p.add_argument("--end", default=DEFAULT_END, help="last month, YYYY-MM, inclusive (default %(default)s)")
    p.add_argument("--target", choices=("ec", "pos", "both"), default="both")
    p.add_argument(
        "--rows-per-month",
        type=int,
        default=DEFAULT_ROWS_PER_MONTH,
        help="average rows per month and target (EC order lines / POS sales) in 2017 (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--pg-dsn", default=None, help="PostgreSQL DSN (default: $AIRFLOW_CONN_POSTGRES_EC or the local stack)")
    p.add_argument("--mysql-url", default=None, help="mysql://user:pw@host:port/db (default: $AIRFLOW_CONN_MYSQL_POS or the local stack)")
    p.add_argument("--reset", action="store_true", help="truncate the tables first")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[generate_sales] %(message)s")
    months = month_range(a.end, a.months)
    log.info("months %04d-%02d..%04d-%02d, ~%d rows/month/target, seed %d", *months[0], *months[-1], a.rows_per_month, a.seed)
    common = dict(months=months, rows_per_month=a.rows_per_month, seed=a.seed, reset=a.reset, batch_size=a.batch_size)
    if a.target in ("ec", "both"):
        conn = connect_pg(a.pg_dsn)
        try:
            generate_ec(conn, **common)
        finally:
            conn.close()
    if a.target in ("pos", "both"):
        conn = connect_mysql(a.mysql_url)
        try:
            generate_pos(conn, **common)
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
