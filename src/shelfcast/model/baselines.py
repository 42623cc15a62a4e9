"""Forecasts a careful analyst would make without a neural network, on the same windows.

- `same_weekday_last_week`: lag 7 (zero parameters).
- `same_weekday_two_weeks`: mean of lags 7 and 14 (zero parameters, the article's real competitor).
- `ProfileModel`: store-item level x weekday x month x yearly trend, fitted on the training period only.
- `noise_floor`: the error of a forecast that knows the true mean, estimated from the test period itself;
  no model can be expected to beat it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def same_weekday_last_week(raw_x: np.ndarray) -> np.ndarray:
    return raw_x[:, -7].astype(np.float64)


def same_weekday_two_weeks(raw_x: np.ndarray) -> np.ndarray:
    if raw_x.shape[1] < 14:
        raise ValueError("the two-week rule needs at least 14 days of history")
    return (raw_x[:, -7].astype(np.float64) + raw_x[:, -14]) / 2


def _design(keys: pd.DataFrame) -> pd.DataFrame:
    dates = pd.DatetimeIndex(keys["date"])
    return pd.DataFrame(
        {
            "series": keys["store"].astype(str).values + "-" + keys["item"].astype(str).values,
            "weekday": dates.day_of_week,
            "month": dates.month,
            "year": dates.year + (dates.day_of_year - 1) / 365.25,
        }
    )


@dataclass
class ProfileModel:
    """Multiplicative profile: level(series) x weekday x month x exp(trend * year), fitted by ratios of means."""

    series_level: pd.Series
    weekday: pd.Series
    month: pd.Series
    trend: float
    year0: float

    @classmethod
    def fit(cls, keys: pd.DataFrame, sales: np.ndarray) -> "ProfileModel":
        design = _design(keys).assign(sales=np.asarray(sales, dtype=np.float64))
        year = design["year"].astype(int)
        yearly = design.groupby(year)["sales"].mean()
        # Log-linear trend over (nearly) whole years only: a few days of a new year would bend it.
        days_per_year = pd.Series(pd.DatetimeIndex(keys["date"]).normalize(), index=design.index).groupby(year).nunique()
        yearly = yearly[days_per_year >= 300]
        if len(yearly) >= 2:
            trend = float(np.polyfit(yearly.index.to_numpy() + 0.5, np.log(yearly.to_numpy()), 1)[0])
        else:
            trend = 0.0
        year0 = float(design["year"].mean())
        detrended = design["sales"] / np.exp(trend * (design["year"] - year0))
        design = design.assign(detrended=detrended)
        overall = design["detrended"].mean()
        weekday = design.groupby("weekday")["detrended"].mean() / overall
        month = design.groupby("month")["detrended"].mean() / overall
        # Each series' level after removing calendar effects.
        calendar = weekday.reindex(design["weekday"]).to_numpy() * month.reindex(design["month"]).to_numpy()
        level = (design["detrended"] / calendar).groupby(design["series"]).mean()
        return cls(level, weekday, month, trend, year0)

    def predict(self, keys: pd.DataFrame) -> np.ndarray:
        design = _design(keys)
        level = self.series_level.reindex(design["series"]).to_numpy()
        if np.isnan(level).any():
            raise ValueError("the profile model has no level for some series; fit it on their history first")
        return (
            level
            * self.weekday.reindex(design["weekday"]).to_numpy()
            * self.month.reindex(design["month"]).to_numpy()
            * np.exp(self.trend * (design["year"].to_numpy() - self.year0))
        )


def noise_floor(keys: pd.DataFrame, sales: np.ndarray) -> dict:
    """Estimate the best achievable error on a period whose sales are Poisson around a multiplicative mean.

    The mean is fitted on the period itself (series x weekday x month), so it is an oracle no forecast made
    before the period can match; its MAPE is the floor. The MAPE-optimal forecast of a Poisson count is below
    its mean, so the floor is also reported for that forecast (the median of the MAPE loss, found per day
    numerically from the Poisson distribution).
    """
    design = _design(keys).assign(sales=np.asarray(sales, dtype=np.float64))
    design["series_month"] = design["series"] + "/" + design["month"].astype(str)
    overall = design["sales"].mean()
    weekday = design.groupby("weekday")["sales"].mean() / overall
    w = weekday.reindex(design["weekday"]).to_numpy()
    level = (design["sales"] / w).groupby(design["series_month"]).transform("mean").to_numpy()
    mean = level * w
    y = design["sales"].to_numpy()
    keep = y > 0
    floor_mean = float(np.mean(np.abs(mean[keep] - y[keep]) / y[keep]) * 100)
    variance_ratio = float(np.mean((y - mean) ** 2) / np.mean(mean))
    optimal = _mape_optimal_poisson(mean)
    floor_optimal = float(np.mean(np.abs(optimal[keep] - y[keep]) / y[keep]) * 100)
    return {
        "mape_pct_true_mean": floor_mean,
        "mape_pct_mape_optimal": floor_optimal,
        "residual_variance_over_mean": variance_ratio,
        "method": "oracle multiplicative mean (series x month level, weekday profile) fitted on the test "
        "period itself; MAPE-optimal = weighted median of the Poisson with weights 1/y",
    }


def _mape_optimal_poisson(mean: np.ndarray) -> np.ndarray:
    """For Poisson(mean), the forecast minimising E|f - Y|/Y over Y>0 is the median of the 1/y-weighted law."""
    from scipy.stats import poisson

    out = np.empty_like(mean)
    unique, inverse = np.unique(np.round(mean, 1), return_inverse=True)
    for idx, lam in enumerate(unique):
        ys = np.arange(1, int(lam + 10 * np.sqrt(lam) + 20))
        weights = poisson.pmf(ys, lam) / ys
        cdf = np.cumsum(weights) / weights.sum()
        out[inverse == idx] = ys[np.searchsorted(cdf, 0.5)]
    return out
