"""Evaluation frames the rules read: one row per (store, item, date) with the actual and each forecast.

Columns: `store, item, date, actual, forecast`, plus optionally `champion_forecast`, `naive_forecast` and
`parent_forecast` (the float model an INT8 model was converted from). Every forecast column of a frame covers
the same rows, so "on the same window" holds by construction.

Also here: forecasts of target days from raw sales history through any window model (the seasonal-naive rule
of `model.baselines`, or a `.tflite` file through the edge runtime), and a champion's expected error per scope,
measured on the holdout it was promoted with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from shelfcast.model.baselines import same_weekday_two_weeks

EVAL_COLUMNS = ["store", "item", "date", "actual", "forecast"]


def require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def ape_pct(actual, forecast) -> np.ndarray:
    """Absolute percentage error per row; NaN where the actual is zero (MAPE leaves those days out)."""
    actual = np.asarray(actual, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    out = np.full(actual.shape, np.nan)
    keep = actual != 0
    out[keep] = np.abs(forecast[keep] - actual[keep]) / np.abs(actual[keep]) * 100
    return out


def history_windows(sales: pd.DataFrame, targets: pd.DataFrame, lookback: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw windows of the `lookback` days before each target (store, item, date).

    Returns (raw_x (n, lookback), input_dates (n, lookback), ok (n,) bool); a target whose window has a missing
    day is marked not ok and its row of raw_x is zero.
    """
    require_columns(sales, ["store", "item", "date", "sales"], "the sales frame")
    wide = sales.pivot_table(index=["store", "item"], columns="date", values="sales", aggfunc="sum")
    dates = pd.DatetimeIndex(targets["date"]).normalize()
    offsets = np.arange(-lookback, 0)
    input_dates = dates.to_numpy()[:, None] + offsets[None, :].astype("timedelta64[D]")
    if wide.empty:
        return np.zeros((len(targets), lookback)), input_dates, np.zeros(len(targets), dtype=bool)
    rows = wide.index.get_indexer(pd.MultiIndex.from_arrays([targets["store"], targets["item"]]))
    full_dates = pd.date_range(wide.columns.min(), wide.columns.max(), freq="D")
    wide = wide.reindex(columns=full_dates)
    cols = full_dates.get_indexer(input_dates.reshape(-1)).reshape(input_dates.shape)
    values = wide.to_numpy(dtype=np.float64)
    ok = (rows >= 0) & (cols >= 0).all(axis=1)
    raw_x = np.zeros((len(targets), lookback))
    raw_x[ok] = values[rows[ok][:, None], cols[ok]]
    ok &= ~np.isnan(raw_x).any(axis=1)
    raw_x[~ok] = 0.0
    return raw_x, input_dates, ok


WindowModel = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (raw_x, input_dates) -> sales forecasts


def forecast_targets(sales: pd.DataFrame, targets: pd.DataFrame, model: WindowModel, lookback: int) -> np.ndarray:
    """Forecasts for each target row from the sales before it; NaN where the history has a gap."""
    raw_x, input_dates, ok = history_windows(sales, targets, lookback)
    out = np.full(len(targets), np.nan)
    if ok.any():
        out[ok] = np.asarray(model(raw_x[ok], input_dates[ok]), dtype=np.float64).reshape(-1)
    return out


