"""Freshness and input drift: known ages, one chain alert for a dead feed, drift that cancels seasonality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shelfcast.data.synthetic import generate_sales
from shelfcast.monitor.data_rules import (
    check_drift,
    check_freshness,
    drift_stats,
    newest_sales_dates,
    with_drift_context,
)
from shelfcast.monitor.findings import CheckResult, Finding, Scope, fingerprint
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit

THRESHOLDS = load_thresholds()  # 24 h freshness, 20 % share change over 7 days


def test_freshness_ages_are_hours_since_the_end_of_the_newest_day():
    newest = {1: pd.Timestamp("2017-03-01"), 2: pd.Timestamp("2017-02-27")}
    result = check_freshness(newest, pd.Timestamp("2017-03-02 03:00"), THRESHOLDS)
    [finding] = result.findings
    assert (finding.rule, finding.scope.label, finding.observed, finding.threshold) == ("freshness", "store 2", 51.0, 24.0)
    assert "no sales after 2017-02-27" in finding.message
    assert fingerprint("freshness", "data", Scope("store", store=1)) in result.checked
    assert fingerprint("freshness", "data", Scope("chain")) in result.checked


def test_a_dead_feed_is_one_chain_alert():
    newest = {s: pd.Timestamp("2017-02-27") for s in (1, 2, 3)}
    newest[2] = pd.Timestamp("2017-02-28")
    [finding] = check_freshness(newest, pd.Timestamp("2017-03-02 03:00"), THRESHOLDS).findings
    assert finding.scope.kind == "chain" and finding.observed == 27.0  # the freshest store's age


def test_newest_dates_per_store():
    sales = pd.DataFrame({"store": [1, 1, 2], "item": [1, 1, 1], "date": pd.to_datetime(["2017-01-01", "2017-01-03", "2017-01-02"]),
                          "sales": [1, 2, 3]})
    assert newest_sales_dates(sales) == {1: pd.Timestamp("2017-01-03"), 2: pd.Timestamp("2017-01-02")}


@pytest.fixture(scope="module")
def chain():
    sales = generate_sales(stores=5, items=8, start="2015-01-01", end="2016-03-31", seed=4)
    return sales[sales["date"] < "2016-01-01"], sales[sales["date"] >= "2016-01-01"]


def test_a_calm_chain_shows_no_drift_across_a_season_change(chain):
    training, recent = chain
    stats = drift_stats(recent, training, 7)
    assert list(stats["store"]) == [1, 2, 3, 4, 5] and set(stats["days"]) == {7}
    assert stats["share_change_pct"].abs().max() < 5
    assert check_drift(stats, THRESHOLDS).findings == []


def test_a_store_that_grows_40_percent_drifts_and_the_others_do_not(chain):
    training, recent = chain
    recent = recent.copy()
    rows = recent["store"] == 2
    recent.loc[rows, "sales"] = np.round(recent.loc[rows, "sales"] * 1.4).astype(int)
    stats = drift_stats(recent, training, 7).set_index("store")
    assert 25 < stats.loc[2, "share_change_pct"] < 45
    assert stats.drop(index=2)["share_change_pct"].abs().max() < 10
    [finding] = check_drift(stats.reset_index(), THRESHOLDS).findings
    assert (finding.rule, finding.scope.label, finding.severity) == ("input_drift", "store 2", "info")


def test_one_store_missing_days_does_not_move_the_others(chain):
    training, recent = chain
    newest = recent["date"].max()
    recent = recent[~((recent["store"] == 5) & (recent["date"] > newest - pd.Timedelta(days=4)))]
    stats = drift_stats(recent, training, 7).set_index("store")
    assert stats.loc[5, "days"] == 3
    assert stats["share_change_pct"].abs().max() < 5


def test_drift_rides_on_the_accuracy_alert_of_its_store():
    accuracy = Finding("live_accuracy", "critical", "champion", Scope("store", store=2), 27.0, 21.0, "MAPE %", "store 2: MAPE 27 %")
    drift = Finding("input_drift", "info", "data", Scope("store", store=2), 36.0, 20.0, "%", "store 2: share +36 %")
    other = Finding("input_drift", "info", "data", Scope("store", store=3), -25.0, 20.0, "%", "store 3: share -25 %")
    stats = pd.DataFrame({"store": [2, 3], "days": [7, 7], "share_change_pct": [36.0, -25.0]})
    merged = with_drift_context(CheckResult([accuracy], {accuracy.fingerprint}),
                                CheckResult([drift, other], {drift.fingerprint, other.fingerprint}), stats)
    assert [(f.rule, f.scope.store) for f in merged.findings] == [("live_accuracy", 2), ("input_drift", 3)]
    assert "share of chain sales +36.0 %" in merged.findings[0].message
    assert merged.findings[0].context["drift"] == {"share_change_pct": 36.0, "days": 7}
    assert drift.fingerprint in merged.checked
