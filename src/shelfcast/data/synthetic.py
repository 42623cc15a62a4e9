"""A synthetic sales generator with the structure of the Kaggle Store Item Demand data.

Daily sales are Poisson around a multiplicative mean: store level x item level x weekday profile x month
profile x yearly trend. The same seed gives the same frame, so tests and the default run need no download.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Shapes close to the Kaggle data (Monday first); each profile has mean 1 so `base` is the average level.
WEEKDAY_PROFILE = np.array([0.80, 0.93, 0.93, 0.99, 1.05, 1.12, 1.18])
MONTH_PROFILE = np.array([0.72, 0.80, 0.98, 1.09, 1.16, 1.22, 1.30, 1.15, 1.03, 0.98, 0.99, 0.68])
YEAR_GROWTH = 0.07  # per year, compounding


def generate_sales(
    stores: int = 10,
    items: int = 50,
    start: str = "2013-01-01",
    end: str = "2017-12-31",
    base: float = 52.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Make a `date,store,item,sales` frame for `stores` x `items` series over [start, end]."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, end, freq="D")
    store_level = rng.uniform(0.55, 1.35, size=stores)
    item_level = rng.lognormal(mean=0.0, sigma=0.45, size=items)
    item_level /= item_level.mean()
    weekday = WEEKDAY_PROFILE / WEEKDAY_PROFILE.mean()
    month = MONTH_PROFILE / MONTH_PROFILE.mean()
    years = (dates - dates[0]).days.to_numpy() / 365.25
    calendar = weekday[dates.day_of_week.to_numpy()] * month[dates.month.to_numpy() - 1] * (1 + YEAR_GROWTH) ** years

    mean = base * store_level[:, None, None] * item_level[None, :, None] * calendar[None, None, :]
    sales = rng.poisson(mean)
    store_ids, item_ids, day_idx = np.meshgrid(
        np.arange(1, stores + 1), np.arange(1, items + 1), np.arange(len(dates)), indexing="ij"
    )
    return pd.DataFrame(
        {
            "date": dates[day_idx.ravel()],
            "store": store_ids.ravel().astype(np.int64),
            "item": item_ids.ravel().astype(np.int64),
            "sales": sales.ravel().astype(np.int64),
        }
    )


def scale_counts(sales: np.ndarray, factor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts with their mean scaled by `factor`: binomial thinning below 1, added Poisson counts above."""
    sales = np.asarray(sales, dtype=np.int64)
    factor = np.broadcast_to(factor, sales.shape)
    out = rng.binomial(sales, np.minimum(factor, 1.0))
    up = factor > 1
    out[up] = sales[up] + rng.poisson(sales[up] * (factor[up] - 1))
    return out
