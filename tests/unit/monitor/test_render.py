"""The on-call report's PNG is readable from the first live day: a dot per day, the threshold visible across
the chart, an x axis of days (not years), every store on one chart while there are few days."""

from __future__ import annotations

import matplotlib.dates as mdates
import pandas as pd
import pytest

from shelfcast.monitor.render import FEW_DAYS, accuracy_figure

pytestmark = pytest.mark.unit


def points(days: int, stores: int = 5) -> pd.DataFrame:
    dates = pd.date_range("2017-03-01", periods=days, freq="D")
    return pd.DataFrame([{"date": d.strftime("%Y-%m-%d"), "store": s, "mape_pct": 10.0 + s + (i % 3),
                          "threshold_pct": 14.0 + s} for s in range(1, stores + 1) for i, d in enumerate(dates)])


def visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_one_live_day_is_one_chart_with_a_dot_and_a_visible_threshold_per_store():
    fig = accuracy_figure(points(1))
    (ax,) = visible(fig)
    low, high = (mdates.num2date(x) for x in ax.get_xlim())
    assert (high - low).total_seconds() <= 1.5 * 86400  # a day, not 2025 to 2029
    lines = {line.get_label(): line for line in ax.get_lines()}
    for store in range(1, 6):
        dots = lines[f"store {store}"]
        assert dots.get_marker() == "o" and len(dots.get_xdata()) == 1
        threshold = lines[f"store {store} threshold"]
        xs = [mdates.date2num(x) for x in threshold.get_xdata()]
        assert min(xs) <= ax.get_xlim()[0] and max(xs) >= ax.get_xlim()[1]  # drawn across the whole chart
        assert set(threshold.get_ydata()) == {14.0 + store}
        assert ax.get_ylim()[1] > 14.0 + store  # and inside the y range
    colours = {lines[f"store {s}"].get_color() for s in range(1, 6)}
    assert len(colours) == 5
    legend = ax.get_legend()
    fig.canvas.draw()
    box, frame = legend.get_window_extent(), ax.get_window_extent()
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_a_month_of_days_is_one_panel_per_store_over_that_month():
    fig = accuracy_figure(points(FEW_DAYS + 16))
    axes = visible(fig)
    assert len(axes) == 5 and [ax.get_title() for ax in axes] == [f"store {s}" for s in range(1, 6)]
    low, high = (mdates.num2date(x) for x in axes[0].get_xlim())
    assert 29 <= (high - low).days <= 31
