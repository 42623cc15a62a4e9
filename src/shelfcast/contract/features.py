"""Model inputs from raw sales, in numpy only, so the store device (no pandas, no TensorFlow) builds exactly
the inputs the trainer built. The trainer's windows and the store's forecast both call `build_inputs`.

The input specification travels in every model manifest (`InputSpec.to_dict`): lookback, scaling and its
parameters (for `profile` scaling the pooled weekday and month factors, 19 numbers shared by every series),
and whether calendar features are used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCALINGS = ("global_minmax", "window_mean", "profile")


@dataclass
class InputSpec:
    """How raw sales become model inputs.

    `global_minmax` (the article's) maps sales to [0, 1] with the training minimum and maximum;
    `window_mean` divides each window by the mean of its own input days, a level normalisation that needs no
    stored per-series level. `profile` divides every day, input and target, by the window's level times a
    pooled weekday and month profile (`weekday_factors`, `month_factors`, fitted on the training period by
    `fit_profile_factors` and shared by every series), so the model learns only the residual of that profile.
    `calendar` adds weekday and day-of-year sine/cosine of each input day.
    """

    lookback: int = 14
    scaling: str = "global_minmax"
    calendar: bool = False
    sales_min: float = 0.0
    sales_max: float = 1.0
    weekday_factors: tuple[float, ...] = (1.0,) * 7  # Monday first
    month_factors: tuple[float, ...] = (1.0,) * 12  # January first

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r}; choose one of {SCALINGS}")
        self.weekday_factors = tuple(float(f) for f in self.weekday_factors)
        self.month_factors = tuple(float(f) for f in self.month_factors)
        factors = np.array(self.weekday_factors + self.month_factors)
        if len(self.weekday_factors) != 7 or len(self.month_factors) != 12 or not (np.isfinite(factors).all() and (factors > 0).all()):
            raise ValueError("weekday_factors needs 7 and month_factors 12 positive finite numbers; refit them with "
                             "fit_profile_factors on the training sales")

    @property
    def n_features(self) -> int:
        return 5 if self.calendar else 1

    @property
    def needs_dates(self) -> bool:
        """Whether building inputs and unscaling forecasts need the date of every input day."""
        return self.calendar or self.scaling == "profile"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["weekday_factors"], data["month_factors"] = list(self.weekday_factors), list(self.month_factors)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "InputSpec":
        """From a manifest's `input_spec`; manifests written before profile scaling carry no factors."""
        keys = ("lookback", "scaling", "calendar", "sales_min", "sales_max", "weekday_factors", "month_factors")
        return cls(**{k: data[k] for k in keys if k in data})

    def profile(self, dates: np.ndarray) -> np.ndarray:
        """The pooled weekday x month factor of every date (shape of `dates`)."""
        days = np.asarray(dates, dtype="datetime64[D]")
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        month = days.astype("datetime64[M]").astype(np.int64) % 12
        return np.asarray(self.weekday_factors)[weekday] * np.asarray(self.month_factors)[month]

    def _dates(self, input_dates) -> np.ndarray:
        if input_dates is None:
            raise ValueError(f"{self.scaling} scaling needs the date of every input day: pass input_dates")
        return np.asarray(input_dates, dtype="datetime64[D]")

    def level(self, raw_x: np.ndarray, input_dates: np.ndarray | None = None) -> np.ndarray:
        """Per-window divisor (at least 1 sale a day, so an empty window stays finite): the window mean for
        `window_mean`; for `profile` the level that, times the profile, sums to the window's sales."""
        raw_x = np.asarray(raw_x, dtype=np.float64)
        if self.scaling == "profile":
            return np.maximum(raw_x.sum(axis=1) / self.profile(self._dates(input_dates)).sum(axis=1), 1.0)
        return np.maximum(raw_x.mean(axis=1), 1.0)

    def _divisor(self, raw_x, input_dates, target: bool) -> np.ndarray:
        """What scaled sales are divided by: per input day (n, lookback), or per target day (n,)."""
        level = self.level(raw_x, input_dates)
        if self.scaling != "profile":
            return level if target else level[:, None]
        dates = self._dates(input_dates)
        if target:
            return level * self.profile(dates[:, -1] + np.timedelta64(1, "D"))
        return level[:, None] * self.profile(dates)

    def scale_sales(self, raw_x: np.ndarray, input_dates: np.ndarray | None = None) -> np.ndarray:
        raw_x = np.asarray(raw_x, dtype=np.float64)
        if self.scaling == "global_minmax":
            return (raw_x - self.sales_min) / (self.sales_max - self.sales_min)
        return raw_x / self._divisor(raw_x, input_dates, target=False)

    def scale_target(self, y: np.ndarray, raw_x: np.ndarray, input_dates: np.ndarray | None = None) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.scaling == "global_minmax":
            return (y - self.sales_min) / (self.sales_max - self.sales_min)
        return y / self._divisor(raw_x, input_dates, target=True)

    def unscale(self, y_scaled: np.ndarray, raw_x: np.ndarray, input_dates: np.ndarray | None = None) -> np.ndarray:
        """Model outputs back to sales of the day after the window; negative forecasts are clipped to zero."""
        y_scaled = np.asarray(y_scaled, dtype=np.float64).reshape(-1)
        if self.scaling == "global_minmax":
            sales = y_scaled * (self.sales_max - self.sales_min) + self.sales_min
        else:
            sales = y_scaled * self._divisor(raw_x, input_dates, target=True)
        return np.maximum(sales, 0.0)


def fit_profile_factors(sales: np.ndarray, dates: np.ndarray, series: np.ndarray, rounds: int = 5):
    """Pooled multiplicative weekday (7) and month (12) factors, each averaging 1, from training sales.

    Each day is divided by the mean of its series over its 365-day block (blocks counted back from the newest
    day, a short oldest block joined to the next), removing level and trend; then weekday and month means of
    that ratio are alternated `rounds` times so neither absorbs the other. Blocks are whole years whatever day
    the window starts, so a rolling window that crosses New Year does not see its January as an average month.
    Months without training days keep a factor of 1 (the average month).
    """
    sales = np.asarray(sales, dtype=np.float64).reshape(-1)
    days = np.asarray(dates, dtype="datetime64[D]").reshape(-1)
    weekday = (days.astype(np.int64) + 3) % 7
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    age = (days.max() - days).astype(np.int64)
    block = age // 365
    oldest = int(block.max())
    if oldest > 0 and age.max() - oldest * 365 < 364:  # the oldest block is not a whole year
        block[block == oldest] = oldest - 1
    _, group = np.unique(np.stack([np.asarray(series).reshape(-1).astype(np.int64), block]), axis=1, return_inverse=True)
    group = group.reshape(-1)
    group_mean = np.bincount(group, sales) / np.bincount(group)
    ratio = sales / np.maximum(group_mean[group], 1e-9)
    if len(np.unique(weekday)) < 7:
        raise ValueError("profile factors need training sales on every weekday (a week or more)")
    # A month without training days (under a year of history) keeps a neutral factor of 1.
    seen = np.bincount(month, minlength=12) > 0
    w, m = np.ones(7), np.ones(12)
    for _ in range(rounds):
        w = np.bincount(weekday, ratio / m[month], 7) / np.bincount(weekday, minlength=7)
        w /= w.mean()
        m[seen] = (np.bincount(month, ratio / w[weekday], 12) / np.maximum(np.bincount(month, minlength=12), 1))[seen]
        m[seen] /= m[seen].mean()
    return tuple(w), tuple(m)


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
    sales = spec.scale_sales(raw_x, input_dates)[:, :, None]
    if not spec.calendar:
        return sales.astype(np.float32)
    if input_dates is None:
        raise ValueError("this model uses calendar features: pass the date of every input day")
    return np.concatenate([sales, calendar_features(input_dates)], axis=2).astype(np.float32)
