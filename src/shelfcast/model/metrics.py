"""Accuracy metrics, pooled and per series.

MAPE leaves out days with zero sales (the percentage is undefined there) and reports how many it left out.
SMAPE and WAPE use every day. All values are percentages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} values but y_pred has {y_pred.shape[0]}")
    return y_true, y_pred


def mape_pct(y_true, y_pred) -> float:
    """Mean absolute percentage error over days with y_true != 0."""
    y_true, y_pred = _arrays(y_true, y_pred)
    keep = y_true != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(y_pred[keep] - y_true[keep]) / np.abs(y_true[keep])) * 100)


def zero_days(y_true) -> int:
    """How many days MAPE leaves out."""
    return int(np.sum(np.asarray(y_true).reshape(-1) == 0))


def smape_pct(y_true, y_pred) -> float:
    """Symmetric MAPE, 0..200; a day where both are zero counts as 0 error."""
    y_true, y_pred = _arrays(y_true, y_pred)
    denom = np.abs(y_true) + np.abs(y_pred)
    ratio = np.divide(2 * np.abs(y_pred - y_true), denom, out=np.zeros_like(denom), where=denom != 0)
    return float(np.mean(ratio) * 100)


def wape_pct(y_true, y_pred) -> float:
    """Weighted absolute percentage error: sum |error| / sum |actual|."""
    y_true, y_pred = _arrays(y_true, y_pred)
    total = np.sum(np.abs(y_true))
    return float(np.sum(np.abs(y_pred - y_true)) / total * 100) if total else float("nan")


def paired_mape_gain(y_true, y_before, y_after) -> tuple[float, float, int]:
    """How many MAPE points `y_after` gains over `y_before` on the same days, with its standard error.

    Returns (gain, standard error, days): the mean over days with y_true != 0 of the row-wise APE of `y_before`
    minus that of `y_after` (so exactly MAPE(before) - MAPE(after); positive when `y_after` is better), and the
    standard deviation of those differences over the square root of their count. Pairing by day removes what
    both forecasts share (a day's own noise), so two close models are told apart on far fewer days.
    """
    y_true, y_before = _arrays(y_true, y_before)
    _, y_after = _arrays(y_true, y_after)
    keep = y_true != 0
    n = int(keep.sum())
    if n < 2:
        return float("nan"), float("nan"), n
    actual = np.abs(y_true[keep])
    diff = (np.abs(y_before[keep] - y_true[keep]) - np.abs(y_after[keep] - y_true[keep])) / actual * 100
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(n)), n


@dataclass(frozen=True)
class Scores:
    mape_pct: float
    smape_pct: float
    wape_pct: float
    zero_days: int
    n: int

    def as_dict(self) -> dict:
        return {
            "mape_pct": self.mape_pct,
            "smape_pct": self.smape_pct,
            "wape_pct": self.wape_pct,
            "zero_days": self.zero_days,
            "n": self.n,
        }


def score(y_true, y_pred) -> Scores:
    y_true, y_pred = _arrays(y_true, y_pred)
    return Scores(mape_pct(y_true, y_pred), smape_pct(y_true, y_pred), wape_pct(y_true, y_pred), zero_days(y_true), len(y_true))


def score_by(keys: pd.DataFrame, y_true, y_pred, by=("store", "item")) -> pd.DataFrame:
    """One row of scores per group of `keys` (per series by default)."""
    y_true, y_pred = _arrays(y_true, y_pred)
    frame = keys[list(by)].assign(_y=y_true, _p=y_pred)
    rows = []
    for group, part in frame.groupby(list(by), sort=True):
        group = group if isinstance(group, tuple) else (group,)
        rows.append({**dict(zip(by, group)), **score(part["_y"], part["_p"]).as_dict()})
    return pd.DataFrame(rows)
