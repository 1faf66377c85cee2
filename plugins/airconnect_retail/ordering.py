"""The automatic-ordering rule (flow 3): how many units to order per item and shop.

For a forecast of next month's demand ``D`` (units per month) and an item's policy::

    demand over lead time = D * lead_time_days / days_in_month
    safety stock          = D * safety_stock_days / days_in_month
    need                  = demand over lead time + safety stock - on hand - open orders
    quantity              = 0 if need <= 0 else ceil(need / pack_size) * pack_size

``need`` is rounded to 6 decimals before rounding up, so that float error (12.0000000001) does not
order a whole extra pack. Every :class:`OrderLine` keeps the inputs and the intermediate numbers, so a
person can check an order by hand.

Policies come from the item master (include/items.csv) via :func:`load_item_master`.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Final

from airconnect.core.errors import PermanentError

#: Days of cover kept on top of the lead-time demand when the item master has no safety_stock_days.
DEFAULT_SAFETY_STOCK_DAYS: Final = 7.0
#: ``need`` is rounded to this many decimals before it is rounded up to whole packs.
NEED_DECIMALS: Final = 6

_REQUIRED_COLUMNS: Final = ("item_id", "pack_size", "lead_time_days")


class PolicyError(PermanentError, ValueError):
    """An ordering policy or an item master row is invalid, or an item has no policy.

    The message names the item and the field (and for a file, the file, line and column).
    """

    def __init__(self, message: str, *, item_id: str | None = None, field: str | None = None):
        self.item_id = item_id
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class ItemPolicy:
    """How an item is ordered: in whole packs, arriving after ``lead_time_days``, with
    ``safety_stock_days`` of demand kept as a buffer."""

    item_id: str
    pack_size: int
    lead_time_days: int
    safety_stock_days: float = DEFAULT_SAFETY_STOCK_DAYS

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id.strip():
            raise PolicyError(f"item_id must be a non-empty string, got {self.item_id!r}", field="item_id")

        def bad(field: str, expected: str, value: object) -> PolicyError:
            return PolicyError(
                f"item {self.item_id!r}: {field} must be {expected}, got {value!r}", item_id=self.item_id, field=field
            )

        if not _is_int(self.pack_size) or self.pack_size < 1:
            raise bad("pack_size", "an integer >= 1", self.pack_size)
        if not _is_int(self.lead_time_days) or self.lead_time_days < 0:
            raise bad("lead_time_days", "an integer >= 0", self.lead_time_days)
        ssd = self.safety_stock_days
        if not _is_number(ssd) or not math.isfinite(ssd) or ssd < 0:
            raise bad("safety_stock_days", "a number >= 0", ssd)


@dataclass(frozen=True)
class OrderLine:
    """One order proposal with everything it was computed from."""

    item_id: str
    shop_id: str | None
    quantity: int
    monthly_demand: float
    days_in_month: int
    lead_time_days: int
    safety_stock_days: float
    pack_size: int
    on_hand: int
    open_orders: int
    demand_over_lead_time: float
    safety_stock: float
    need: float  # rounded to NEED_DECIMALS
    packs: int
    stock_known: bool = True

    def explain(self) -> str:
        """The computation in one line, for logs and reports."""
        stock = f"on hand {self.on_hand}" + ("" if self.stock_known else " (stock unknown, taken as 0)")
        return (
            f"{self.item_id}@{self.shop_id or '-'}: demand {self.monthly_demand:.2f}/month -> "
            f"lead time {self.lead_time_days} d {self.demand_over_lead_time:.2f} + safety {self.safety_stock_days:g} d "
            f"{self.safety_stock:.2f} - {stock} - open orders {self.open_orders} = need {self.need:g} "
            f"-> {self.packs} x {self.pack_size} = {self.quantity}"
        )


def order_quantity(
    *,
    monthly_demand: float,
    policy: ItemPolicy,
    on_hand: int,
    open_orders: int = 0,
    days_in_month: int = 30,
    shop_id: str | None = None,
    stock_known: bool = True,
) -> OrderLine:
    """Applies the ordering rule (module docstring) to one item (and shop).

    ``on_hand`` may be negative (back orders), which raises the need. Returns the line even when the
    quantity is 0.
    """
    item = policy.item_id
    if not _is_number(monthly_demand) or not math.isfinite(monthly_demand) or monthly_demand < 0:
        raise PolicyError(
            f"item {item!r}: monthly_demand must be a finite number >= 0, got {monthly_demand!r}",
            item_id=item,
            field="monthly_demand",
        )
    if not _is_int(on_hand):
        raise PolicyError(f"item {item!r}: on_hand must be an integer, got {on_hand!r}", item_id=item, field="on_hand")
    if not _is_int(open_orders) or open_orders < 0:
        raise PolicyError(
            f"item {item!r}: open_orders must be an integer >= 0, got {open_orders!r}", item_id=item, field="open_orders"
        )
    if not _is_int(days_in_month) or days_in_month < 1:
        raise PolicyError(
            f"days_in_month must be an integer >= 1, got {days_in_month!r}", item_id=item, field="days_in_month"
        )
    demand = float(monthly_demand)
    demand_lt = demand * policy.lead_time_days / days_in_month
    safety = demand * policy.safety_stock_days / days_in_month
    need = round(demand_lt + safety - on_hand - open_orders, NEED_DECIMALS)
    packs = 0 if need <= 0 else math.ceil(need / policy.pack_size)
    return OrderLine(
        item_id=item,
        shop_id=shop_id,
        quantity=int(packs * policy.pack_size),
        monthly_demand=demand,
        days_in_month=days_in_month,
        lead_time_days=policy.lead_time_days,
        safety_stock_days=float(policy.safety_stock_days),
        pack_size=policy.pack_size,
        on_hand=int(on_hand),
        open_orders=int(open_orders),
        demand_over_lead_time=demand_lt,
        safety_stock=safety,
        need=need,
        packs=packs,
        stock_known=stock_known,
    )


def plan_orders(
    forecasts: Mapping[tuple[str, str], float],
    stock: Mapping[tuple[str, str], int],
    policies: Mapping[str, ItemPolicy],
    open_orders: Mapping[tuple[str, str], int] | None = None,
    *,
    days_in_month: int = 30,
) -> list[OrderLine]:
    """Order lines for every ``(item_id, shop_id)`` forecast whose quantity is above 0, sorted by item
    then shop.

    Stock missing for a key counts as 0 on hand and the line says ``stock_known=False``. A forecast for
    an item without a policy raises :class:`PolicyError` naming the item(s), before anything is computed.
    """
    unknown = sorted({str(item) for item, _ in forecasts if item not in policies})
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise PolicyError(
            f"no item master entry for {len(unknown)} forecast item(s): {shown}",
            item_id=unknown[0],
            field="item_id",
        )
    open_orders = open_orders or {}
    lines = []
    for key in sorted(forecasts, key=_sort_key):
        item, shop = key
        on_hand = stock.get(key)
        line = order_quantity(
            monthly_demand=forecasts[key],
            policy=policies[item],
            on_hand=0 if on_hand is None else on_hand,
            open_orders=open_orders.get(key, 0),
            days_in_month=days_in_month,
            shop_id=shop,
            stock_known=on_hand is not None,
        )
        if line.quantity > 0:
            lines.append(line)
    return lines


def load_item_master(
    path: str | os.PathLike, *, default_safety_stock_days: float = DEFAULT_SAFETY_STOCK_DAYS
) -> dict[str, ItemPolicy]:
    """Ordering policies from an item master CSV (``item_id, ..., pack_size, lead_time_days``).

    An optional ``safety_stock_days`` column overrides ``default_safety_stock_days`` for the rows where
    it is not empty. Other columns (name, category, price) are ignored. Raises :class:`PolicyError`
    naming the file, line and column of a bad value, or a missing column or duplicate item.
    """
    name = os.fspath(path)
    policies: dict[str, ItemPolicy] = {}
    lines_of: dict[str, int] = {}
    with open(name, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise PolicyError(f"{name}: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'})")
        reader.fieldnames = columns
        for row in reader:
            line = reader.line_num
            item = (row.get("item_id") or "").strip()
            if not item:
                raise PolicyError(f"{name} line {line}, column 'item_id': empty", field="item_id")
            if item in policies:
                raise PolicyError(
                    f"{name} line {line}, column 'item_id': item {item!r} already defined on line {lines_of[item]}",
                    item_id=item,
                    field="item_id",
                )

            def value(column: str, convert, expected: str):  # called at once, in this iteration
                raw = (row.get(column) or "").strip()  # noqa: B023
                try:
                    return convert(raw)
                except ValueError:
                    raise PolicyError(
                        f"{name} line {line}, column {column!r} (item {item!r}): expected {expected}, got {raw!r}",  # noqa: B023
                        item_id=item,  # noqa: B023
                        field=column,
                    ) from None

            pack = value("pack_size", int, "an integer >= 1")
            lead = value("lead_time_days", int, "an integer >= 0")
            ssd = default_safety_stock_days
            if (row.get("safety_stock_days") or "").strip():
                ssd = value("safety_stock_days", float, "a number >= 0")
            try:
                policies[item] = ItemPolicy(item, pack, lead, ssd)
            except PolicyError as e:
                raise PolicyError(f"{name} line {line}, column {e.field!r}: {e}", item_id=item, field=e.field) from None
            lines_of[item] = line
    if not policies:
        raise PolicyError(f"{name}: no items")
    return policies


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy integers count


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _sort_key(key: tuple[Hashable, Hashable]) -> tuple[str, str]:
    return (str(key[0]), str(key[1]))
