"""The automatic-ordering rule, checked against numbers computed by hand.

need = demand * lead_time / days + demand * safety_days / days - on_hand - open_orders,
quantity = ceil(need / pack) * pack, or 0 when need <= 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from airconnect_retail.ordering import ItemPolicy, PolicyError, load_item_master, order_quantity, plan_orders

REPO = Path(__file__).resolve().parents[2]

# pack 6, 3 days lead time, 7 days safety stock. With 300 units/month over 30 days (10 a day):
# demand over lead time 30, safety stock 70, so 100 units are needed before stock on hand.
POLICY = ItemPolicy("ITEM003", pack_size=6, lead_time_days=3, safety_stock_days=7)


def qty(on_hand: int, open_orders: int = 0, demand: float = 300.0, policy: ItemPolicy = POLICY, days: int = 30):
    return order_quantity(
        monthly_demand=demand, policy=policy, on_hand=on_hand, open_orders=open_orders, days_in_month=days
    )


def test_line_shows_the_intermediate_numbers():
    line = qty(on_hand=45)
    assert line.demand_over_lead_time == pytest.approx(30.0)
    assert line.safety_stock == pytest.approx(70.0)
    assert line.need == 55.0
    assert (line.packs, line.quantity) == (10, 60)  # 55 rounds up to 10 packs of 6
    assert (line.item_id, line.on_hand, line.open_orders, line.pack_size) == ("ITEM003", 45, 0, 6)
    assert line.stock_known is True
    assert "need 55 -> 10 x 6 = 60" in line.explain()


@pytest.mark.parametrize(
    ("on_hand", "need", "quantity"),
    [
        (40, 60, 60),  # exact multiple of the pack stays as it is
        (41, 59, 60),
        (54, 46, 48),
        (99, 1, 6),  # one unit short still orders a whole pack
        (100, 0, 0),  # nothing needed
        (150, -50, 0),  # more than enough on hand
        (-20, 120, 120),  # back orders (negative stock) raise the need
    ],
)
def test_need_rounds_up_to_whole_packs(on_hand, need, quantity):
    line = qty(on_hand=on_hand)
    assert line.need == need
    assert line.quantity == quantity
    assert line.quantity % 6 == 0


def test_open_orders_reduce_the_need():
    assert qty(on_hand=40, open_orders=12).quantity == 48  # 100 - 40 - 12 = 48, 8 packs
    assert qty(on_hand=40, open_orders=60).quantity == 0


def test_float_error_does_not_order_an_extra_pack():
    # 133.3 * 3 / 31 + 133.3 * 7 / 31 - 1 = 12.9 + 30.1 - 1 = 42 exactly = 7 packs of 6;
    # in floating point the sum is 42.00000000000001, which a plain ceil would turn into 8 packs (48).
    raw = 133.3 * 3 / 31 + 133.3 * 7 / 31 - 1
    assert raw > 42 and math.ceil(raw / 6) == 8  # the trap is real
    line = qty(on_hand=1, demand=133.3, days=31)
    assert line.need == 42.0
    assert line.quantity == 42


def test_a_real_fraction_above_a_multiple_still_rounds_up():
    line = qty(on_hand=1, demand=133.331, days=31)  # 133.331 * 10 / 31 - 1 = 42.01
    assert line.need == pytest.approx(42.01)
    assert line.quantity == 48


def test_zero_lead_time_orders_only_the_safety_stock():
    policy = ItemPolicy("ITEM010", pack_size=10, lead_time_days=0, safety_stock_days=7)
    line = qty(on_hand=10, policy=policy)  # safety 300 * 7 / 30 = 70, minus 10 on hand = 60
    assert line.demand_over_lead_time == 0
    assert line.quantity == 60


def test_zero_demand_orders_nothing():
    assert qty(on_hand=0, demand=0.0).quantity == 0


def test_days_in_month_changes_the_daily_rate():
    # 310 units in a 31-day month = 10 a day: 30 + 70 - 40 = 60
    assert qty(on_hand=40, demand=310.0, days=31).quantity == 60


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(pack_size=0, lead_time_days=3), "pack_size"),
        (dict(pack_size=2.5, lead_time_days=3), "pack_size"),
        (dict(pack_size=True, lead_time_days=3), "pack_size"),
        (dict(pack_size=6, lead_time_days=-1), "lead_time_days"),
        (dict(pack_size=6, lead_time_days=3, safety_stock_days=-0.5), "safety_stock_days"),
        (dict(pack_size=6, lead_time_days=3, safety_stock_days=float("nan")), "safety_stock_days"),
    ],
)
def test_bad_policy_values_name_the_field_and_item(kwargs, field):
    with pytest.raises(PolicyError) as exc:
        ItemPolicy("ITEM042", **kwargs)
    assert field in str(exc.value)
    assert "ITEM042" in str(exc.value)
    assert exc.value.field == field
    assert isinstance(exc.value, ValueError)


def test_negative_or_nan_demand_is_rejected():
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(PolicyError, match="monthly_demand"):
            qty(on_hand=0, demand=bad)


def test_plan_orders_skips_zero_lines_sorts_and_flags_unknown_stock():
    policies = {
        "ITEM001": ItemPolicy("ITEM001", pack_size=24, lead_time_days=3, safety_stock_days=7),
        "ITEM003": POLICY,
    }
    forecasts = {
        ("ITEM003", "SHOP002"): 300.0,  # need 100 - 45 = 55 -> 60
        ("ITEM003", "SHOP001"): 300.0,  # need 100 - 200 < 0 -> no line
        ("ITEM001", "EC"): 600.0,  # need 200, no stock row -> 0 on hand -> 9 packs of 24 = 216
        ("ITEM001", "SHOP001"): 0.0,  # no demand -> no line
    }
    stock = {("ITEM003", "SHOP002"): 45, ("ITEM003", "SHOP001"): 200, ("ITEM001", "SHOP001"): 0}
    lines = plan_orders(forecasts, stock, policies)
    assert [(ln.item_id, ln.shop_id, ln.quantity) for ln in lines] == [
        ("ITEM001", "EC", 216),
        ("ITEM003", "SHOP002", 60),
    ]
    assert lines[0].stock_known is False and lines[0].on_hand == 0
    assert lines[1].stock_known is True and lines[1].on_hand == 45


def test_plan_orders_uses_open_orders():
    lines = plan_orders({("ITEM003", "SHOP002"): 300.0}, {("ITEM003", "SHOP002"): 40}, {"ITEM003": POLICY},
                        open_orders={("ITEM003", "SHOP002"): 12})
    assert [(ln.open_orders, ln.quantity) for ln in lines] == [(12, 48)]


def test_plan_orders_names_items_missing_from_the_master():
    forecasts = {("ITEM003", "SHOP001"): 10.0, ("ITEM999", "SHOP001"): 5.0}
    with pytest.raises(PolicyError, match="ITEM999") as exc:
        plan_orders(forecasts, {}, {"ITEM003": POLICY})
    assert "ITEM003" not in str(exc.value)


def test_load_item_master_reads_the_shipped_csv():
    policies = load_item_master(REPO / "include" / "items.csv", default_safety_stock_days=5)
    assert len(policies) == 40
    assert policies["ITEM001"] == ItemPolicy("ITEM001", pack_size=24, lead_time_days=3, safety_stock_days=5)
    assert policies["ITEM003"].pack_size == 6 and policies["ITEM003"].lead_time_days == 4


def test_load_item_master_per_item_safety_stock_overrides_the_default(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,name,pack_size,lead_time_days,safety_stock_days\n"
        "A1,Tea,24,3,\n"
        "A2,Ice,12,2,10.5\n",
        encoding="utf-8",
    )
    policies = load_item_master(path)
    assert policies["A1"].safety_stock_days == 7
    assert policies["A2"].safety_stock_days == 10.5


@pytest.mark.parametrize(
    ("row", "column"),
    [("A2,Ice,twelve,2", "pack_size"), ("A2,Ice,0,2", "pack_size"), ("A2,Ice,12,-3", "lead_time_days")],
)
def test_load_item_master_bad_row_names_file_line_and_column(tmp_path, row, column):
    path = tmp_path / "master.csv"
    path.write_text(f"item_id,name,pack_size,lead_time_days\nA1,Tea,24,3\n{row}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_item_master(path)
    message = str(exc.value)
    assert "master.csv" in message and "line 3" in message and repr(column) in message and "A2" in message


def test_load_item_master_missing_column_and_duplicates(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,name,pack_size\nA1,Tea,24\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="lead_time_days"):
        load_item_master(path)
    path.write_text("item_id,pack_size,lead_time_days\nA1,24,3\nA1,12,3\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="line 3.*already defined on line 2"):
        load_item_master(path)
