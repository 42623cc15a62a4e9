"""Supervised windows: `lookback` days in, the next day out, split chronologically per series.

Each series contributes `T - lookback` windows. For 14-day windows the first `floor((1 - test_fraction) * n)`
are training windows and the rest test windows; longer windows keep the same first test day (stores 1-5 x items 1-10 of the Kaggle data give 72,450 / 18,150). The last
`val_fraction` of each series' training windows is the validation slice for early stopping. Scaling is
fitted on training windows only and travels with the model (`InputSpec`), so a store scales raw sales the
same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from shelfcast.contract.errors import SalesSchemaError
from shelfcast.contract.features import InputSpec, build_inputs, fit_profile_factors


@dataclass(frozen=True)
class SplitSpec:
    """Chronological split. The boundary is placed where it falls for `reference_lookback`-day windows, so
    models with longer history are scored on exactly the same test days as the article's 14-day windows."""

    test_fraction: float = 0.2
    val_fraction: float = 0.1
    reference_lookback: int = 14

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1 or not 0 <= self.val_fraction < 1:
            raise ValueError(f"invalid split {self}")


@dataclass
class WindowSet:
    """Scaled model arrays plus the raw windows and keys every evaluation needs."""

    spec: InputSpec
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    raw_x_test: np.ndarray
    y_test: np.ndarray  # raw sales
    test_keys: pd.DataFrame  # store, item, date of each test target
    raw_x_train: np.ndarray = field(repr=False, default=None)  # fit + validation windows, raw
    y_train_raw: np.ndarray = field(repr=False, default=None)
    train_keys: pd.DataFrame = field(repr=False, default=None)
    test_input_dates: np.ndarray = field(repr=False, default=None)  # (n_test, lookback) datetime64[D]
    skipped_series: list = field(repr=False, default_factory=list)  # (store, item, days) too short to train on
    calibration_scale: float = 1.0  # below 1 only in a fault drill: INT8 calibrated on too narrow a range

    @property
    def n_train(self) -> int:
        return len(self.x_train) + len(self.x_val)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def predict_sales(self, y_scaled: np.ndarray) -> np.ndarray:
        """Scaled test predictions back to sales."""
        return self.spec.unscale(y_scaled, self.raw_x_test, self.test_input_dates)

    def calibration_inputs(self, n: int = 512, seed: int = 0) -> np.ndarray:
        """A random sample of training inputs for INT8 calibration."""
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(self.x_train), size=min(n, len(self.x_train)), replace=False)
        return self.x_train[np.sort(pick)] * np.float32(self.calibration_scale)


def _series_windows(frame: pd.DataFrame, lookback: int):
    """Yield (store, item, dates, windows) per series; raises on gaps in a series' dates."""
    for (store, item), part in frame.groupby(["store", "item"], sort=True):
        part = part.sort_values("date")
        dates = pd.DatetimeIndex(part["date"])
        expected = pd.date_range(dates[0], dates[-1], freq="D")
        if len(expected) != len(dates):
            missing = expected.difference(dates)
            raise SalesSchemaError(
                f"store {store} item {item}: {len(missing)} missing day(s) starting {missing[0].date()}; "
                "windows need consecutive days - backfill the gap or drop the series"
            )
        if len(dates) <= lookback + 1:
            raise SalesSchemaError(
                f"store {store} item {item}: {len(dates)} days of history, need more than {lookback + 1}"
            )
        yield store, item, dates.to_numpy(), sliding_window_view(part["sales"].to_numpy(), lookback + 1)


def make_windows(frame: pd.DataFrame, spec: InputSpec = InputSpec(), split: SplitSpec = SplitSpec()) -> WindowSet:
    """Cut every series into windows, split each chronologically, fit scaling on training windows only.

    The returned `WindowSet.spec` is `spec` with its scaling parameters filled in from the training windows.
    """
    parts = ("fit", "val", "test")
    raw = {p: [] for p in parts}
    dates = {p: [] for p in parts}
    keys = {p: [] for p in parts}
    for store, item, series_dates, windows in _series_windows(frame, spec.lookback):
        n = len(windows)
        n_reference = len(series_dates) - split.reference_lookback
        first_test_day = split.reference_lookback + int(np.floor((1 - split.test_fraction) * n_reference))
        n_train = first_test_day - spec.lookback  # window k predicts day k + lookback
        if n_train < 2:
            raise SalesSchemaError(
                f"store {store} item {item}: {len(series_dates)} days leave no training windows of {spec.lookback} days"
            )
        n_val = int(round(split.val_fraction * n_train))
        bounds = {"fit": (0, n_train - n_val), "val": (n_train - n_val, n_train), "test": (n_train, n)}
        date_windows = sliding_window_view(series_dates, spec.lookback + 1)
        for part, (lo, hi) in bounds.items():
            raw[part].append(windows[lo:hi])
            dates[part].append(date_windows[lo:hi])
            keys[part].append(pd.DataFrame({"store": store, "item": item, "date": date_windows[lo:hi, -1]}))
    raw = {k: np.concatenate(v) for k, v in raw.items()}
    dates = {k: np.concatenate(v) for k, v in dates.items()}
    keys = {k: pd.concat(v, ignore_index=True) for k, v in keys.items()}

    train_raw = np.concatenate([raw["fit"], raw["val"]])
    low, high = float(train_raw.min()), float(train_raw.max())
    spec = replace(spec, sales_min=low, sales_max=high if high > low else low + 1.0)
    if spec.scaling == "profile":
        # Every training day once: the targets of the fit and validation windows, and the input days of each
        # series' first window (its first `lookback` days, which no window has as its target).
        train_targets = pd.concat([keys["fit"], keys["val"]], ignore_index=True)
        ids = train_targets["store"].to_numpy().astype(np.int64) * 1_000_000 + train_targets["item"].to_numpy()
        fit_ids = ids[:len(keys["fit"])]
        first = np.r_[True, fit_ids[1:] != fit_ids[:-1]]
        weekday, month = fit_profile_factors(
            np.concatenate([raw["fit"][:, -1], raw["val"][:, -1], raw["fit"][first, :-1].ravel()]),
            np.concatenate([dates["fit"][:, -1], dates["val"][:, -1], dates["fit"][first, :-1].ravel()]),
            np.concatenate([ids, np.repeat(fit_ids[first], spec.lookback)]),
        )
        spec = replace(spec, weekday_factors=weekday, month_factors=month)

    def arrays(part: str) -> tuple[np.ndarray, np.ndarray]:
        raw_x, y, input_dates = raw[part][:, :-1], raw[part][:, -1], dates[part][:, :-1]
        x = build_inputs(raw_x, input_dates, spec)
        return x, spec.scale_target(y, raw_x, input_dates).astype(np.float32)

    x_fit, y_fit = arrays("fit")
    x_val, y_val = arrays("val")
    x_test, _ = arrays("test")
    return WindowSet(
        spec=spec,
        x_train=x_fit,
        y_train=y_fit,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        raw_x_test=raw["test"][:, :-1],
        y_test=raw["test"][:, -1],
        test_keys=keys["test"],
        raw_x_train=train_raw[:, :-1],
        y_train_raw=train_raw[:, -1],
        train_keys=pd.concat([keys["fit"], keys["val"]], ignore_index=True),
        test_input_dates=np.asarray(dates["test"][:, :-1], dtype="datetime64[D]"),
    )
