"""The synthetic generator has the structure of the Kaggle data and is deterministic by seed."""

import numpy as np
import pytest

from shelfcast.data.synthetic import WEEKDAY_PROFILE, generate_sales

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def frame():
    return generate_sales(stores=3, items=4, start="2014-01-01", end="2016-12-31", seed=3)


def test_schema_and_size(frame):
    assert list(frame.columns) == ["date", "store", "item", "sales"]
    assert len(frame) == 3 * 4 * 1096
    assert frame["sales"].min() >= 0 and frame["sales"].dtype == np.int64


def test_same_seed_same_frame_other_seed_other_frame():
    a = generate_sales(stores=2, items=2, start="2016-01-01", end="2016-03-01", seed=5)
    b = generate_sales(stores=2, items=2, start="2016-01-01", end="2016-03-01", seed=5)
    c = generate_sales(stores=2, items=2, start="2016-01-01", end="2016-03-01", seed=6)
    assert a.equals(b) and not a.equals(c)


def test_poisson_noise_variance_over_mean_near_one(frame):
    # Around the multiplicative mean (series x weekday x month of each year), residual variance ~ mean.
    frame = frame.assign(weekday=frame["date"].dt.day_of_week, month=frame["date"].dt.to_period("M"))
    group = frame.groupby(["store", "item", "month", "weekday"])["sales"]
    ratio = (group.var() / group.mean()).median()
    assert 0.8 < ratio < 1.25


def test_weekday_profile_is_recovered(frame):
    per_weekday = frame.groupby(frame["date"].dt.day_of_week)["sales"].mean()
    profile = per_weekday / per_weekday.mean()
    expected = WEEKDAY_PROFILE / WEEKDAY_PROFILE.mean()
    np.testing.assert_allclose(profile.to_numpy(), expected, atol=0.03)
    assert profile.idxmax() == 6 and profile.idxmin() == 0  # Sunday busiest, Monday quietest
