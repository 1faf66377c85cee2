"""Charts for people checking the forecasts (flow 3): actual monthly units against the forecast.

matplotlib is imported on first use and drives its Agg canvas directly (no pyplot, no global backend
switch), so this works in a scheduler's worker without a display and from several threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Panels drawn at most; the series with the most units sold come first.
DEFAULT_MAX_PANELS = 6
#: Fonts tried, in order, for glyphs DejaVu Sans lacks (item names in Japanese, Chinese, Korean);
#: scripts/setup.sh installs IPAGothic (Debian's fonts-ipafont-gothic).
CJK_FONTS = ("IPAGothic", "IPAexGothic", "Noto Sans CJK JP", "Noto Sans CJK KR", "WenQuanYi Zen Hei")


def _font_families() -> list[str]:
    """DejaVu Sans, then the installed CJK fonts as fallbacks (matplotlib >= 3.6 falls back per glyph)."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *[f for f in CJK_FONTS if f in installed]]


def plot_actual_vs_forecast(
    path: str | os.PathLike,
    series: Mapping[str, Sequence[float]],
    forecasts: Mapping[str, float],
    months: Sequence[str],
    title: str,
    *,
    max_panels: int = DEFAULT_MAX_PANELS,
) -> list[str]:
    """Writes one PNG at ``path`` with a small panel per series: its history as a line and the next
    month's forecast as a marked point joined to the last actual month by a dashed line.

    ``months`` labels the history months (``'2018-10'``), one per value; one more label, if given,
    names the forecast month (otherwise it is labelled ``'next'``). Only the ``max_panels`` series with
    the most units sold are drawn. Returns the names drawn, in panel order.
    """
    from matplotlib import rc_context

    if not series:
        raise ValueError("no series to plot")
    if max_panels < 1:
        raise ValueError(f"max_panels must be at least 1, got {max_panels}")
    lengths = {len(v) for v in series.values()}
    if len(lengths) != 1:
        raise ValueError(f"all series must have the same number of months, got lengths {sorted(lengths)}")
    n = lengths.pop()
    if len(months) not in (n, n + 1):
        raise ValueError(f"months has {len(months)} labels for {n} months of history (expected {n} or {n + 1})")
    labels = list(months) + ([] if len(months) == n + 1 else ["next"])

    names = sorted(series, key=lambda k: (-sum(series[k]), str(k)))[:max_panels]
    with rc_context({"font.family": _font_families()}):
        _draw(path, series, forecasts, names, labels, n, title)
    return [str(k) for k in names]


def _draw(path: str | os.PathLike, series: Mapping[str, Sequence[float]], forecasts: Mapping[str, float],
          names: list[str], labels: list[str], n: int, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=13)
    axes = fig.subplots(rows, cols, squeeze=False)
    x = list(range(n))
    step = max(1, math.ceil((n + 1) / 6))  # about six month labels per panel
    for ax, name in zip(axes.flat, names):
        actual = list(series[name])
        ax.plot(x, actual, color="tab:blue", marker="o", markersize=2.5, linewidth=1.4, label="actual")
        fc = forecasts.get(name)
        if fc is not None:
            ax.plot([n - 1, n], [actual[-1], fc], color="tab:orange", linestyle="--", linewidth=1.2)
            ax.plot([n], [fc], color="tab:orange", marker="D", markersize=6, linestyle="none", label="forecast")
            ax.annotate(f"{fc:,.0f}", (n, fc), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=8, color="tab:orange")
        ax.set_title(str(name), fontsize=10)
        ticks = list(range(0, n + 1, step))
        if ticks[-1] != n:
            ticks.append(n)
        ax.set_xticks(ticks)
        ax.set_xticklabels([labels[i] for i in ticks], rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="upper left")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
