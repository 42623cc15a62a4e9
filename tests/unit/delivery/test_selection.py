"""Selection rules with known answers: budget, gates, champion comparison, bootstrap, canary before stable."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from shelfcast.contract.manifest import Pointer
from shelfcast.delivery.selection import (
    Candidate,
    Champion,
    Decision,
    Rejection,
    SelectionPolicy,
    canary_served_seconds,
    eligibility,
    load_policy,
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


def paired(version, mape, gain, se, **extra):
    candidate = cand(version, mape, **extra)
    candidate.metrics.update(champion_gain_pts=gain, champion_gain_se=se)
    return candidate


def test_a_gain_within_noise_keeps_the_champion_and_a_clear_one_promotes():
    champion = Champion("3", {"mape_pct": 15.0})
    noise = [paired("7", 14.9, 0.1, 0.06), paired("8", 14.95, 0.05, 0.01)]
    kept = select_candidate(noise, champion, POLICY)
    assert kept == Decision(
        "keep", "variant7 v7 gains +0.10 ± 0.06 mape_pct points over champion v3, within noise (min_gain_z 2.0); "
                "it stays", None,
        (Rejection("7", "variant7", ("gain",), "mape_pct gain over champion v3 on the same days is +0.10 ± 0.06, "
                                               "under the 2.0 standard errors a promotion needs"),
         Rejection("8", "variant8", ("gain",), "mape_pct gain over champion v3 on the same days is +0.05 ± 0.01, "
                                               "under the 2.0 standard errors a promotion needs")),
        champion, "mape_pct", None)
    clear = select_candidate([paired("7", 14.9, 0.1, 0.05)], champion, POLICY)  # exactly 2 standard errors
    assert (clear.action, clear.chosen.version) == ("promote", "7")
    assert clear.reason == ("variant7 v7: mape_pct 14.90 against champion v3's 15.00 on the same window (allowed "
                            "regression 0.00 points), a paired gain of +0.10 ± 0.05 points")
    assert select_candidate([paired("7", 14.9, 0.1, 0.0501)], champion, POLICY).chosen is None
    # The others are judged by the best's gain; one measured in part, or not at all, says so.
    half = cand("9", 14.95)
    half.metrics.update(champion_gain_pts=0.05)
    mixed = select_candidate([paired("7", 14.9, 0.1, 0.06), half, cand("8", 14.97)], champion, POLICY)
    assert [(r.version, r.reason) for r in mixed.rejections] == [
        ("7", "mape_pct gain over champion v3 on the same days is +0.10 ± 0.06, under the 2.0 standard errors a "
              "promotion needs"),
        ("9", "mape_pct gain over champion v3 on the same days is unmeasured, under the 2.0 standard errors a "
              "promotion needs"),
        ("8", "mape_pct gain over champion v3 on the same days is unmeasured, under the 2.0 standard errors a "
              "promotion needs")]
    lenient = SelectionPolicy(max_tflite_bytes=6000, max_latency_us=500, min_gain_z=0.5)
    assert select_candidate([paired("7", 14.98, 0.02, 0.1)], champion, lenient).chosen is None
    assert select_candidate([paired("7", 14.9, 0.1, 0.1)], champion, lenient).chosen.version == "7"
    same = select_candidate([paired("7", 15.0, 0.0, 0.0)], champion, POLICY)  # the champion's own forecasts
    assert same.chosen is None and same.rejections[0].rules == ("gain",)
    assert select_candidate([paired("7", 14.99, 0.01, 0.0)], champion, POLICY).chosen.version == "7"
    # Off, or not measurable on the same days, or another metric: the rule of the allowed regression alone.
    off = SelectionPolicy(max_tflite_bytes=6000, max_latency_us=500, min_gain_z=0)
    assert select_candidate(noise, champion, off).chosen.version == "7"
    assert select_candidate([paired("7", 15.0, 0.0, 0.2)], champion, off).chosen.version == "7"
    old_window = Champion("3", {"mape_pct": 15.0}, same_window=False)
    assert select_candidate(noise, old_window, POLICY).chosen.version == "7"
    assert select_candidate([cand("7", 14.9)], champion, POLICY).chosen.version == "7"
    half = cand("7", 14.9)
    half.metrics.update(champion_gain_pts=0.1)
    assert select_candidate([half], champion, POLICY).chosen.version == "7"
    smape = SelectionPolicy(metric="smape_pct", max_tflite_bytes=6000, max_latency_us=500)
    by_smape = paired("7", 14.9, 0.1, 0.06)
    by_smape.metrics["smape_pct"] = 14.0
    assert select_candidate([by_smape], Champion("3", {"smape_pct": 15.0}), smape).chosen.version == "7"
    # Worse than the champion is refused by that rule first, whatever the paired numbers say.
    worse = select_candidate([paired("7", 15.2, 3.0, 0.1)], champion, POLICY)
    assert worse.action == "keep" and worse.rejections[0].rules == ("champion",)


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


def test_each_eligibility_rule_says_what_to_do_at_the_exact_budget():
    at_budget = cand("1", 14.0, size=6000, latency=500.0)
    assert eligibility(at_budget, POLICY) == []
    unmeasured = Candidate(name="demand", version="2", metrics=None, tflite_bytes=None, latency_us=None,
                           builtin_ops_only=None, status="failed")
    assert eligibility(unmeasured, POLICY) == [
        ("failed", "the variant did not build: failed"),
        ("metric", "no finite mape_pct (got None)"),
        ("size", "its .tflite size is unknown; measure the file"),
        ("latency", "its interpreter latency is unknown; measure it"),
        ("spec", "no input specification; a store could not turn raw sales into its inputs"),
        ("ops", "it uses ops outside the LiteRT builtins (or they were not checked); stores run builtin ops only"),
    ]
    over = cand("3", float("inf"), size=6001, latency=500.5)
    assert eligibility(over, POLICY) == [
        ("metric", "no finite mape_pct (got inf)"),
        ("size", ".tflite is 6,001 bytes, over the budget of 6,000"),
        ("latency", "latency 500 us is over the budget of 500 us"),
    ]
    assert eligibility(cand("4", 14.0, ops=False), SelectionPolicy(require_builtin_ops=False)) == []


def test_gates_may_answer_nothing_a_reason_or_several_and_are_named_by_their_type_otherwise():
    class AlertGate:
        def __call__(self, candidate):
            raise ValueError("no alert log")

    gates = [lambda c: None, lambda c: "", lambda c: "one reason", lambda c: ["two", "", "three"], AlertGate()]
    failures = eligibility(cand("1", 14.0), POLICY, gates)
    assert failures == [("gate:<lambda>", "one reason"), ("gate:<lambda>", "two"), ("gate:<lambda>", "three"),
                        ("gate:AlertGate", "gate AlertGate failed (ValueError: no alert log); blocked until it runs")]


def test_a_decision_against_a_champion_reads_in_full():
    champion = Champion("3", {"mape_pct": 15.0})
    candidates = [cand("7", 14.5), cand("8", 14.5, size=5500), cand("9", 13.0, size=9000)]
    decision = select_candidate(candidates, champion, POLICY, baseline_metric=16.0)
    assert decision == Decision(
        "promote", "variant7 v7: mape_pct 14.50 against champion v3's 15.00 on the same window (allowed regression "
                   "0.00 points)", candidates[0],
        (Rejection("9", "variant9", ("size",), ".tflite is 9,000 bytes, over the budget of 6,000"),
         Rejection("8", "variant8", ("outranked",), "eligible, but variant7 v7 is more accurate or equal and "
                                                     "smaller (mape_pct 14.50 vs 14.50)")),
        champion, "mape_pct", 16.0)
    assert decision.moves and decision.rejection_for("1") is None
    assert decision.to_dict() == {
        "action": "promote", "reason": decision.reason, "metric": "mape_pct", "chosen": candidates[0].summary(),
        "champion": {"version": "3", "metrics": {"mape_pct": 15.0}, "same_window": True},
        "baseline_metric": 16.0,
        "rejections": [{"version": "9", "variant": "variant9", "rules": ["size"],
                        "reason": ".tflite is 9,000 bytes, over the budget of 6,000"},
                       {"version": "8", "variant": "variant8", "rules": ["outranked"],
                        "reason": decision.rejections[1].reason}]}
    json.dumps(decision.to_dict())  # a decision record is JSON

    ties = select_candidate([cand("b", 14.0, latency=60.0), cand("a", 14.0, latency=60.0), cand("c", 14.0)],
                            None, POLICY, baseline_metric=16.0)
    assert ties.chosen.version == "c"  # then lower latency, then the version
    assert [r.version for r in ties.rejections] == ["a", "b"]

    old = Champion("3", {"mape_pct": 15.0}, same_window=False)
    kept = select_candidate([cand("7", 15.5)], old, POLICY)
    assert kept == Decision("keep", "no eligible candidate beats champion v3 (mape_pct 15.00); it stays", None,
                            (Rejection("7", "variant7", ("champion",), "mape_pct 15.50 is worse than champion v3's "
                                       "15.00 on its own night's window (allowed regression 0.00 points)"),),
                            old, "mape_pct", None)
    assert kept.to_dict()["chosen"] is None and not kept.moves
    unscored = select_candidate([cand("7", 30.0)], Champion("3", {}), POLICY)
    assert (unscored.action, unscored.reason, unscored.chosen.version) == (
        "promote", "champion v3 has no mape_pct; the most accurate eligible candidate replaces it", "7")
    assert select_candidate([cand("7", 30.0)], Champion("3", None), POLICY).chosen.version == "7"


def test_no_eligible_candidate_keeps_the_champion_or_leaves_the_channel_empty():
    too_big = [cand("7", 14.0, size=7000)]
    kept = select_candidate(too_big, Champion("3", {"mape_pct": 15.0}), POLICY)
    assert (kept.action, kept.reason, kept.chosen, kept.champion.version) == (
        "keep", "no candidate is eligible; champion v3 stays", None, "3")
    assert kept.to_dict()["champion"] == {"version": "3", "metrics": {"mape_pct": 15.0}, "same_window": True}
    empty = select_candidate(too_big, None, POLICY, baseline_metric=16.0)
    assert (empty.action, empty.reason, empty.chosen, empty.baseline_metric) == (
        "none", "no candidate is eligible and the channel has no model yet", None, 16.0)
    assert empty.to_dict()["champion"] is None
    assert empty.rejections == (Rejection("7", "variant7", ("size",), ".tflite is 7,000 bytes, over the budget of 6,000"),)
    several = select_candidate([cand("8", 14.0, size=7000, latency=600.0)], None, POLICY)
    assert several.rejections[0].reason == ".tflite is 7,000 bytes, over the budget of 6,000; latency 600 us is " \
                                           "over the budget of 500 us"


def test_every_bootstrap_refusal_reads_in_full():
    candidates = [cand("1", 14.0), cand("2", 14.5)]
    ceiling = select_candidate([cand("1", 25.5)], None, POLICY, baseline_metric=40.0)
    assert (ceiling.action, ceiling.reason) == ("none", "bootstrap refused: no candidate is under the ceiling")
    assert ceiling.rejections == (Rejection("1", "variant1", ("bootstrap",), "bootstrap: mape_pct 25.50 is over "
                                            "the ceiling 25.00 for a channel's first model"),)
    assert select_candidate([cand("1", 25.0)], None, POLICY, baseline_metric=40.0).action == "bootstrap"
    missing = select_candidate(candidates, None, POLICY, baseline_metric=float("nan"))
    assert (missing.action, missing.reason) == ("none", "bootstrap refused: no baseline to compare the first model with")
    assert missing.rejections == tuple(Rejection(v, f"variant{v}", ("bootstrap",), "bootstrap: the seasonal-naive "
                                                 "baseline on the same window is missing; a channel's first model "
                                                 "must beat it") for v in ("1", "2"))
    tie = select_candidate(candidates, None, POLICY, baseline_metric=14.0)
    assert (tie.action, tie.reason) == ("none", "bootstrap refused: no candidate beats the seasonal-naive rule")
    assert tie.rejection_for("2") == Rejection("2", "variant2", ("bootstrap",), "bootstrap: mape_pct 14.50 does "
                                               "not beat the seasonal-naive rule's 14.00")
    first = select_candidate(candidates, None, POLICY, baseline_metric=16.74)
    assert first.reason == "first model of the channel: variant1 v1 with mape_pct 14.00 (ceiling 25.00, seasonal-naive 16.74)"
    assert first.rejections == (Rejection("2", "variant2", ("outranked",), "eligible, but variant1 v1 is more "
                                          "accurate or equal and smaller (mape_pct 14.00 vs 14.50)"),)
    lenient = select_candidate(candidates, None, SelectionPolicy(bootstrap_requires_baseline=False))
    assert lenient.reason == "first model of the channel: variant1 v1 with mape_pct 14.00 (ceiling 25.00)"


def test_policy_values_are_checked_with_their_name_and_value(tmp_path):
    assert SelectionPolicy(max_tflite_bytes=1, max_latency_us=0.5, bootstrap_max_metric=0.1).max_tflite_bytes == 1
    assert SelectionPolicy(max_regression_pts=0, min_canary_seconds=0, min_gain_z=0).min_canary_seconds == 0
    for values, message in (({"max_tflite_bytes": 0}, "selection policy: max_tflite_bytes=0 must be positive"),
                            ({"bootstrap_max_metric": -1.0}, "selection policy: bootstrap_max_metric=-1.0 must be "
                                                             "positive"),
                            ({"max_regression_pts": -0.1}, "selection policy: max_regression_pts=-0.1 must not be "
                                                           "negative"),
                            ({"min_canary_seconds": -1}, "selection policy: min_canary_seconds=-1 must not be "
                                                         "negative"),
                            ({"min_gain_z": -0.5}, "selection policy: min_gain_z=-0.5 must not be negative")):
        with pytest.raises(ConfigError) as bad:
            SelectionPolicy.from_mapping(values)
        assert str(bad.value) == message
    with pytest.raises(ConfigError) as unknown:
        SelectionPolicy.from_mapping({"max_bytes": 1})
    assert str(unknown.value) == ("selection policy: unknown key(s) ['max_bytes']; known keys are "
                                  f"{sorted(SelectionPolicy().to_dict())}")
    with pytest.raises(ConfigError) as mistyped:
        SelectionPolicy.from_mapping({"max_tflite_bytes": "6kB"})
    assert str(mistyped.value) == "selection policy: '>' not supported between instances of 'str' and 'int'"
    assert SelectionPolicy.from_mapping(None) == SelectionPolicy()
    assert SelectionPolicy().to_dict() == {
        "metric": "mape_pct", "max_tflite_bytes": 6000, "max_latency_us": 1000.0, "require_builtin_ops": True,
        "max_regression_pts": 0.0, "min_gain_z": 2.0, "bootstrap_max_metric": 25.0, "bootstrap_requires_baseline": True,
        "min_canary_seconds": 72000.0}

    assert load_policy() == SelectionPolicy()
    (tmp_path / "policy.TOML").write_text("max_tflite_bytes = 9000\n")
    (tmp_path / "policy.json").write_text('{"max_latency_us": 800}')
    assert load_policy(tmp_path / "policy.TOML").max_tflite_bytes == 9000
    assert load_policy(str(tmp_path / "policy.json")).max_latency_us == 800
    (tmp_path / "bad.json").write_text("max_tflite_bytes = 9000")
    with pytest.raises(ConfigError) as unreadable:
        load_policy(tmp_path / "bad.json")
    assert str(unreadable.value) == (f"promotion policy {tmp_path / 'bad.json'}: Expecting value: line 1 column 1 "
                                     "(char 0); write it as JSON or TOML with SelectionPolicy keys")
    with pytest.raises(ConfigError, match=r"^promotion policy .*missing.toml: \[Errno 2\]"):
        load_policy(tmp_path / "missing.toml")
    (tmp_path / "zero.json").write_text('{"max_tflite_bytes": 0}')
    with pytest.raises(ConfigError) as invalid:
        load_policy(tmp_path / "zero.json")
    assert str(invalid.value) == (f"promotion policy {tmp_path / 'zero.json'}: selection policy: max_tflite_bytes=0 "
                                  "must be positive")


def test_canary_time_counts_no_negative_spans_and_the_refusal_names_the_hours():
    t0 = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
    log = [_entry(2, "6", t0 + timedelta(hours=1)), _entry(1, "5", t0)]  # out of order: sorted by move number
    assert canary_served_seconds(log, "5", t0) == 3600
    assert canary_served_seconds(log, "6", t0) == 0.0  # `now` before its move: nothing served, not negative
    assert canary_served_seconds([_entry(1, "5", t0)], "5", t0 + timedelta(seconds=1)) == 1.0
    policy = SelectionPolicy(min_canary_seconds=7200)
    assert stable_refusal(log, "6", policy, t0 + timedelta(hours=3)) is None  # exactly 2 h: enough
    assert stable_refusal(log, "6", policy, t0 + timedelta(hours=2, minutes=54)) == (
        "version 6 has served 1.9 h on canary, needs 2.0 h before stable")
    assert stable_refusal(log, "9", policy, t0) == "version 9 never served on canary; promote it to canary first"
    long = SelectionPolicy(min_canary_seconds=3600 * 3600)
    assert stable_refusal([_entry(1, "5", t0)], "5", long, t0 + timedelta(hours=3599)) == (
        "version 5 has served 3599.0 h on canary, needs 3600.0 h before stable")


def test_the_metric_ranks_before_the_file_size():
    decision = select_candidate([cand("2", 14.5, size=4000), cand("1", 14.0, size=5900)], None, POLICY,
                                baseline_metric=16.0)
    assert decision.chosen.version == "1" and decision.rejection_for("2").rules == ("outranked",)
