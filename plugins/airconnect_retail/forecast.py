"""Next-month demand forecasts for monthly sales series (flow 3, automatic ordering).

A series is the units sold per calendar month for one key, e.g. ``(item_id, "EC")`` for the EC site or
``(item_id, shop_id)`` for a shop, oldest month first and without gaps (:func:`monthly_series` builds
such lists from rows, filling missing months with 0).

:func:`forecast_series` picks the model from the length and shape of the history and says which one in
:attr:`SeriesForecast.method`:

* ``holt_winters`` (>= 2 seasons, 24 months): exponential smoothing with a damped additive trend and
  multiplicative seasonality (additive seasonality when a month in the history is 0 or less), fitted by
  statsmodels' ``ExponentialSmoothing``;
* ``holt`` (>= 6 months): Holt's linear trend, damped, no seasonality;
* ``mean``: the mean of the history for shorter series, for constant series, and for intermittent ones
  (fewer than half of the months non-zero), where the last season's mean is used;
* ``zero``: no history, or nothing but zeros.

A model that fails to fit, or forecasts a non-finite number, falls back to the next simpler one and
says so in :attr:`SeriesForecast.note`. Forecasts are never negative.

Accuracy is measured on a hold-out: the model is refitted on the history without its last ``holdout``
months (the method is picked again for that shorter history, see ``holdout_method``), those months are
forecast and compared with what was sold. Then the model is fitted on the full history to forecast the
next month. :func:`forecast_all` does this for many series and reports the overall WAPE and MAPE.

numpy, statsmodels and threadpoolctl are imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from airconnect.core.errors import DataError
from airconnect.core.progress import Progress

log = logging.getLogger(__name__)

HOLT_WINTERS: Final = "holt_winters"
HOLT: Final = "holt"
MEAN: Final = "mean"
ZERO: Final = "zero"
#: Every method, from the most to the least elaborate.
METHODS: Final = (HOLT_WINTERS, HOLT, MEAN, ZERO)

#: Shortest history for Holt's linear trend; Holt-Winters needs two full seasons.
HOLT_MIN_MONTHS: Final = 6
#: A forecast above this multiple of the largest month in the history is capped (and noted).
CAP_FACTOR: Final = 10.0


@dataclass(frozen=True)
class SeriesForecast:
    """The forecast of one series, with what is needed to judge it.

    ``holdout_actual`` / ``holdout_forecast`` are the last ``holdout`` months of the history and the
    forecast of them by a model fitted without them (empty when the history was too short to hold
    months out); ``abs_error`` is the sum of their absolute differences (None without a hold-out).
    """

    method: str
    next_value: float
    holdout_actual: tuple[float, ...]
    holdout_forecast: tuple[float, ...]
    history_len: int
    abs_error: float | None
    model: str = ""
    holdout_method: str | None = None
    note: str = ""

    @property
    def holdout_ape(self) -> float | None:
        """Absolute error over the hold-out as a fraction of the units sold in it (None if none sold)."""
        total = sum(self.holdout_actual)
        if self.abs_error is None or total <= 0:
            return None
        return self.abs_error / total


@dataclass(frozen=True)
class ForecastReport:
    """Forecasts of many series and their accuracy on the hold-out months.

    ``wape`` = sum |actual - forecast| / sum actual over every hold-out month of every series;
    ``mape`` = mean of |actual - forecast| / actual over the hold-out months whose actual is not 0.
    Both are fractions (0.05 = 5 %) and None when there was nothing to compare.
    """

    results: Mapping[Hashable, SeriesForecast]
    wape: float | None
    mape: float | None
    method_counts: Mapping[str, int]
    holdout_points: int
    seconds: float

    def next_values(self) -> dict[Hashable, float]:
        """The next month's forecast per key."""
        return {key: r.next_value for key, r in self.results.items()}

    def summary(self) -> str:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f} %"

        methods = ", ".join(f"{m} {n}" for m, n in self.method_counts.items() if n)
        return (
            f"{len(self.results)} series ({methods}); hold-out WAPE {pct(self.wape)}, MAPE {pct(self.mape)} "
            f"over {self.holdout_points} months; {self.seconds:.1f} s"
        )


# ---------------------------------------------------------------- building series


