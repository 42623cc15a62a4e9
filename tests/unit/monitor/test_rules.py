"""Accuracy rules on candidates and on the live champion: known answers and the scope each fault is named at."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shelfcast.monitor.evaluation import ExpectedError, ape_pct, candidate_frame, pearson_r2
from shelfcast.monitor.findings import Finding, Scope, fingerprint
from shelfcast.monitor.rules import (
    MAX_COHORT_FINDINGS,
    candidate_model,
    check_candidate,
    check_live,
    collapse_cohorts,
    frame_metrics,
)
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit

THRESHOLDS = load_thresholds()


def candidate(version=3, **metrics):
    return SimpleNamespace(name="lstm16", version=version, run_id="run-1", metrics=metrics)


# ---- candidates on metrics -----------------------------------------------------------------------------------


def test_ape_and_pearson_residuals_known_answers():
    actual = np.array([1.0, 2.0, 0.0, 4.0])
    forecast = np.array([2.0, 2.0, 1.0, 2.0])
    np.testing.assert_allclose(ape_pct(actual, forecast), [100.0, 0.0, np.nan, 50.0])
    np.testing.assert_allclose(pearson_r2(actual, forecast), [0.5, 0.0, 1.0, 2.0])


def test_a_good_candidate_raises_nothing_and_every_rule_is_checked():
    result = check_candidate(candidate(mape_pct=14.0, champion_mape_pct=14.2, naive_mape_pct=16.7), THRESHOLDS)
    assert result.findings == []
    scope = Scope("model", model="lstm16")
    assert {fingerprint(r, "candidate", scope) for r in ("mape_ceiling", "champion_regression", "seasonal_naive")} == result.checked
    assert result.skipped == []


def test_worse_than_champion_and_naive_pages_once_naming_both():
    result = check_candidate(candidate(mape_pct=18.0, champion_mape_pct=15.0, naive_mape_pct=16.7), THRESHOLDS)
    assert len(result.findings) == 1
    finding = result.findings[0]
    assert finding.rule == "seasonal_naive" and finding.severity == "critical"
    assert finding.observed == 18.0 and finding.threshold == 16.7
    assert finding.scope.label == "lstm16 v3"
    assert "also: champion_regression +3.00 against 0.50 points" in finding.message
    assert len(finding.context["also"]) == 1


def test_champion_regression_boundary_in_points():
    limit = THRESHOLDS.champion_regression.max_points
    inside = check_candidate(candidate(mape_pct=15.0 + limit - 0.01, champion_mape_pct=15.0), THRESHOLDS)
    outside = check_candidate(candidate(mape_pct=15.0 + limit + 0.01, champion_mape_pct=15.0), THRESHOLDS)
    assert inside.findings == []
    assert [f.rule for f in outside.findings] == ["champion_regression"]
    assert outside.findings[0].observed == pytest.approx(limit + 0.01)


def test_the_naive_rule_must_be_beaten_not_matched():
    tied = check_candidate(candidate(mape_pct=16.7, naive_mape_pct=16.7), THRESHOLDS)
    assert [f.rule for f in tied.findings] == ["seasonal_naive"]


def test_int8_drop_against_its_float_parent():
    limit = THRESHOLDS.int8_drop.max_points
    ok = check_candidate(candidate(mape_pct=14.0 + limit - 0.01, parent_mape_pct=14.0), THRESHOLDS)
    bad = check_candidate(candidate(mape_pct=14.0 + limit + 0.01, parent_mape_pct=14.0), THRESHOLDS)
    assert ok.findings == [] and fingerprint("int8_drop", "candidate", Scope("model", model="lstm16")) in ok.checked
    assert [f.rule for f in bad.findings] == ["int8_drop"]


def test_ceiling_applies_without_any_comparison_and_bootstrap_is_said():
    result = check_candidate(candidate(mape_pct=31.0), THRESHOLDS)
    assert [f.rule for f in result.findings] == ["mape_ceiling"]
    assert any("bootstrap" in s for s in result.skipped)
    assert any("seasonal-naive" in s for s in result.skipped)


def test_a_candidate_without_mape_is_skipped_with_the_fix():
    result = check_candidate(candidate(), THRESHOLDS)
    assert result.findings == [] and "metrics['mape_pct']" in result.skipped[0]


def test_variant_names_the_scope_when_the_name_is_shared():
    shared = SimpleNamespace(name="shelfcast-demand", version=7, run_id=None, metrics={"variant": "int8-16"})
    assert candidate_model(shared) == "shelfcast-demand/int8-16"
    assert candidate_model(candidate()) == "lstm16"


# ---- candidates on evaluation frames ------------------------------------------------------------------------


def keys(stores=2, items=2, days=28, start="2017-01-01"):
    dates = pd.date_range(start, periods=days)
    s, i, d = np.meshgrid(np.arange(1, stores + 1), np.arange(1, items + 1), dates, indexing="ij")
    return pd.DataFrame({"store": s.ravel(), "item": i.ravel(), "date": d.ravel()})


def test_frame_metrics_use_the_same_rows_for_every_forecast():
    k = keys(1, 1, 4)
    actual = np.array([1.0, 2.0, 4.0, 5.0])
    frame = candidate_frame(k, actual, actual + 1, champion=actual, naive=actual * 2)
    metrics = frame_metrics(frame)
    assert metrics == pytest.approx({"mape_pct": 48.75, "champion_mape_pct": 0.0, "naive_mape_pct": 100.0})


def test_one_cohort_that_regresses_is_named_with_the_candidate():
    rng = np.random.default_rng(0)
    k = keys(2, 3, 28)
    actual = rng.poisson(50, len(k)).astype(float)
    champion = np.full(len(k), 50.0)
    forecast = champion.copy()
    broken = (k["store"] == 2) & (k["item"] == 3)
    forecast[broken] = 80.0  # +60 % on one cohort only
    result = check_candidate(candidate(), THRESHOLDS, candidate_frame(k, actual, forecast, champion=champion))
    rules = [(f.rule, f.scope.kind, f.scope.store, f.scope.item) for f in result.findings]
    assert ("cohort_regression", "cohort", 2, 3) in [(r, kd, s, i) for r, kd, s, i in rules] or (
        result.findings[0].rule == "champion_regression" and "store 2 item 3" in result.findings[0].message
    )
    assert fingerprint("cohort_regression", "candidate", Scope("cohort", store=1, item=1, model="lstm16")) in result.checked


def test_identical_models_raise_no_cohort_finding():
    rng = np.random.default_rng(1)
    k = keys(3, 3, 28)
    actual = rng.poisson(20, len(k)).astype(float)
    same = np.full(len(k), 20.0)
    result = check_candidate(candidate(), THRESHOLDS, candidate_frame(k, actual, same, champion=same))
    assert result.findings == []


# ---- the live champion --------------------------------------------------------------------------------------


def panel(rng, stores=6, items=10, days=60, start="2016-10-01"):
    """Poisson sales around a known mean per series, and a champion that forecasts that mean."""
    k = keys(stores, items, days, start)
    level = rng.uniform(20, 80, size=(stores, items))
    mean = level[k["store"] - 1, k["item"] - 1]
    return k.assign(actual=rng.poisson(mean).astype(float), forecast=mean)


@pytest.fixture(scope="module")
def healthy():
    """The champion's expected error, from a holdout of its own. Each test draws its live days from a generator
    of its own seed, so no test depends on which ran before it."""
    return ExpectedError.from_frame(panel(np.random.default_rng(42)))


def live(rng, **kw):
    return panel(rng, days=28, start="2017-01-01", **kw)


def test_stable_days_raise_nothing_and_every_scope_is_checked(healthy):
    rng, expected = np.random.default_rng(101), healthy
    result = check_live(live(rng), expected, THRESHOLDS)
    assert result.findings == []
    assert fingerprint("live_accuracy", "champion", Scope("chain")) in result.checked
    assert fingerprint("live_accuracy", "champion", Scope("store", store=3)) in result.checked
    assert fingerprint("live_accuracy", "champion", Scope("item", item=7)) in result.checked
    assert fingerprint("cohort_regression", "champion", Scope("cohort", store=2, item=5)) in result.checked


@pytest.mark.parametrize("column, number, factor, label", [
    ("store", 4, 1.4, "store 4"),  # a store's level shifts up
    ("item", 7, 0.6, "item 7"),  # an item's sales fall across the chain
])
def test_a_fault_of_one_store_or_item_is_named_on_it_the_first_day(healthy, column, number, factor, label):
    rng, expected = np.random.default_rng(102), healthy
    frame = live(rng)
    last = (frame[column] == number) & (frame["date"] == frame["date"].max())
    frame.loc[last, "actual"] = rng.poisson(frame.loc[last, "forecast"] * factor)
    result = check_live(frame, expected, THRESHOLDS)
    assert [(f.rule, f.scope.label) for f in result.findings] == [("live_accuracy", label)]
    finding = result.findings[0]
    window = frame["date"] > frame["date"].max() - pd.Timedelta(days=finding.context["window_days"])
    days = frame[(frame[column] == number) & window & (frame["actual"] > 0)]
    by_hand = float(100 * ((days["actual"] - days["forecast"]).abs() / days["actual"]).mean())
    assert finding.observed == pytest.approx(by_hand, rel=1e-9)  # the MAPE of that scope on its window
    # The threshold: the scope's expected error on those days plus the material excess, under the ceiling.
    limit, ceiling = THRESHOLDS.live_accuracy, THRESHOLDS.mape_ceiling.max_mape_pct
    allowed = min(float(np.mean(expected.expected_ape(column, days)[0])) + limit.max_points, ceiling)
    assert finding.threshold == pytest.approx(allowed, rel=1e-9) and finding.observed > allowed
    assert finding.severity == "critical"


def test_a_chain_wide_fault_is_one_alert(healthy):
    rng, expected = np.random.default_rng(103), healthy
    frame = live(rng)
    last = frame["date"] == frame["date"].max()
    frame.loc[last, "actual"] = rng.poisson(frame.loc[last, "forecast"] * 1.5)
    result = check_live(frame, expected, THRESHOLDS)
    assert [(f.rule, f.scope.kind) for f in result.findings] == [("live_accuracy", "chain")]
    assert result.findings[0].context["worst"]


def test_one_unlucky_small_day_is_not_an_alert(healthy):
    """A day with 1 sale where 5 were expected is a 400 % APE but a small Pearson residual: not evidence."""
    rng, expected = np.random.default_rng(104), healthy
    frame = live(rng)
    last = (frame["item"] == 2) & (frame["date"] == frame["date"].max())
    frame.loc[last, "forecast"] = 5.0
    frame.loc[last[last].index[:2], "actual"] = 1.0
    frame.loc[last[last].index[2:], "actual"] = 5.0
    assert check_live(frame, expected, THRESHOLDS).findings == []


def test_a_small_excess_on_a_big_sample_is_not_material(healthy):
    """Significant but trivial: every forecast 4 % high on a month of data moves MAPE far less than the limit."""
    rng, expected = np.random.default_rng(105), healthy
    frame = live(rng)
    frame["actual"] = rng.poisson(frame["forecast"] * 0.96).astype(float)
    assert check_live(frame, expected, THRESHOLDS).findings == []


def test_many_cohorts_collapse_into_one_finding():
    findings = [
        Finding("cohort_regression", "warning", "champion", Scope("cohort", store=s, item=1), 40.0 + s, 30.0, "MAPE %", "m")
        for s in range(1, MAX_COHORT_FINDINGS + 3)
    ]
    collapsed = collapse_cohorts(findings, THRESHOLDS, Scope("chain"))
    assert len(collapsed) == 1
    assert collapsed[0].observed == len(findings) and collapsed[0].scope.kind == "chain"
    assert collapsed[0].context["cohorts"][0] == "cohort/store=7/item=1"  # the worst first
    assert collapse_cohorts(findings[:2], THRESHOLDS, Scope("chain")) == findings[:2]


# ---- expected error -----------------------------------------------------------------------------------------


def test_expected_error_scales_with_the_sales_level_and_round_trips(healthy):
    expected = healthy
    rows = pd.DataFrame({"store": [1, 1], "item": [1, 1], "forecast": [25.0, 100.0]})
    mean, dispersion = expected.expected_ape("cohort", rows)
    assert mean[0] == pytest.approx(2 * mean[1])  # four times the sales, half the APE
    assert dispersion[0] == dispersion[1] > 0
    again = ExpectedError.from_json(expected.to_json())
    assert again == expected
    unknown = pd.DataFrame({"store": [99], "item": [99], "forecast": [25.0]})
    assert expected.expected_ape("store", unknown)[0][0] == pytest.approx(expected.chain[0] / 5)


def test_flat_expected_error_falls_back_to_the_window_t_test():
    expected = ExpectedError.flat(12.0)
    rows = pd.DataFrame({"store": [1], "item": [1], "forecast": [400.0]})
    mean, dispersion = expected.expected_ape("store", rows)
    assert mean[0] == 12.0 and np.isnan(dispersion[0])
    rng = np.random.default_rng(3)
    frame = live(rng)
    frame.loc[frame["store"] == 2, "actual"] = rng.poisson(frame.loc[frame["store"] == 2, "forecast"] * 2.0)
    result = check_live(frame, ExpectedError.from_json(expected.to_json()), THRESHOLDS)
    assert ("live_accuracy", "store 2") in [(f.rule, f.scope.label) for f in result.findings]
