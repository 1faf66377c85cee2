"""Demand forecasts, checked against the known demand model of include/generate_sales.py.

``expected_monthly_units`` is the noise-free demand (seasonality x trend); ``planned_monthly_units`` is
what the generator actually writes (5 % Gaussian noise), so a forecast fitted on the latter can be
compared with the true expectation of the month it forecasts.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
import warnings
from pathlib import Path

import pytest

from airconnect.core.errors import DataError
from airconnect_retail.forecast import (
    HOLT,
    HOLT_WINTERS,
    MEAN,
    ZERO,
    forecast_all,
    forecast_series,
    monthly_series,
)

REPO = Path(__file__).resolve().parents[2]


def _load_generator():
    name = "airconnect_test_generate_sales"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "include" / "generate_sales.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while it is executed
    spec.loader.exec_module(module)
    return module


gs = _load_generator()
HISTORY = gs.month_range("2018-10", 25)  # 2016-10 .. 2018-10
NEXT = (2018, 11)
# One item from several categories, including the strongly seasonal one (x2.5 in November).
ITEMS_BY_CATEGORY = {}
for _item in gs.load_items():
    ITEMS_BY_CATEGORY.setdefault(_item.category, _item.item_id)
SAMPLE_ITEMS = [ITEMS_BY_CATEGORY[c] for c in ("drinks", "frozen", "seasonal", "fresh", "pantry", "household")]


@pytest.mark.parametrize("item_id", SAMPLE_ITEMS)
@pytest.mark.parametrize("channel", ["EC", "SHOP007"])
def test_noise_free_history_forecasts_the_expected_month_closely(item_id, channel):
    history = [gs.expected_monthly_units(item_id, channel, y, m) for y, m in HISTORY]
    expected = gs.expected_monthly_units(item_id, channel, *NEXT)
    result = forecast_series(history)
    assert result.method == HOLT_WINTERS
    assert result.history_len == 25
    assert result.next_value == pytest.approx(expected, rel=0.02)


def _generated(target: str) -> tuple[dict, float]:
    rows = [
        ((item, channel), y, m, units)
        for y, m in HISTORY
        for (item, channel), units in gs.planned_monthly_units(target, y, m).items()
    ]
    return monthly_series(rows, HISTORY[0], HISTORY[-1]), gs.units_scale(target, gs.DEFAULT_ROWS_PER_MONTH)


def test_generated_sales_forecasts_are_within_10_percent_of_the_known_demand():
    ec, ec_scale = _generated("ec")
    pos, pos_scale = _generated("pos")
    series = dict(ec)
    series.update({k: v for k, v in pos.items() if k[1] in ("SHOP001", "SHOP010")})  # busiest and quietest shop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = forecast_all(series)
    assert [str(w.message) for w in caught] == []  # statsmodels' convergence warnings stay quiet

    assert report.method_counts[HOLT_WINTERS] == len(series) == 40 * 3
    errors = {}
    for (item, channel), result in report.results.items():
        scale = ec_scale if channel == "EC" else pos_scale
        expected = gs.expected_monthly_units(item, channel, *NEXT) * scale
        errors[item, channel] = abs(result.next_value - expected) / expected
    # The history carries 5 % noise and only two Novembers, so single series can miss by ~10 %;
    # most are much closer.
    assert statistics.mean(errors.values()) < 0.06
    assert sum(e <= 0.10 for e in errors.values()) >= 0.9 * len(errors)
    assert max(errors.values()) < 0.20
    assert report.wape is not None and report.wape < 0.08  # the hold-out month (2018-10) against actual sales
    assert report.holdout_points == len(series)


def test_24_months_is_holt_winters_but_its_holdout_fit_is_holt():
    history = [gs.expected_monthly_units(SAMPLE_ITEMS[0], "EC", y, m) for y, m in gs.month_range("2018-10", 24)]
    result = forecast_series(history)
    assert result.method == HOLT_WINTERS
    assert result.holdout_method == HOLT  # 23 months are less than two seasons


def test_a_year_of_history_uses_holt_and_follows_the_trend():
    result = forecast_series([10 + 2 * i for i in range(12)])  # 10, 12, ..., 32
    assert result.method == HOLT
    assert result.next_value == pytest.approx(34, abs=1)
    assert result.holdout_actual == (32.0,)
    assert result.holdout_forecast[0] == pytest.approx(32, abs=1)


def test_short_history_falls_back_to_the_mean_and_says_why():
    result = forecast_series([4, 6, 8, 10])
    assert result.method == MEAN
    assert result.next_value == pytest.approx(7.0)
    assert "only 4 months" in result.note
    assert result.holdout_forecast == (pytest.approx(6.0),)  # mean of 4, 6, 8
    assert result.abs_error == pytest.approx(4.0)


def test_intermittent_history_uses_the_mean_of_the_last_season():
    history = [0.0] * 30
    history[20] = 6.0
    history[27] = 6.0
    result = forecast_series(history)
    assert result.method == MEAN
    assert "intermittent" in result.note
    assert result.next_value == pytest.approx(12 / 12)


def test_all_zero_and_awkward_series_give_sane_forecasts_without_warnings():
    awkward = {
        "zeros": [0] * 30,
        "empty": [],
        "one month": [7],
        "constant": [5] * 30,
        "exact line": list(range(1, 31)),  # a perfect fit makes statsmodels take log(0)
        "zero inside a season": [10 + (i % 12) if i != 14 else 0 for i in range(30)],
        "collapsing": [120 - 10 * i for i in range(12)] + [0] * 3,
        "falling fast": [110 - 10 * i for i in range(12)],  # 110 .. 0: a trend below zero
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = {name: forecast_series(h) for name, h in awkward.items()}
    assert [str(w.message) for w in caught] == []
    for name, result in results.items():
        assert math.isfinite(result.next_value) and result.next_value >= 0, name
        assert "failed" not in result.note, (name, result.note)
    assert results["zeros"].method == ZERO and results["zeros"].next_value == 0
    assert results["empty"].method == ZERO and results["empty"].holdout_actual == ()
    assert results["constant"].next_value == pytest.approx(5)
    assert results["falling fast"].next_value == 0  # never negative
    assert results["zero inside a season"].method == HOLT_WINTERS
    assert "seasonal=add" in results["zero inside a season"].model  # multiplicative needs positive months


def test_wape_and_mape_on_a_hand_made_example():
    # With fewer than 6 months the forecast is the mean, so the hold-out forecasts are known:
    series = {
        "a": [2, 4, 9],  # forecast mean(2, 4) = 3 for actual 9: error 6
        "b": [5, 5, 1],  # forecast 5 for actual 1: error 4
        "c": [0, 0, 0],  # 0 for 0
        "d": [3, 0],  # forecast 3 for actual 0: error 3, not part of the MAPE
    }
    report = forecast_all(series)
    assert report.wape == pytest.approx((6 + 4 + 0 + 3) / (9 + 1 + 0 + 0))
    assert report.mape == pytest.approx((6 / 9 + 4 / 1) / 2)
    assert report.holdout_points == 4
    assert report.method_counts[MEAN] == 3 and report.method_counts[ZERO] == 1
    assert report.next_values() == {"a": 5.0, "b": pytest.approx(11 / 3), "c": 0.0, "d": 1.5}
    assert report.results["a"].abs_error == 6
    assert "WAPE 130.0 %" in report.summary()


def test_no_sales_in_the_holdout_gives_no_wape():
    report = forecast_all({"a": [0, 0, 0]})
    assert report.wape is None and report.mape is None


def test_monthly_series_fills_gaps_and_adds_rows_of_the_same_month():
    rows = [
        (("ITEM001", "EC"), 2018, 1, 5),
        (("ITEM001", "EC"), 2018, 1, 2),
        (("ITEM001", "EC"), 2018, 3, 4),
        (("ITEM002", "SHOP001"), 2017, 12, 9),  # before the range: ignored, but the key is kept
        (("ITEM002", "SHOP001"), 2018, 2, "3"),
    ]
    series = monthly_series(rows, (2018, 1), (2018, 4))
    assert series == {("ITEM001", "EC"): [7, 0, 4, 0], ("ITEM002", "SHOP001"): [0, 3, 0, 0]}


def test_monthly_series_across_a_year_boundary():
    series = monthly_series([("k", 2017, 12, 1), ("k", 2018, 1, 2)], (2017, 11), (2018, 2))
    assert series == {"k": [0, 1, 2, 0]}


def test_monthly_series_names_a_bad_row():
    with pytest.raises(DataError, match="row 1.*13"):
        monthly_series([("k", 2018, 1, 1), ("k", 2018, 13, 1)], (2018, 1), (2018, 12))
    with pytest.raises(DataError, match="'lots' is not a number"):
        monthly_series([("k", 2018, 1, "lots")], (2018, 1), (2018, 12))


def test_forecast_all_names_the_series_with_bad_history():
    with pytest.raises(DataError, match="ITEM009"):
        forecast_all({("ITEM009", "EC"): [1.0, float("nan"), 2.0]})


def test_chart_draws_the_busiest_series_into_a_png(tmp_path):
    from airconnect_retail.charts import plot_actual_vs_forecast

    series = {f"ITEM{i:03d}": [float(i * 10 + m) for m in range(6)] for i in range(1, 9)}
    forecasts = {name: values[-1] + 1 for name, values in series.items()}
    months = ["2018-05", "2018-06", "2018-07", "2018-08", "2018-09", "2018-10", "2018-11"]
    path = tmp_path / "charts" / "ec.png"
    drawn = plot_actual_vs_forecast(path, series, forecasts, months, "EC demand")
    assert drawn == ["ITEM008", "ITEM007", "ITEM006", "ITEM005", "ITEM004", "ITEM003"]  # top 6 by units
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError, match="months has 3 labels for 6 months"):
        plot_actual_vs_forecast(path, series, forecasts, months[:3], "EC demand")


def test_chart_draws_japanese_item_names(tmp_path):
    """Item names such as お茶 and 麦茶 are drawn with real glyphs, not empty boxes
    (scripts/setup.sh installs a CJK font; matplotlib warns about each glyph it cannot draw)."""
    import warnings

    from airconnect_retail.charts import plot_actual_vs_forecast

    series = {"ITEM001 お茶 500ml": [10.0, 12.0, 11.0], "ITEM006 麦茶 2L": [5.0, 6.0, 7.0]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_actual_vs_forecast(tmp_path / "cjk.png", series, {k: 9.0 for k in series}, ["2018-08", "2018-09", "2018-10"],
                                "需要予測")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert missing == []
