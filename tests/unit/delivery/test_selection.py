"""Selection rules with known answers: budget, gates, champion comparison, bootstrap, canary before stable."""

from datetime import datetime, timedelta, timezone

import pytest

from shelfcast.contract.manifest import Pointer
from shelfcast.delivery.selection import (
    Candidate,
    Champion,
    SelectionPolicy,
    canary_served_seconds,
    select_candidate,
    stable_refusal,
)
from shelfcast.contract.errors import ConfigError

pytestmark = pytest.mark.unit

SPEC = {"lookback": 14, "scaling": "window_mean", "calendar": True, "sales_min": 0.0, "sales_max": 1.0}
POLICY = SelectionPolicy(max_tflite_bytes=6000, max_latency_us=500)


def cand(version, mape, size=5000, latency=50.0, ops=True, status="ok", **extra):
    return Candidate(name="demand", version=version, metrics={"mape_pct": mape}, tflite_bytes=size,
                     latency_us=latency, builtin_ops_only=ops, variant=f"variant{version}", status=status,
                     details={"input_spec": SPEC}, **extra)


def test_most_accurate_candidate_within_budget_wins_and_every_other_has_its_reason():
    candidates = [
        cand("1", 13.0, size=9000),                  # most accurate, too big
        cand("2", 13.5, latency=900),                 # too slow
        cand("3", 13.8, ops=False),                   # uses Flex ops
        cand("4", 14.0, status="failed", reason="converter crashed with signal 11"),
        cand("5", 14.2),                              # the winner
        cand("6", 14.9),                              # eligible but worse
    ]
    decision = select_candidate(candidates, Champion("0", {"mape_pct": 15.0}), POLICY)
    assert decision.action == "promote" and decision.chosen.version == "5"
    reasons = {r.version: (r.rules, r.reason) for r in decision.rejections}
    assert reasons["1"][0] == ("size",) and "9,000 bytes, over the budget of 6,000" in reasons["1"][1]
    assert reasons["2"][0] == ("latency",) and "900 us" in reasons["2"][1]
    assert reasons["3"][0] == ("ops",)
    assert "failed" in reasons["4"][0] and "signal 11" in reasons["4"][1]
    assert reasons["6"][0] == ("outranked",) and "14.20 vs 14.90" in reasons["6"][1]
    assert set(reasons) == {"1", "2", "3", "4", "6"}


def test_a_candidate_failing_several_rules_lists_them_all():
    decision = select_candidate([cand("1", float("nan"), size=None, latency=None)], None, POLICY, baseline_metric=16)
    (rejection,) = decision.rejections
    assert rejection.rules == ("metric", "size", "latency")
    assert decision.action == "none" and decision.chosen is None


def test_champion_stays_when_no_candidate_is_good_enough():
    decision = select_candidate([cand("7", 15.3), cand("8", 15.6)], Champion("3", {"mape_pct": 15.0}), POLICY)
    assert decision.action == "keep" and decision.chosen is None
    assert all(r.rules == ("champion",) for r in decision.rejections)
    assert "15.30 is worse than champion v3's 15.00 on the same window" in decision.rejection_for("7").reason


def test_allowed_regression_and_ties_favour_the_fresh_model():
    champion = Champion("3", {"mape_pct": 15.0})
    assert select_candidate([cand("7", 15.0)], champion, POLICY).chosen.version == "7"
    tolerant = SelectionPolicy(max_tflite_bytes=6000, max_latency_us=500, max_regression_pts=0.5)
    assert select_candidate([cand("7", 15.4)], champion, tolerant).chosen.version == "7"
    assert select_candidate([cand("7", 15.6)], champion, tolerant).chosen is None


def test_equal_accuracy_prefers_the_smaller_file():
    decision = select_candidate([cand("1", 14.0, size=5900), cand("2", 14.0, size=4000)], None, POLICY,
                                baseline_metric=16.7)
    assert decision.chosen.version == "2"


def test_gates_reject_with_their_reasons_and_a_broken_gate_blocks():
    def alert_gate(candidate):
        return [f"critical alert 12 on {candidate.version}"] if candidate.version == "1" else []

    def broken_gate(candidate):
        if candidate.version == "2":
            raise RuntimeError("alert store unreachable")
        return None

    decision = select_candidate([cand("1", 13.0), cand("2", 13.5), cand("3", 14.0)], None, POLICY,
                                [alert_gate, broken_gate], baseline_metric=16.7)
    assert decision.chosen.version == "3"
    assert decision.rejection_for("1").rules == ("gate:alert_gate",)
    assert "critical alert 12" in decision.rejection_for("1").reason
    assert "gate broken_gate failed (RuntimeError: alert store unreachable)" in decision.rejection_for("2").reason


def test_bootstrap_needs_the_baseline_beaten_and_the_ceiling_respected():
    candidates = [cand("1", 14.0), cand("2", 14.5)]
    decision = select_candidate(candidates, None, POLICY, baseline_metric=16.74)
    assert decision.action == "bootstrap" and decision.chosen.version == "1"
    assert "seasonal-naive 16.74" in decision.reason

    no_baseline = select_candidate(candidates, None, POLICY)
    assert no_baseline.action == "none" and "baseline" in no_baseline.rejection_for("1").reason

    not_better = select_candidate(candidates, None, POLICY, baseline_metric=13.9)
    assert not_better.chosen is None and "does not beat the seasonal-naive rule's 13.90" in not_better.rejection_for("1").reason

    over_ceiling = select_candidate([cand("1", 30.0)], None, POLICY, baseline_metric=40.0)
    assert over_ceiling.chosen is None and "ceiling 25.00" in over_ceiling.rejection_for("1").reason

    lenient = SelectionPolicy(bootstrap_requires_baseline=False)
    assert select_candidate(candidates, None, lenient).chosen.version == "1"


def test_candidate_without_input_spec_is_not_deployable():
    bare = Candidate(name="demand", version="1", metrics={"mape_pct": 12.0}, tflite_bytes=100, latency_us=1,
                     builtin_ops_only=True)
    decision = select_candidate([bare], None, POLICY, baseline_metric=16)
    assert decision.rejection_for("1").rules == ("spec",)


def test_policy_from_mapping_names_bad_keys():
    assert SelectionPolicy.from_mapping({"max_tflite_bytes": 9000}).max_tflite_bytes == 9000
    with pytest.raises(ConfigError, match="unknown key.*max_bytes"):
        SelectionPolicy.from_mapping({"max_bytes": 1})
    with pytest.raises(ConfigError, match="max_latency_us"):
        SelectionPolicy.from_mapping({"max_latency_us": 0})


def _entry(seq, version, at):
    return Pointer("canary", "demand", version, "0" * 64, 10, seq, f"m{seq}",
                   at.strftime("%Y-%m-%dT%H:%M:%SZ"), "promote", "test")


def test_canary_service_time_is_measured_from_the_log():
    t0 = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
    log = [_entry(1, "5", t0), _entry(2, "6", t0 + timedelta(hours=24)), _entry(3, "5", t0 + timedelta(hours=30))]
    now = t0 + timedelta(hours=32)
    assert canary_served_seconds(log, "5", now) == 26 * 3600  # 24 h, then 2 h more after a rollback
    assert canary_served_seconds(log, "6", now) == 6 * 3600
    policy = SelectionPolicy(min_canary_seconds=20 * 3600)
    assert stable_refusal(log, "5", policy, now) is None
    assert "6.0 h on canary, needs 20.0 h" in stable_refusal(log, "6", policy, now)
    assert "never served on canary" in stable_refusal(log, "9", policy, now)
