"""Peers a retail data scientist would fit on a server instead of shelfcast's edge model, on the same windows.

- `GLMProfile`: a multiplicative profile fitted properly, as a Poisson GLM with a log link: series level x
  pooled weekday x pooled month x a quadratic trend in time, by maximum likelihood, then one factor that makes
  the Poisson mean MAPE-optimal on the training period.
- `LightGBMPeer`: a global LightGBM model on a window-normalised target (next day / the window's mean), with
  lag, rolling-mean and calendar features, trained with an L1 loss weighted by 1 / target (exactly MAPE on the
  normalised scale) and early-stopped on the last slice of the training period.

Both are fitted on the training windows only and scored on the test windows every model is scored on. Their
`save` writes the model file whose bytes the benchmark reports. `lightgbm` is in the `bench` extra only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PEER_LOOKBACK = 56  # days of history the LightGBM peer reads, as the edge configuration does


def _calendar(dates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = pd.DatetimeIndex(dates)
    return index.day_of_week.to_numpy(), index.month.to_numpy() - 1, index.day_of_year.to_numpy()


def mape_optimal_factor(y: np.ndarray, forecast: np.ndarray) -> float:
    """The single multiplier of `forecast` that minimises MAPE on (y, forecast): a 1/y-weighted median."""
    keep = (y > 0) & (forecast > 0)
    ratio, weight = y[keep] / forecast[keep], 1.0 / y[keep]
    order = np.argsort(ratio)
    cdf = np.cumsum(weight[order]) / weight.sum()
    return float(ratio[order][np.searchsorted(cdf, 0.5)])


@dataclass
class GLMProfile:
    """log E[sales] = series level + weekday + month + b1 t + b2 t^2 (t in years from the training mid-point)."""

    series: np.ndarray  # series keys, store * 1e6 + item
    series_log_level: np.ndarray
    weekday: np.ndarray  # 7 log effects, Monday first, mean 0
    month: np.ndarray  # 12 log effects, mean 0
    trend: np.ndarray  # (b1, b2)
    t0: float
    mape_factor: float = 1.0
    fit_seconds: float = 0.0

    @property
    def n_params(self) -> int:
        """Free parameters: one level per series, 6 weekday, 11 month, 2 trend, the MAPE factor."""
        return len(self.series) + 6 + 11 + 2 + 1

    @staticmethod
    def _keys(keys: pd.DataFrame) -> np.ndarray:
        return keys["store"].to_numpy().astype(np.int64) * 1_000_000 + keys["item"].to_numpy().astype(np.int64)

    def _t(self, keys: pd.DataFrame) -> np.ndarray:
        days = pd.DatetimeIndex(keys["date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
        return days / 365.25 - self.t0

    @classmethod
    def fit(cls, keys: pd.DataFrame, sales: np.ndarray, rounds: int = 30) -> "GLMProfile":
        """Poisson maximum likelihood: for the categorical effects the score equations are margins (fitted sales
        equal observed sales per level), solved by proportional updates; the trend by Newton steps between."""
        start = time.perf_counter()
        y = np.asarray(sales, dtype=np.float64)
        ids = cls._keys(keys)
        series, s_index = np.unique(ids, return_inverse=True)
        weekday, month, _ = _calendar(keys["date"])
        days = pd.DatetimeIndex(keys["date"]).to_numpy().astype("datetime64[D]").astype(np.int64) / 365.25
        t0 = float(days.mean())
        t = days - t0
        level = np.log(np.bincount(s_index, y) / np.bincount(s_index))
        w, m, b = np.zeros(7), np.zeros(12), np.zeros(2)
        for _ in range(rounds):
            for effect, index, size in ((level, s_index, len(series)), (w, weekday, 7), (m, month, 12)):
                mu = np.exp(level[s_index] + w[weekday] + m[month] + b[0] * t + b[1] * t * t)
                effect += np.log(np.bincount(index, y, size) / np.bincount(index, mu, size))
            mu = np.exp(level[s_index] + w[weekday] + m[month] + b[0] * t + b[1] * t * t)
            design = np.stack([t, t * t], axis=1)
            gradient = design.T @ (y - mu)
            hessian = design.T @ (design * mu[:, None])
            b = b + np.linalg.solve(hessian, gradient)
        # Identify the effects: weekday and month average 0, the series levels absorb their means.
        level = level + w.mean() + m.mean()
        w, m = w - w.mean(), m - m.mean()
        model = cls(series, level, w, m, b, t0)
        model.mape_factor = mape_optimal_factor(y, model.mean(keys))
        model.fit_seconds = time.perf_counter() - start
        return model

    def mean(self, keys: pd.DataFrame) -> np.ndarray:
        ids = self._keys(keys)
        position = np.searchsorted(self.series, ids)
        known = (position < len(self.series)) & (self.series[np.minimum(position, len(self.series) - 1)] == ids)
        if not known.all():
            raise ValueError("the GLM profile has no level for some series; fit it on their history first")
        weekday, month, _ = _calendar(keys["date"])
        t = self._t(keys)
        return np.exp(self.series_log_level[position] + self.weekday[weekday] + self.month[month]
                      + self.trend[0] * t + self.trend[1] * t * t)

    def predict(self, keys: pd.DataFrame) -> np.ndarray:
        return self.mean(keys) * self.mape_factor

    def save(self, path: Path) -> Path:
        """Every parameter as float32, the series keys as int64: what a server would have to keep."""
        np.savez(path, series=self.series, params=np.concatenate([
            self.series_log_level, self.weekday, self.month, self.trend, [self.t0, self.mape_factor]]).astype(np.float32))
        return Path(f"{path}.npz") if not str(path).endswith(".npz") else Path(path)


def lgbm_features(raw_x: np.ndarray, target_dates) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features from raw windows (n, >= 56 days) and their target dates; returns (features, level, names).

    Every sales feature is divided by the window's mean (the level), so one model serves every series.
    """
    raw_x = np.asarray(raw_x, dtype=np.float64)[:, -PEER_LOOKBACK:]
    if raw_x.shape[1] < PEER_LOOKBACK:
        raise ValueError(f"the LightGBM peer reads {PEER_LOOKBACK} days of history, the windows hold {raw_x.shape[1]}")
    level = np.maximum(raw_x.mean(axis=1), 1.0)
    scaled = raw_x / level[:, None]
    columns, names = [], []
    for lag in (*range(1, 15), 21, 28, 35, 42, 49, 56):
        columns.append(scaled[:, -lag])
        names.append(f"lag{lag}")
    for days in (7, 14, 28):
        columns.append(scaled[:, -days:].mean(axis=1))
        names.append(f"mean{days}")
    columns.append(scaled[:, -PEER_LOOKBACK::7].mean(axis=1))  # the target's weekday, eight weeks
    names.append("same_weekday_mean8")
    columns.append(scaled[:, -28:].mean(axis=1) - scaled[:, :28].mean(axis=1))
    names.append("level_change")
    weekday, month, yearday = _calendar(target_dates)
    columns += [weekday, month, yearday, np.log(level)]
    names += ["weekday", "month", "day_of_year", "log_level"]
    return np.stack(columns, axis=1).astype(np.float32), level, names


