"""The metrics a night attaches to each variant for the gate: the champion's MAPE, and the paired gain over it
on the same holdout days with its standard error."""

from types import SimpleNamespace

import numpy as np
import pytest

from shelfcast.model.metrics import mape_pct
from shelfcast.pipeline.nightly import ChampionScore, context_metrics

pytestmark = pytest.mark.unit

Y = np.array([10.0, 20.0, 0.0, 40.0, 25.0])
CHAMPION = np.array([12.0, 25.0, 3.0, 40.0, 20.0])


def variant(name, predictions, status="ok", parent=None, mape=None):
    return SimpleNamespace(name=name, status=status, tflite_path=None, float_parent=parent, predictions=predictions,
                           mape_pct=mape if mape is not None else mape_pct(Y, predictions))


def test_each_variant_carries_its_paired_gain_over_the_champion():
    float_ = variant("LSTM-16", np.array([11.0, 20.0, 9.0, 44.0, 25.0]))
    int8 = variant("LSTM-16+INT8", np.array([11.0, 21.0, 9.0, 44.0, 24.0]), parent="LSTM-16")
    failed = variant("LSTM-8", None, status="failed", mape=float("nan"))
    champion = ChampionScore("4", mape_pct=mape_pct(Y, CHAMPION), predictions=CHAMPION)
    extra = context_metrics([float_, int8, failed], 16.5, champion, Y)
    diffs = np.array([10.0, 25.0, -10.0, 20.0])  # champion's APE minus LSTM-16's, on the four days with sales
    assert extra["LSTM-16"] == pytest.approx({
        "naive_mape_pct": 16.5, "champion_mape_pct": champion.mape_pct, "champion_gain_pts": diffs.mean(),
        "champion_gain_se": diffs.std(ddof=1) / 2})
    assert extra["LSTM-16"]["champion_gain_pts"] == pytest.approx(champion.mape_pct - float_.mape_pct)
    assert extra["LSTM-16+INT8"]["parent_mape_pct"] == float_.mape_pct
    assert extra["LSTM-16+INT8"]["champion_gain_pts"] == pytest.approx(champion.mape_pct - int8.mape_pct)
    assert extra["LSTM-8"] == {"naive_mape_pct": 16.5, "champion_mape_pct": champion.mape_pct}


def test_without_the_champions_forecasts_there_is_no_paired_gain():
    float_ = variant("LSTM-16", np.array([11.0, 20.0, 9.0, 44.0, 25.0]))
    unscored = ChampionScore(note="no champion yet")
    assert context_metrics([float_], 16.5, unscored, Y) == {"LSTM-16": {"naive_mape_pct": 16.5}}
    scored = ChampionScore("4", mape_pct=15.0, predictions=CHAMPION)
    assert context_metrics([float_], 16.5, scored) == {"LSTM-16": {"naive_mape_pct": 16.5,
                                                                   "champion_mape_pct": 15.0}}
    assert "predictions" not in scored.summary() and scored.summary()["version"] == "4"
