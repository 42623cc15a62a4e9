"""Zero-parameter rules and the profile peer, with known answers."""

import numpy as np
import pytest

from shelfcast.data.synthetic import generate_sales
from shelfcast.data.windows import make_windows
from shelfcast.model.baselines import ProfileModel, noise_floor, same_weekday_last_week, same_weekday_two_weeks
from shelfcast.model.metrics import mape_pct

pytestmark = pytest.mark.unit


def test_seasonal_rules_pick_the_right_lags():
    history = np.arange(1, 15)[None, :]  # day 1 .. day 14; tomorrow is day 15
    assert same_weekday_last_week(history).tolist() == [8.0]  # day 8
    assert same_weekday_two_weeks(history).tolist() == [(8 + 1) / 2]  # days 8 and 1


def test_profile_model_beats_seasonal_rules_and_floor_is_below_all():
    windows = make_windows(generate_sales(stores=2, items=3, start="2014-01-01", end="2016-12-31", seed=4))
    profile = ProfileModel.fit(windows.train_keys, windows.y_train_raw)
    profile_mape = mape_pct(windows.y_test, profile.predict(windows.test_keys))
    rule_mape = mape_pct(windows.y_test, same_weekday_two_weeks(windows.raw_x_test))
    floor = noise_floor(windows.test_keys, windows.y_test)
    assert floor["mape_pct_true_mean"] < profile_mape < rule_mape
    assert floor["mape_pct_mape_optimal"] < floor["mape_pct_true_mean"]
    assert 0.85 < floor["residual_variance_over_mean"] < 1.15  # Poisson around the mean
    assert profile.trend > 0  # the generator grows every year


def test_profile_trend_ignores_a_few_days_of_a_new_year_on_a_wide_panel():
    # 60 series: 5 days of 2017 are 300 rows, but not a whole year; the trend must come from 2015-2016 only.
    frame = generate_sales(stores=6, items=10, start="2015-01-01", end="2017-01-05", seed=9)
    wide = ProfileModel.fit(frame[["store", "item", "date"]], frame["sales"].to_numpy())
    whole = frame[frame["date"] < "2017-01-01"]
    reference = ProfileModel.fit(whole[["store", "item", "date"]], whole["sales"].to_numpy())
    assert wide.trend == pytest.approx(reference.trend, rel=1e-9)