@dataclass
class LightGBMPeer:
    booster: object
    fit_seconds: float
    best_iteration: int
    params: dict = field(default_factory=dict)

    PARAMS = {
        "objective": "l1", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 100,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
        "num_threads": 2, "seed": 0, "deterministic": True, "verbose": -1,
    }

    @classmethod
    def fit(cls, raw_x: np.ndarray, y: np.ndarray, target_dates, n_fit: int, max_rounds: int = 2000) -> "LightGBMPeer":
        """Train on the first `n_fit` rows, early-stop on the rest (the chronologically last training slice)."""
        import lightgbm

        start = time.perf_counter()
        features, level, names = lgbm_features(raw_x, target_dates)
        target = np.asarray(y, dtype=np.float64) / level
        keep = target > 0  # MAPE leaves zero-sales days out, and 1/target would be infinite
        fit_rows = np.zeros(len(target), dtype=bool)
        fit_rows[:n_fit] = True
        datasets = [
            lightgbm.Dataset(features[rows & keep], target[rows & keep], weight=1.0 / target[rows & keep],
                             feature_name=names, categorical_feature=["weekday", "month"], free_raw_data=True)
            for rows in (fit_rows, ~fit_rows)
        ]
        booster = lightgbm.train(
            cls.PARAMS, datasets[0], num_boost_round=max_rounds, valid_sets=[datasets[1]],
            callbacks=[lightgbm.early_stopping(100, verbose=False)],
        )
        return cls(booster, time.perf_counter() - start, int(booster.best_iteration), dict(cls.PARAMS))

    def predict(self, raw_x: np.ndarray, target_dates) -> np.ndarray:
        features, level, _ = lgbm_features(raw_x, target_dates)
        return np.maximum(self.booster.predict(features, num_iteration=self.best_iteration), 0.0) * level

    @property
    def n_leaves(self) -> int:
        """Leaf values over the trees kept: the fitted numbers a server stores (splits not counted)."""
        trees = self.booster.dump_model(num_iteration=self.best_iteration)["tree_info"]
        return int(sum(tree["num_leaves"] for tree in trees))

    def save(self, path: Path) -> Path:
        self.booster.save_model(str(path), num_iteration=self.best_iteration)
        return Path(path)


def peer_rows(windows, n_fit: int, workdir: Path) -> list[dict]:
    """Fit both peers on `windows`' training period and score them on its test windows.

    `windows` must hold at least `PEER_LOOKBACK` days; `n_fit` is how many of its training windows are the fit
    slice (the rest, the validation slice, early-stops LightGBM). Model bytes are those of the saved files.
    """
    from shelfcast.model.metrics import score

    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    glm = GLMProfile.fit(windows.train_keys, windows.y_train_raw)
    glm_file = glm.save(workdir / "glm-profile.npz")
    rows.append({
        "name": "multiplicative profile GLM (series x weekday x month x quadratic trend, Poisson)",
        "kind": "peer", "key": "glm_profile", "params": glm.n_params, "model_bytes": glm_file.stat().st_size,
        "fit_seconds": glm.fit_seconds, **score(windows.y_test, glm.predict(windows.test_keys)).as_dict(),
    })
    train_dates = pd.DatetimeIndex(windows.train_keys["date"])
    lgbm = LightGBMPeer.fit(windows.raw_x_train, windows.y_train_raw, train_dates, n_fit)
    lgbm_file = lgbm.save(workdir / "lightgbm.txt")
    predictions = lgbm.predict(windows.raw_x_test, pd.DatetimeIndex(windows.test_keys["date"]))
    rows.append({
        "name": "LightGBM global (MAPE-matched, window-normalised target, lags + rolling means + calendar)",
        "kind": "peer", "key": "lightgbm", "params": lgbm.n_leaves, "model_bytes": lgbm_file.stat().st_size,
        "fit_seconds": lgbm.fit_seconds, "trees": lgbm.best_iteration,
        **score(windows.y_test, predictions).as_dict(),
    })
    return rows

