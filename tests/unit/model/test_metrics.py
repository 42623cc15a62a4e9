"""Known-answer tests for the accuracy metrics."""

import numpy as np
import pandas as pd
import pytest

from shelfcast.model.metrics import mape_pct, score, score_by, smape_pct, wape_pct, zero_days

pytestmark = pytest.mark.unit


def test_forecast_of_y_plus_one_has_hand_computed_mape():
    y = np.array([1.0, 2.0, 4.0, 5.0])
    # |1|/1 + |1|/2 + |1|/4 + |1|/5 = 1 + .5 + .25 + .2 = 1.95 -> mean .4875
    assert mape_pct(y, y + 1) == pytest.approx(48.75)


def test_mape_leaves_out_zero_days_and_counts_them():
    y = np.array([0.0, 10.0, 20.0])
    yhat = np.array([5.0, 12.0, 18.0])
    assert mape_pct(y, yhat) == pytest.approx((0.2 + 0.1) / 2 * 100)
    assert zero_days(y) == 1
    assert score(y, yhat).zero_days == 1


def test_smape_and_wape_known_answers():
    y = np.array([10.0, 0.0, 20.0])
    yhat = np.array([12.0, 0.0, 10.0])
    # smape: 2*2/22, 0 (both zero), 2*10/30 -> (0.181818 + 0 + 0.666667) / 3
    assert smape_pct(y, yhat) == pytest.approx((4 / 22 + 20 / 30) / 3 * 100)
    assert wape_pct(y, yhat) == pytest.approx(12 / 30 * 100)


def test_all_zero_actuals_give_nan_mape():
    assert np.isnan(mape_pct([0, 0], [1, 1]))


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="3 values but y_pred has 2"):
        mape_pct([1, 2, 3], [1, 2])


def test_score_by_series():
    keys = pd.DataFrame({"store": [1, 1, 2, 2], "item": [1, 1, 1, 1]})
    frame = score_by(keys, [10, 10, 10, 10], [11, 9, 15, 15])
    assert list(frame["store"]) == [1, 2]
    assert frame["mape_pct"].tolist() == pytest.approx([10.0, 50.0])


def test_paired_mape_gain_is_the_mape_difference_on_the_same_days_with_its_standard_error():
    from shelfcast.model.metrics import paired_mape_gain

    y = np.array([10.0, 20.0, 0.0, 40.0])
    before = np.array([12.0, 25.0, 3.0, 40.0])  # APE 20, 25, -, 0
    after = np.array([11.0, 20.0, 9.0, 44.0])  # APE 10, 0, -, 10
    gain, se, n = paired_mape_gain(y, before, after)
    diffs = np.array([10.0, 25.0, -10.0])
    assert n == 3
    assert gain == pytest.approx(mape_pct(y, before) - mape_pct(y, after)) and gain == pytest.approx(25 / 3)
    assert se == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    assert paired_mape_gain(y, after, before)[:2] == pytest.approx((-gain, se))
    assert paired_mape_gain([0.0, 5.0], [1.0, 6.0], [1.0, 5.0])[2] == 1  # one day with sales: no spread
    assert np.isnan(paired_mape_gain([0.0, 5.0], [1.0, 6.0], [1.0, 5.0])[1])
    with pytest.raises(ValueError, match="y_true has 4 values but y_pred has 2"):
        paired_mape_gain(y, before, after[:2])
