"""Numpy-only input building, shared by the trainer and the store device."""

import numpy as np
import pandas as pd
import pytest

from shelfcast.contract.features import InputSpec, build_inputs, calendar_features, fit_profile_factors

pytestmark = pytest.mark.unit


def test_calendar_features_match_pandas_calendar():
    dates = pd.date_range("2015-12-25", "2016-01-10", freq="D")
    features = calendar_features(dates.to_numpy())
    weekday = np.round(np.arctan2(features[:, 0], features[:, 1]) / (2 * np.pi) * 7) % 7
    assert weekday.astype(int).tolist() == dates.day_of_week.tolist()
    yearday = np.round(np.arctan2(features[:, 2], features[:, 3]) / (2 * np.pi) * 365.25) % 365.25
    assert yearday.astype(int).tolist() == (dates.day_of_year - 1).tolist()


def test_input_spec_round_trips_through_a_manifest_dict():
    spec = InputSpec(lookback=28, scaling="window_mean", calendar=True, sales_min=2.0, sales_max=181.0)
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_build_inputs_minmax_known_answer():
    spec = InputSpec(lookback=3, sales_min=0.0, sales_max=10.0)
    x = build_inputs(np.array([[0, 5, 10]]), None, spec)
    assert x.shape == (1, 3, 1)
    np.testing.assert_allclose(x[0, :, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(spec.unscale([0.25], np.array([[0, 5, 10]])), [2.5])


def test_calendar_model_needs_dates():
    spec = InputSpec(lookback=2, scaling="window_mean", calendar=True)
    with pytest.raises(ValueError, match="date of every input day"):
        build_inputs(np.array([[1, 2]]), None, spec)


def test_wrong_window_length_is_refused():
    with pytest.raises(ValueError, match=r"shape \(n, 14\)"):
        build_inputs(np.ones((2, 7)), None, InputSpec())


def test_negative_forecasts_are_clipped_to_zero():
    spec = InputSpec(lookback=2, scaling="window_mean")
    assert spec.unscale([-0.5], np.array([[4, 4]])).tolist() == [0.0]


def _profile_spec(lookback=14):
    weekday = (0.8, 0.9, 1.0, 1.0, 1.0, 1.1, 1.2)
    month = tuple(np.linspace(0.85, 1.15, 12))
    return InputSpec(lookback=lookback, scaling="profile", calendar=True, weekday_factors=weekday, month_factors=month)


def test_profile_scaling_learns_only_the_residual_of_the_profile():
    spec = _profile_spec()
    dates = np.arange(np.datetime64("2017-01-02"), np.datetime64("2017-01-16"))[None, :]  # Monday .. Sunday x 2
    expected = 40.0 * spec.profile(dates)
    x = build_inputs(expected, dates, spec)
    np.testing.assert_allclose(x[0, :, 0], 1.0, rtol=1e-6)  # sales exactly on the profile scale to 1
    np.testing.assert_allclose(spec.level(expected, dates), [40.0])
    # Tomorrow is Monday 2017-01-16: a model output of 1 forecasts the level times Monday's and January's factors.
    np.testing.assert_allclose(spec.unscale([1.0], expected, dates), [40.0 * 0.8 * spec.month_factors[0]])
    y = np.array([30.0])
    np.testing.assert_allclose(spec.unscale(spec.scale_target(y, expected, dates), expected, dates), y)


def test_profile_scaling_needs_dates_and_valid_factors():
    spec = _profile_spec(lookback=2)
    assert spec.needs_dates and not InputSpec().needs_dates
    with pytest.raises(ValueError, match="date of every input day"):
        spec.unscale([1.0], np.array([[4, 4]]))
    with pytest.raises(ValueError, match="7 and month_factors 12 positive"):
        InputSpec(scaling="profile", weekday_factors=(1.0,) * 6)
    with pytest.raises(ValueError, match="positive finite"):
        InputSpec(scaling="profile", month_factors=(1.0,) * 11 + (float("nan"),))


def test_profile_spec_round_trips_through_json_and_old_manifests_still_load():
    import json

    spec = _profile_spec()
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = {"lookback": 56, "scaling": "window_mean", "calendar": True, "sales_min": 0.0, "sales_max": 200.0}
    assert InputSpec.from_dict(old) == InputSpec(lookback=56, scaling="window_mean", calendar=True, sales_max=200.0)


def test_fit_profile_factors_recovers_pooled_weekday_and_month_effects():
    rng = np.random.default_rng(3)
    dates = np.arange(np.datetime64("2014-01-01"), np.datetime64("2016-12-31"))
    spec = _profile_spec()
    sales, day_index, series = [], [], []
    for s, level in enumerate((300.0, 900.0, 2500.0)):  # high counts: Poisson noise well below 1 %
        sales.append(rng.poisson(level * spec.profile(dates)))
        day_index.append(dates)
        series.append(np.full(len(dates), s))
    weekday, month = fit_profile_factors(np.concatenate(sales), np.concatenate(day_index), np.concatenate(series))
    np.testing.assert_allclose(weekday, np.array(spec.weekday_factors) / np.mean(spec.weekday_factors), rtol=0.01)
    np.testing.assert_allclose(month, np.array(spec.month_factors) / np.mean(spec.month_factors), rtol=0.02)
    with pytest.raises(ValueError, match="every weekday"):
        fit_profile_factors(np.ones(5), dates[:5], np.zeros(5))
    # Under a year of history: the months never seen stay neutral, the seen ones still average 1.
    _, partial = fit_profile_factors(sales[0][:200], dates[:200], series[0][:200])
    assert partial[7:] == (1.0,) * 5 and np.mean(partial[:7]) == pytest.approx(1.0)


def test_fit_profile_factors_on_a_rolling_year_that_crosses_new_year():
    """A 365-day window from March to February: its January and February are whole-year months, not months of
    a two-month "year" whose mean they would be divided by (which left them near 1 and forecasts 35 % high)."""
    rng = np.random.default_rng(5)
    spec = _profile_spec()
    dates = np.arange(np.datetime64("2016-03-01"), np.datetime64("2017-03-01"))
    sales = [rng.poisson(level * spec.profile(dates)) for level in (400.0, 1200.0)]
    weekday, month = fit_profile_factors(np.concatenate(sales), np.tile(dates, 2), np.repeat([0, 1], len(dates)))
    np.testing.assert_allclose(month, np.array(spec.month_factors) / np.mean(spec.month_factors), rtol=0.03)
    np.testing.assert_allclose(weekday, np.array(spec.weekday_factors) / np.mean(spec.weekday_factors), rtol=0.01)


def test_make_windows_fits_the_profile_on_every_training_day_including_the_first_inputs():
    """A year of history with 56-day windows: January is only ever an input day, never a target; its factor
    must still be fitted (it was left at 1.0, the neutral month)."""
    import pandas as pd

    from shelfcast.data.windows import SplitSpec, make_windows

    rng = np.random.default_rng(7)
    spec = _profile_spec()
    dates = np.arange(np.datetime64("2016-01-01"), np.datetime64("2017-01-01"))
    frame = pd.concat([pd.DataFrame({"date": pd.to_datetime(dates), "store": 1, "item": item,
                                     "sales": rng.poisson(level * spec.profile(dates))})
                       for item, level in ((1, 500.0), (2, 1500.0))], ignore_index=True)
    windows = make_windows(frame, InputSpec(lookback=56, scaling="profile", calendar=True),
                           SplitSpec(test_fraction=0.1, val_fraction=0.1, reference_lookback=56))
    true_month = np.array(spec.month_factors) / np.mean(spec.month_factors)
    assert windows.spec.month_factors[0] == pytest.approx(true_month[0], rel=0.03)
    assert windows.spec.month_factors[0] != 1.0
