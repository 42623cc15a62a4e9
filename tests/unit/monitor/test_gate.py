"""The promotion gate: open alerts of a blocking rule on a candidate block it unless forced with a reason."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shelfcast.monitor import service
from shelfcast.monitor.gate import alert_gate
from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit

THRESHOLDS = load_thresholds()
BAD = {"mape_pct": 18.0, "champion_mape_pct": 15.0, "naive_mape_pct": 16.7}
GOOD = {"mape_pct": 14.0, "champion_mape_pct": 15.0, "naive_mape_pct": 16.7}


def candidate(version, metrics, name="lstm16-int8"):
    return SimpleNamespace(name=name, version=version, run_id=f"run-{version}", metrics=metrics)


@pytest.fixture
def store(tmp_path):
    return AlertLog(tmp_path / "alerts.db")


def test_a_bad_candidate_is_blocked_with_a_reason_naming_the_alert(store):
    bad = candidate(7, BAD)
    service.check_candidates(store, THRESHOLDS, [bad], now="2017-03-02T03:00:00")
    reasons = alert_gate(store, THRESHOLDS)(bad)
    assert len(reasons) == 1
    assert reasons[0].startswith("critical alert 1 (seasonal_naive, open since 2017-03-02T03:00:00Z)")
    assert "--force --reason" in reasons[0]
    assert store.events(1)[-1]["kind"] == "gate_blocked"


def test_other_versions_and_good_candidates_pass(store):
    service.check_candidates(store, THRESHOLDS, [candidate(7, BAD), candidate(7, GOOD, name="lstm32")])
    gate = alert_gate(store, THRESHOLDS)
    assert gate(candidate(8, GOOD)) == []
    assert gate(candidate(7, GOOD, name="lstm32")) == []


def test_acknowledging_does_not_unblock_resolving_does(store):
    bad = candidate(7, BAD)
    service.check_candidates(store, THRESHOLDS, [bad])
    store.acknowledge(1, "ana", "investigating")
    assert alert_gate(store, THRESHOLDS)(bad)
    store.resolve(1, "ana", "calibration fixed, version 7 re-evaluated by hand")
    assert alert_gate(store, THRESHOLDS)(bad) == []


def test_a_warning_of_a_blocking_rule_blocks_and_a_rule_left_out_of_blocking_rules_does_not(tmp_path):
    """Severity says who is told, `alerts.blocking_rules` what the gate does: the default champion regression is
    a warning that blocks; with seasonal_naive and champion_regression taken out, a candidate failing both passes
    even though one of them is critical."""
    from shelfcast.monitor.thresholds import parse_thresholds

    worse = {"mape_pct": 15.9, "champion_mape_pct": 15.0, "naive_mape_pct": 16.7}  # 0.9 points over the champion
    store = AlertLog(tmp_path / "w.db")
    regressed = candidate(7, worse)
    service.check_candidates(store, THRESHOLDS, [regressed])
    assert [(a.rule, a.severity) for a in store.list()] == [("champion_regression", "warning")]
    assert alert_gate(store, THRESHOLDS)(regressed)[0].startswith("warning alert 1 (champion_regression, open since")

    data = THRESHOLDS.as_dict()
    data["alerts"]["blocking_rules"] = ["mape_ceiling", "int8_drop"]
    relaxed = parse_thresholds(data)
    bad = candidate(8, BAD)
    service.check_candidates(store, relaxed, [bad])
    assert alert_gate(store, relaxed)(bad) == []


def test_a_merged_alert_blocks_by_any_rule_it_stands_for(tmp_path):
    """A candidate failing seasonal_naive (critical) and champion_regression is one alert named seasonal_naive;
    with only champion_regression blocking, that alert still blocks (the gate reads the merged rules)."""
    from shelfcast.monitor.thresholds import parse_thresholds

    data = THRESHOLDS.as_dict()
    data["alerts"]["blocking_rules"] = ["champion_regression"]
    only_regression = parse_thresholds(data)
    store = AlertLog(tmp_path / "m.db")
    bad = candidate(7, BAD)
    service.check_candidates(store, only_regression, [bad])
    (alert,) = store.list()
    assert (alert.rule, alert.severity, alert.context["also_rules"]) == ("seasonal_naive", "critical",
                                                                         ["champion_regression"])
    assert alert_gate(store, only_regression)(bad)[0].startswith("critical alert 1 (seasonal_naive, open since")


def test_forcing_passes_and_records_who_and_why(store):
    bad = candidate(7, BAD)
    service.check_candidates(store, THRESHOLDS, [bad])
    gate = alert_gate(store, THRESHOLDS, force_reason="holiday stock-out explains the window", actor="ana")
    assert gate(bad) == []
    event = store.events(1)[-1]
    assert (event["kind"], event["actor"]) == ("gate_forced", "ana")
    assert "holiday stock-out" in event["detail"] and "lstm16-int8 v7" in event["detail"]
    assert store.get(1).status == "open"


def test_forcing_without_a_reason_is_refused(store):
    with pytest.raises(ValueError, match="needs a reason"):
        alert_gate(store, THRESHOLDS, force_reason="  ")


def test_the_gate_is_a_plain_callable(store):
    gate = alert_gate(store, THRESHOLDS)
    assert callable(gate) and gate.__name__ == "alert_gate"