def monthly_series(
    rows: Iterable[tuple[Hashable, int, int, Any]],
    start: tuple[int, int],
    end: tuple[int, int],
) -> dict[Hashable, list[float]]:
    """Dense monthly lists from rows of ``(key, year, month, units)``.

    Every key seen gets one value per month from ``start`` to ``end`` (both ``(year, month)``,
    inclusive), 0 for months without rows; units of several rows for the same key and month are added.
    Rows outside the range are ignored, so pass the last *complete* month as ``end``. Keys are returned
    in the order first seen. Raises :class:`DataError` naming the row for a bad month or units.
    """
    first = _month_index(start, "start")
    last = _month_index(end, "end")
    if last < first:
        raise ValueError(f"end {end} is before start {start}")
    n = last - first + 1
    out: dict[Hashable, list[float]] = {}
    for i, row in enumerate(rows):
        try:
            key, year, month, units = row
        except (TypeError, ValueError):
            raise DataError(f"row {i}: expected (key, year, month, units), got {row!r}") from None
        if not (isinstance(year, int) and isinstance(month, int) and 1 <= month <= 12):
            raise DataError(f"row {i} (key {key!r}): expected an integer year and month 1..12, got {year!r}-{month!r}")
        try:
            value = float(units)
        except (TypeError, ValueError):
            raise DataError(f"row {i} (key {key!r}, {year}-{month:02d}): units {units!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"row {i} (key {key!r}, {year}-{month:02d}): units {units!r} is not finite")
        values = out.get(key)
        if values is None:
            values = out[key] = [0.0] * n
        pos = year * 12 + month - 1 - first
        if 0 <= pos < n:
            values[pos] += value
    return out


def _month_index(ym: tuple[int, int], name: str) -> int:
    try:
        year, month = ym
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (year, month), got {ym!r}") from None
    if not (isinstance(year, int) and isinstance(month, int) and 1 <= month <= 12):
        raise ValueError(f"{name} must be (year, month) with month 1..12, got {ym!r}")
    return year * 12 + month - 1


# ---------------------------------------------------------------- one series


def forecast_series(history: Sequence[float], *, season_length: int = 12, holdout: int = 1) -> SeriesForecast:
    """Forecasts the month after ``history`` (monthly units, oldest first, no gaps).

    ``holdout`` months at the end are first forecast by a model fitted without them, to measure the
    error; 0 skips that. See the module docstring for how the method is chosen.
    """
    if season_length < 2:
        raise ValueError(f"season_length must be at least 2, got {season_length}")
    if holdout < 0:
        raise ValueError(f"holdout must be 0 or more, got {holdout}")
    values = [float(v) for v in history]
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise DataError(f"history[{i}] is {history[i]!r}; monthly units must be finite numbers")

    holdout_actual: tuple[float, ...] = ()
    holdout_forecast: tuple[float, ...] = ()
    abs_error: float | None = None
    holdout_method: str | None = None
    if holdout and len(values) > holdout:
        train = values[:-holdout]
        holdout_method, _, predicted, _ = _fit_predict(train, holdout, season_length)
        holdout_actual = tuple(values[-holdout:])
        holdout_forecast = tuple(predicted)
        abs_error = sum(abs(a - f) for a, f in zip(holdout_actual, holdout_forecast))

    method, model, predicted, note = _fit_predict(values, 1, season_length)
    return SeriesForecast(
        method=method,
        next_value=predicted[0],
        holdout_actual=holdout_actual,
        holdout_forecast=holdout_forecast,
        history_len=len(values),
        abs_error=abs_error,
        model=model,
        holdout_method=holdout_method,
        note=note,
    )


def _fit_predict(values: list[float], steps: int, season_length: int) -> tuple[str, str, list[float], str]:
    """(method, model description, ``steps`` forecasts >= 0, note) for ``values``."""
    n = len(values)
    if n == 0:
        return ZERO, "no history", [0.0] * steps, "no history"
    if all(v == 0 for v in values):
        return ZERO, "all months 0", [0.0] * steps, ""
    if n < HOLT_MIN_MONTHS:
        return _mean(values, steps, f"only {n} months of history")
    if max(values) == min(values):
        return _mean(values, steps, "constant history")
    nonzero = sum(1 for v in values if v != 0)
    if 2 * nonzero < n:
        return _mean(values[-season_length:], steps, f"intermittent: {nonzero} of {n} months non-zero")

    notes: list[str] = []
    attempts = []
    if n >= 2 * season_length:
        attempts.append(HOLT_WINTERS)
    attempts.append(HOLT)
    cap = CAP_FACTOR * max(abs(v) for v in values)
    for method in attempts:
        try:
            raw, model = _exponential_smoothing(values, steps, season_length, seasonal=method == HOLT_WINTERS)
        except Exception as e:  # statsmodels raises many kinds (ValueError, LinAlgError, ...)
            notes.append(f"{method} failed ({type(e).__name__}: {e})")
            continue
        if not all(math.isfinite(x) for x in raw):
            notes.append(f"{method} gave a non-finite forecast")
            continue
        if any(x > cap for x in raw):
            notes.append(f"capped at {CAP_FACTOR:g} x the largest month")
        return method, model, [min(max(x, 0.0), cap) for x in raw], "; ".join(notes)
    method, model, predicted, note = _mean(values[-season_length:], steps, "")
    return method, model, predicted, "; ".join(notes + ["fell back to the mean of the last season"])


def _mean(values: list[float], steps: int, note: str) -> tuple[str, str, list[float], str]:
    m = max(sum(values) / len(values), 0.0)
    return MEAN, f"mean of the last {len(values)} months", [m] * steps, note


def _exponential_smoothing(values: list[float], steps: int, season_length: int, *, seasonal: bool) -> tuple[list[float], str]:
    import warnings

    import numpy as np
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = np.asarray(values, dtype=float)
    kind = None
    if seasonal:
        kind = "mul" if float(y.min()) > 0 else "add"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Short, noise-free or flat series make statsmodels warn (ConvergenceWarning, log(0) in the
        # AIC, ...); the result is still usable and checked below, so the warnings are only noise.
        warnings.simplefilter("ignore")
        model = ExponentialSmoothing(
            y,
            trend="add",
            damped_trend=True,
            seasonal=kind,
            seasonal_periods=season_length if seasonal else None,
            initialization_method="estimated",
        )
        fitted = model.fit(use_brute=False)
        forecast = fitted.forecast(steps)
    desc = "ExponentialSmoothing(trend=add damped" + (f", seasonal={kind}/{season_length}" if seasonal else "") + ")"
    return [float(x) for x in forecast], desc


# ---------------------------------------------------------------- many series


def forecast_all(
    series: Mapping[Hashable, Sequence[float]],
    *,
    season_length: int = 12,
    holdout: int = 1,
    progress_every: float = 5.0,
) -> ForecastReport:
    """Forecasts every series (see :func:`forecast_series`) and measures the overall hold-out error.

    Logs progress every ``progress_every`` seconds while it runs (about 10 ms per series with 24+
    months of history) and a summary at the end.
    """
    from threadpoolctl import threadpool_limits

    progress = Progress(log, "forecast", every=progress_every, unit="series")
    results: dict[Hashable, SeriesForecast] = {}
    # The matrices are tiny: more BLAS threads only spin (twice the CPU on 2 cores for the same time).
    with threadpool_limits(limits=1, user_api="blas"):
        for key, history in series.items():
            try:
                results[key] = forecast_series(history, season_length=season_length, holdout=holdout)
            except DataError as e:
                raise DataError(f"series {key!r}: {e}") from e
            progress.add(1)
    progress.done()

    abs_sum = actual_sum = 0.0
    ape: list[float] = []
    points = 0
    for r in results.values():
        for a, f in zip(r.holdout_actual, r.holdout_forecast):
            points += 1
            abs_sum += abs(a - f)
            actual_sum += a
            if a != 0:
                ape.append(abs(a - f) / abs(a))
    counts = Counter(r.method for r in results.values())
    report = ForecastReport(
        results=results,
        wape=abs_sum / actual_sum if actual_sum > 0 else None,
        mape=sum(ape) / len(ape) if ape else None,
        method_counts={m: counts.get(m, 0) for m in METHODS},
        holdout_points=points,
        seconds=progress.seconds,
    )
    log.info("forecast: %s", report.summary())
    return report
