"""Model inputs from raw sales, in numpy only, so the store device (no pandas, no TensorFlow) builds exactly
the inputs the trainer built. The trainer's windows and the store's forecast both call `build_inputs`.

The input specification travels in every model manifest (`InputSpec.to_dict`): lookback, scaling and its
parameters, and whether calendar features are used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCALINGS = ("global_minmax", "window_mean")


@dataclass
class InputSpec:
    """How raw sales become model inputs.

    `global_minmax` (the article's) maps sales to [0, 1] with the training minimum and maximum;
    `window_mean` divides each window by the mean of its own input days, a level normalisation that needs no
    stored per-series level. `calendar` adds weekday and day-of-year sine/cosine of each input day.
    """

    lookback: int = 14
    scaling: str = "global_minmax"
    calendar: bool = False
    sales_min: float = 0.0
    sales_max: float = 1.0

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r}; choose one of {SCALINGS}")

    @property
    def n_features(self) -> int:
        return 5 if self.calendar else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        return cls(**{k: data[k] for k in ("lookback", "scaling", "calendar", "sales_min", "sales_max")})

    def level(self, raw_x: np.ndarray) -> np.ndarray:
        """Per-window divisor for `window_mean` (at least 1 sale, so an empty fortnight stays finite)."""
        return np.maximum(np.asarray(raw_x, dtype=np.float64).mean(axis=1), 1.0)

    def scale_sales(self, raw_x: np.ndarray) -> np.ndarray:
        raw_x = np.asarray(raw_x, dtype=np.float64)
        if self.scaling == "global_minmax":
            return (raw_x - self.sales_min) / (self.sales_max - self.sales_min)
        return raw_x / self.level(raw_x)[:, None]

    def scale_target(self, y: np.ndarray, raw_x: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.scaling == "global_minmax":
            return (y - self.sales_min) / (self.sales_max - self.sales_min)
        return y / self.level(raw_x)

    def unscale(self, y_scaled: np.ndarray, raw_x: np.ndarray) -> np.ndarray:
        """Model outputs back to sales; negative forecasts are clipped to zero."""
        y_scaled = np.asarray(y_scaled, dtype=np.float64).reshape(-1)
        if self.scaling == "global_minmax":
            sales = y_scaled * (self.sales_max - self.sales_min) + self.sales_min
        else:
            sales = y_scaled * self.level(raw_x)
        return np.maximum(sales, 0.0)


def calendar_features(dates: np.ndarray) -> np.ndarray:
    """Weekday (Monday = 0) and day of year as sine/cosine pairs, shape dates.shape + (4,)."""
    days = np.asarray(dates, dtype="datetime64[D]")
    epoch_days = days.astype(np.int64)
    weekday = (epoch_days + 3) % 7  # 1970-01-01 was a Thursday
    yearday = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    w = 2 * np.pi * weekday / 7
    y = 2 * np.pi * yearday / 365.25
    return np.stack([np.sin(w), np.cos(w), np.sin(y), np.cos(y)], axis=-1)


def build_inputs(raw_x: np.ndarray, input_dates: np.ndarray | None, spec: InputSpec) -> np.ndarray:
    """Model inputs (n, lookback, n_features) float32 from raw windows (n, lookback) and their dates."""
    raw_x = np.asarray(raw_x)
    if raw_x.ndim != 2 or raw_x.shape[1] != spec.lookback:
        raise ValueError(f"expected windows of shape (n, {spec.lookback}), got {raw_x.shape}")
    sales = spec.scale_sales(raw_x)[:, :, None]
    if not spec.calendar:
        return sales.astype(np.float32)
    if input_dates is None:
        raise ValueError("this model uses calendar features: pass the date of every input day")
    return np.concatenate([sales, calendar_features(input_dates)], axis=2).astype(np.float32)