def seasonal_naive(sales: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """The mean of the same weekday one and two weeks back (`baselines.same_weekday_two_weeks`) per target."""
    return forecast_targets(sales, targets, lambda raw_x, _dates: same_weekday_two_weeks(raw_x), lookback=14)


def tflite_window_model(model_path, input_spec: dict) -> WindowModel:
    """A `.tflite` forecaster as a window model: scale with its input spec, run in LiteRT, unscale."""
    from shelfcast.contract.runtime import TFLiteForecaster
    from shelfcast.contract.features import InputSpec, build_inputs

    if not input_spec:
        raise ValueError(f"model {model_path}: pass its input spec (the manifest's `input_spec`) to scale its inputs")
    spec = InputSpec.from_dict(input_spec)
    forecaster = TFLiteForecaster(model_path)

    def predict(raw_x: np.ndarray, input_dates: np.ndarray) -> np.ndarray:
        return spec.unscale(forecaster.predict(build_inputs(raw_x, input_dates, spec)), raw_x, input_dates)

    predict.lookback = spec.lookback
    return predict


def evaluation_frame(actuals: pd.DataFrame, forecasts: dict[str, np.ndarray]) -> pd.DataFrame:
    """`actuals` (store, item, date, sales) with one column per named forecast; rows any forecast lacks dropped."""
    require_columns(actuals, ["store", "item", "date", "sales"], "the actuals frame")
    frame = actuals[["store", "item", "date"]].assign(actual=actuals["sales"].to_numpy(dtype=np.float64))
    for name, values in forecasts.items():
        frame[name] = np.asarray(values, dtype=np.float64)
    return frame.dropna().reset_index(drop=True)



def candidate_frame(keys: pd.DataFrame, actual, forecast, *, champion=None, naive=None, parent=None) -> pd.DataFrame:
    """A candidate's evaluation frame from its holdout windows: `keys` (store, item, date of each target, e.g.
    `WindowSet.test_keys`), the actual sales (`y_test`) and each forecast of the same targets. `naive` is the
    seasonal-naive rule on the same windows (`same_weekday_two_weeks(raw_x_test)`), `parent` the float model
    an INT8 candidate was converted from."""
    named = {"forecast": forecast, "champion_forecast": champion, "naive_forecast": naive, "parent_forecast": parent}
    return evaluation_frame(keys.assign(sales=np.asarray(actual)), {k: v for k, v in named.items() if v is not None})


def variant_frames(windows, results) -> dict[str, pd.DataFrame]:
    """Evaluation frames of a night's variants, keyed by variant name, from the night's `WindowSet` and its
    `VariantResult`s: each variant's holdout predictions, the seasonal-naive rule on the same windows, and for
    a converted variant the predictions of its float parent."""
    naive = same_weekday_two_weeks(windows.raw_x_test)
    by_name = {r.name: r for r in results}
    frames = {}
    for result in results:
        if result.status != "ok" or result.predictions is None:
            continue
        parent = by_name.get(result.float_parent) if getattr(result, "float_parent", None) else None
        parent_predictions = parent.predictions if parent is not None and parent.status == "ok" else None
        frames[result.name] = candidate_frame(windows.test_keys, windows.y_test, result.predictions, naive=naive,
                                              parent=parent_predictions)
    return frames

@dataclass
class ExpectedError:
    """A model's error on its holdout, per scope (pooled, store, item, (store, item)): the live baseline.

    Two figures per scope. The expected APE: sales are counts, and the APE of a good forecast of a count scales
    as 1/sqrt(level) (the same model is less accurate in a low month), so the scope keeps c = mean(APE x
    sqrt(forecast)) and a row at forecast f expects c / sqrt(f). The dispersion: the mean squared Pearson
    residual (actual - forecast)^2 / forecast of a healthy model, noise plus its usual misfit; a window whose
    residuals are far more spread than that is not noise. Pearson residuals divide by the forecast, not the
    actual, so a day with 1 sale where 5 were expected is not an outlier the way its 400 % APE is.
    `flat(mape)` is for when only a pooled MAPE is known: every row expects it, the dispersion is unknown.
    """

    mape_pct: float
    chain: tuple[float, float]
    store: dict[int, tuple[float, float]] = field(default_factory=dict)
    item: dict[int, tuple[float, float]] = field(default_factory=dict)
    cohort: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    scaled: bool = True

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, column: str = "forecast") -> "ExpectedError":
        require_columns(frame, ["store", "item", "actual", column], "the holdout frame")
        ape = ape_pct(frame["actual"], frame[column])
        level = _level(frame[column])
        data = frame[["store", "item"]].assign(ape=ape, coef=ape * np.sqrt(level),
                                                 r2=pearson_r2(frame["actual"], frame[column]))
        if data["ape"].isna().all():
            raise ValueError("the holdout frame has no day with sales > 0; its MAPE is undefined")

        def by(keys):
            stats = data.groupby(keys).agg(coef=("coef", "mean"), r2=("r2", "mean"))
            return {k: (float(c), float(d)) for k, c, d in zip(stats.index, stats["coef"], stats["r2"])}

        pooled = (float(data["coef"].mean()), float(data["r2"].mean()))
        return cls(float(data["ape"].mean()), pooled, by("store"), by("item"), by(["store", "item"]))

    @classmethod
    def flat(cls, mape_pct: float) -> "ExpectedError":
        return cls(float(mape_pct), (float(mape_pct), float("nan")), scaled=False)

    def expected_ape(self, kind: str, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Expected APE (%) and the healthy dispersion for each row (store, item, forecast) under scope `kind`."""
        table = {"chain": {}, "store": self.store, "item": self.item, "cohort": self.cohort}[kind]
        if kind == "cohort":
            keys = zip(rows["store"], rows["item"])
        else:
            keys = rows[kind] if kind != "chain" else [None] * len(rows)
        coef = np.array([table.get(k, self.chain) for k in keys], dtype=np.float64).reshape(-1, 2)
        scale = np.sqrt(_level(rows["forecast"])) if self.scaled else 1.0
        # A narrow scope's dispersion comes from few holdout days; one that came out low by chance would make
        # its noise look like evidence, so it is never taken below the pooled one.
        return coef[:, 0] / scale, np.maximum(coef[:, 1], self.chain[1])

    def to_json(self) -> str:
        """Standard JSON (an unknown dispersion is null, not NaN)."""

        def pair(value):
            return [None if not np.isfinite(v) else float(v) for v in value]

        return json.dumps(
            {
                "mape_pct": self.mape_pct,
                "chain": pair(self.chain),
                "scaled": self.scaled,
                "store": {str(k): pair(v) for k, v in self.store.items()},
                "item": {str(k): pair(v) for k, v in self.item.items()},
                "cohort": {f"{s}/{i}": pair(v) for (s, i), v in self.cohort.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "ExpectedError":
        data = json.loads(text)

        def pair(value):
            return tuple(float("nan") if v is None else float(v) for v in value)

        def pairs(table, key):
            return {key(k): pair(v) for k, v in table.items()}

        return cls(
            float(data["mape_pct"]),
            pair(data["chain"]),
            pairs(data.get("store", {}), int),
            pairs(data.get("item", {}), int),
            pairs(data.get("cohort", {}), lambda k: tuple(int(p) for p in k.split("/"))),
            bool(data.get("scaled", True)),
        )


def pearson_r2(actual, forecast) -> np.ndarray:
    """Squared Pearson residual of a count: (actual - forecast)^2 / forecast, the forecast floored at one sale."""
    actual = np.asarray(actual, dtype=np.float64)
    return (actual - np.asarray(forecast, dtype=np.float64)) ** 2 / _level(forecast)


def _level(forecast) -> np.ndarray:
    """Forecast as the sales level for noise scaling, floored at one sale."""
    return np.maximum(np.asarray(forecast, dtype=np.float64), 1.0)
