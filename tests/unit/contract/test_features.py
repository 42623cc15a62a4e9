"""Numpy-only input building, shared by the trainer and the store device."""

import numpy as np
import pandas as pd
import pytest

from shelfcast.contract.features import InputSpec, build_inputs, calendar_features

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
