"""The peers of the benchmark: a Poisson GLM profile and a global LightGBM, with known answers where they exist."""

import numpy as np
import pandas as pd
import pytest

from shelfcast.contract.features import InputSpec
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.windows import make_windows
from shelfcast.model.baselines import noise_floor, same_weekday_two_weeks
from shelfcast.model.metrics import mape_pct
from shelfcast.model.peers import GLMProfile, LightGBMPeer, lgbm_features, mape_optimal_factor, peer_rows

pytestmark = pytest.mark.unit


def _panel(weekday, month, levels, b1, days=3 * 365, seed=0):
    dates = pd.date_range("2014-01-01", periods=days, freq="D")
    rng = np.random.default_rng(seed)
    t = dates.to_numpy().astype("datetime64[D]").astype(np.int64) / 365.25
    t = t - t.mean()
    frames = []
    for item, level in enumerate(levels, start=1):
        mean = level * np.exp(weekday[dates.day_of_week] + month[dates.month - 1] + b1 * t)
        frames.append(pd.DataFrame({"store": 1, "item": item, "date": dates, "sales": rng.poisson(mean)}))
    return pd.concat(frames, ignore_index=True)


def test_glm_profile_recovers_known_effects_by_maximum_likelihood():
    weekday = np.log([0.8, 0.9, 0.95, 1.0, 1.05, 1.2, 1.3])
    weekday -= weekday.mean()
    month = np.log(np.linspace(0.8, 1.2, 12))
    month -= month.mean()
    frame = _panel(weekday, month, levels=[30.0, 80.0, 200.0], b1=0.08)
    glm = GLMProfile.fit(frame[["store", "item", "date"]], frame["sales"].to_numpy())
    np.testing.assert_allclose(glm.weekday, weekday, atol=0.01)
    np.testing.assert_allclose(glm.month, month, atol=0.02)
    assert glm.trend[0] == pytest.approx(0.08, abs=0.01) and abs(glm.trend[1]) < 0.01
    # Poisson score equations: fitted and observed totals agree per series.
    fitted = glm.mean(frame[["store", "item", "date"]])
    totals = frame.assign(fit=fitted).groupby("item")[["sales", "fit"]].sum()
    np.testing.assert_allclose(totals["fit"], totals["sales"], rtol=1e-3)
    assert glm.n_params == 3 + 6 + 11 + 2 + 1


def test_glm_profile_refuses_an_unknown_series():
    frame = _panel(np.zeros(7), np.zeros(12), levels=[20.0], b1=0.0, days=400)
    glm = GLMProfile.fit(frame[["store", "item", "date"]], frame["sales"].to_numpy())
    with pytest.raises(ValueError, match="no level for some series"):
        glm.predict(pd.DataFrame({"store": [9], "item": [9], "date": [pd.Timestamp("2015-03-01")]}))


def test_mape_optimal_factor_is_the_weighted_median_of_the_ratios():
    y = np.array([1.0, 2.0, 4.0])
    forecast = np.array([2.0, 2.0, 2.0])  # ratios 0.5, 1, 2 with weights 1, 1/2, 1/4
    assert mape_optimal_factor(y, forecast) == 0.5
    factor = mape_optimal_factor(y, forecast)
    assert mape_pct(y, forecast * factor) <= min(mape_pct(y, forecast * f) for f in np.linspace(0.3, 2.5, 45))


def test_lgbm_features_known_answer():
    raw = np.tile(np.arange(1.0, 57.0), (2, 1))
    raw[1] *= 3
    features, level, names = lgbm_features(raw, pd.DatetimeIndex(["2017-01-02", "2017-06-15"]))
    assert level.tolist() == [28.5, 85.5]
    row = dict(zip(names, features[0]))
    assert row["lag1"] == pytest.approx(56 / 28.5) and row["lag56"] == pytest.approx(1 / 28.5)
    assert row["mean7"] == pytest.approx(np.mean(np.arange(50, 57)) / 28.5)
    assert row["same_weekday_mean8"] == pytest.approx(np.mean(np.arange(1, 57, 7)) / 28.5)
    assert row["weekday"] == 0 and row["month"] == 0 and dict(zip(names, features[1]))["month"] == 5
    np.testing.assert_allclose(features[0, :-4], features[1, :-4], rtol=1e-6)  # the level is divided out
    with pytest.raises(ValueError, match="56 days of history"):
        lgbm_features(raw[:, :14], pd.DatetimeIndex(["2017-01-02", "2017-06-15"]))


def test_peers_fit_on_training_windows_beat_the_two_week_rule(tmp_path):
    frame = generate_sales(stores=2, items=3, start="2014-01-01", end="2016-12-31", seed=4)
    windows = make_windows(frame, InputSpec(lookback=56, scaling="window_mean"))
    rows = {r["key"]: r for r in peer_rows(windows, len(windows.x_train), tmp_path)}
    rule = mape_pct(windows.y_test, same_weekday_two_weeks(windows.raw_x_test))
    floor = noise_floor(windows.test_keys, windows.y_test)["mape_pct_mape_optimal"]
    for key in ("glm_profile", "lightgbm"):
        row = rows[key]
        assert row["kind"] == "peer" and floor < row["mape_pct"] < rule
        assert row["model_bytes"] > 0 and row["fit_seconds"] > 0 and row["n"] == windows.n_test
    assert rows["lightgbm"]["model_bytes"] == (tmp_path / "lightgbm.txt").stat().st_size
    assert rows["glm_profile"]["model_bytes"] == (tmp_path / "glm-profile.npz").stat().st_size
