"""Windows: counts, chronological split, scaling fitted on training windows only."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shelfcast.data.schema import load_sales
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.windows import SplitSpec, make_windows
from shelfcast.contract.errors import SalesSchemaError
from shelfcast.contract.features import InputSpec, build_inputs

pytestmark = pytest.mark.unit

KAGGLE_ZIP = Path(__file__).resolve().parents[4] / "shared" / "data" / "demand-forecasting-kernels-only.zip"


def _article_panel() -> pd.DataFrame:
    """Stores 1-5 x items 1-10 over 2013-2017: the real data when present, otherwise synthetic of the same shape."""
    if KAGGLE_ZIP.exists():
        return load_sales(KAGGLE_ZIP, stores=list(range(1, 6)), items=list(range(1, 11)))
    return generate_sales(stores=5, items=10, seed=0)


def test_article_split_gives_72450_train_and_18150_test_windows():
    windows = make_windows(_article_panel())
    assert windows.n_train == 72_450
    assert windows.n_test == 18_150
    # The validation slice for early stopping comes from the training period.
    assert len(windows.x_val) == 50 * round(0.1 * 1449)


def test_split_is_chronological_per_series():
    frame = generate_sales(stores=1, items=2, start="2016-01-01", end="2016-04-30", seed=1)  # 121 days
    windows = make_windows(frame)
    for (store, item), test in windows.test_keys.groupby(["store", "item"]):
        train = windows.train_keys[(windows.train_keys.store == store) & (windows.train_keys.item == item)]
        assert train["date"].max() < test["date"].min()
        assert len(train) == int(np.floor(0.8 * (121 - 14)))


def test_longer_lookback_keeps_the_same_test_days():
    frame = generate_sales(stores=1, items=2, start="2016-01-01", end="2016-12-31", seed=1)
    short = make_windows(frame, InputSpec(lookback=14))
    long = make_windows(frame, InputSpec(lookback=28))
    pd.testing.assert_frame_equal(short.test_keys, long.test_keys)
    assert long.n_train == short.n_train - 2 * 14


def test_minmax_scaling_uses_training_windows_only():
    frame = generate_sales(stores=1, items=1, start="2016-01-01", end="2016-12-31", seed=1)
    # A spike in the test period must not change the scaling.
    spiked = frame.copy()
    spiked.loc[spiked.index[-5], "sales"] = 10_000
    a, b = make_windows(frame), make_windows(spiked)
    assert a.spec.sales_max == b.spec.sales_max < 10_000
    assert a.x_train.min() >= 0 and a.x_train.max() <= 1
    # Unscaling the scaled targets returns the raw sales.
    np.testing.assert_allclose(a.spec.unscale(a.spec.scale_target(a.y_test, a.raw_x_test), a.raw_x_test), a.y_test)


def test_window_mean_scaling_and_calendar_features():
    frame = generate_sales(stores=1, items=1, start="2016-01-01", end="2016-03-31", seed=2)
    windows = make_windows(frame, InputSpec(scaling="window_mean", calendar=True))
    assert windows.x_train.shape[2] == 5
    # Each window's sales channel has mean 1 (divided by its own mean level).
    np.testing.assert_allclose(windows.x_test[:, :, 0].mean(axis=1), 1.0, rtol=1e-5)


def test_gap_in_a_series_is_a_clear_error():
    frame = generate_sales(stores=1, items=1, start="2016-01-01", end="2016-03-31", seed=2)
    frame = frame[frame["date"] != "2016-02-10"]
    with pytest.raises(SalesSchemaError, match="store 1 item 1: 1 missing day.*2016-02-10"):
        make_windows(frame)


def test_invalid_split_is_refused():
    with pytest.raises(ValueError):
        SplitSpec(test_fraction=1.2)


def test_profile_windows_fit_factors_on_training_days_and_round_trip_the_targets():
    frame = generate_sales(stores=2, items=2, start="2014-01-01", end="2016-12-31", seed=5)
    windows = make_windows(frame, InputSpec(lookback=56, scaling="profile", calendar=True))
    spec = windows.spec
    assert spec.weekday_factors != (1.0,) * 7 and np.mean(spec.weekday_factors) == pytest.approx(1.0)
    # The factors come from training days only: changing test-period sales leaves them unchanged.
    test_start = windows.test_keys["date"].min()
    shifted = frame.assign(sales=np.where(frame["date"] >= test_start, frame["sales"] * 3, frame["sales"]))
    assert make_windows(shifted, InputSpec(lookback=56, scaling="profile", calendar=True)).spec == spec
    x = build_inputs(windows.raw_x_test, windows.test_input_dates, spec)
    np.testing.assert_array_equal(x, windows.x_test)
    scaled = spec.scale_target(windows.y_test, windows.raw_x_test, windows.test_input_dates)
    np.testing.assert_allclose(windows.predict_sales(scaled), windows.y_test, atol=1e-9)
