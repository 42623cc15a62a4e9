"""`variant_frames`: the evaluation frames the candidate rules judge a night's variants on, with known answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shelfcast.compress.variants import VariantResult
from shelfcast.monitor.evaluation import variant_frames
from shelfcast.monitor.rules import check_candidate, frame_metrics
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit


def night():
    """Two series x two test days; day t's 14-day window holds 1..14 (+10 for store 2), so the seasonal-naive
    rule (the mean of lags 7 and 14: positions -7 and -14) forecasts (8 + 1) / 2 = 4.5 (14.5 for store 2)."""
    keys = pd.DataFrame({"store": [1, 1, 2, 2], "item": [1, 1, 1, 1],
                         "date": pd.to_datetime(["2017-01-01", "2017-01-02"] * 2)})
    raw = np.array([np.arange(1, 15) + (10 if store == 2 else 0) for store in keys["store"]], dtype=np.float32)
    return SimpleNamespace(test_keys=keys, raw_x_test=raw, y_test=np.array([5.0, 0.0, 20.0, 16.0]))


def result(name, predictions, status="ok", float_parent=None):
    return VariantResult(name=name, technique="t", units=8, sparsity=0.0, quantization="float32", seed=0,
                         status=status, float_parent=float_parent,
                         predictions=None if predictions is None else np.asarray(predictions, dtype=np.float64))


def test_each_ok_variant_gets_its_predictions_the_naive_rule_and_its_float_parent():
    windows = night()
    results = [result("LSTM-8", [4.0, 1.0, 18.0, 16.0]), result("LSTM-8+INT8", [6.0, 1.0, 18.0, 12.0], float_parent="LSTM-8"),
               result("LSTM-4", None, status="failed"), result("LSTM-4+INT8", [5.0, 1.0, 20.0, 16.0], float_parent="LSTM-4")]
    frames = variant_frames(windows, results)
    assert set(frames) == {"LSTM-8", "LSTM-8+INT8", "LSTM-4+INT8"}  # a failed variant has nothing to judge

    int8 = frames["LSTM-8+INT8"]
    assert list(int8.columns) == ["store", "item", "date", "actual", "forecast", "naive_forecast", "parent_forecast"]
    pd.testing.assert_frame_equal(int8[["store", "item", "date"]], windows.test_keys)
    assert int8["actual"].tolist() == [5.0, 0.0, 20.0, 16.0]
    assert int8["forecast"].tolist() == [6.0, 1.0, 18.0, 12.0]
    assert int8["naive_forecast"].tolist() == [4.5, 4.5, 14.5, 14.5]
    assert int8["parent_forecast"].tolist() == [4.0, 1.0, 18.0, 16.0]
    assert "parent_forecast" not in frames["LSTM-8"]  # a float model has no parent
    assert "parent_forecast" not in frames["LSTM-4+INT8"]  # its parent failed: no comparison, not a wrong one

    # Days with sales: 5, 20, 16. INT8 1/5, 2/20, 4/16 -> 55/3 %; its parent 1/5, 2/20, 0/16 -> 10 %;
    # naive 0.5/5, 5.5/20, 1.5/16 -> 15.625 %.
    metrics = frame_metrics(int8)
    assert metrics == pytest.approx({"mape_pct": 55 / 3, "naive_mape_pct": 15.625, "parent_mape_pct": 10.0})
    # The rules judge the frame: 25/3 points lost to INT8 (allowed 0.3) pages, naming the naive rule it also fails.
    candidate = SimpleNamespace(name="demand", version=3, run_id=None, metrics={"variant": "LSTM-8+INT8"})
    (finding,) = check_candidate(candidate, load_thresholds(), int8).findings
    assert (finding.rule, finding.observed, finding.threshold) == ("int8_drop", pytest.approx(25 / 3), 0.3)
    assert "also: seasonal_naive" in finding.message
