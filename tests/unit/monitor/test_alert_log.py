"""The alert log: dedup by fingerprint, cooldown, auto-resolve, reopen, on-call transitions, the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shelfcast.monitor.evaluation import ExpectedError
from shelfcast.monitor.findings import CheckResult, Finding, Scope
from shelfcast.monitor.alert_log import AlertNotFound, AlertStateError, AlertLog, Links
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit

POLICY = load_thresholds().alerts  # cooldown 24 h, notify from warning
T0 = datetime(2017, 3, 2, 3, 0, 0)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def finding(rule="live_accuracy", severity="critical", store=4, observed=27.9):
    return Finding(rule, severity, "champion", Scope("store", store=store), observed, 21.1, "MAPE %",
                   f"store {store}: MAPE {observed} %", {"window_days": 1})


def fired(*findings: Finding) -> CheckResult:
    return CheckResult(list(findings), {f.fingerprint for f in findings})


def cleared(*findings: Finding) -> CheckResult:
    return CheckResult([], {f.fingerprint for f in findings})


@pytest.fixture
def store(tmp_path):
    return AlertLog(tmp_path / "alerts.db")


def test_a_new_finding_opens_an_alert_and_queues_one_notification(store):
    links = Links("run-1", "http://mlflow/#/experiments/1/runs/run-1", "fr-1", "http://prefect/runs/flow-run/fr-1")
    summary = store.record(fired(finding()), POLICY, links, now=at(0))
    assert summary.opened == [1] and summary.queued == 1
    alert = store.get(1)
    assert (alert.rule, alert.severity, alert.status, alert.scope_label, alert.count) == ("live_accuracy", "critical", "open", "store 4", 1)
    assert (alert.observed, alert.threshold, alert.store, alert.context) == (27.9, 21.1, 4, {"window_days": 1})
    assert alert.first_seen == alert.last_seen == "2017-03-02T03:00:00Z"
    assert (alert.mlflow_run_id, alert.prefect_flow_run_id, alert.prefect_url) == ("run-1", "fr-1", links.prefect_url)
    [message] = store.claim_outbox(now=at(0))
    assert message.kind == "fired" and "store 4" in message.payload["text"]


def test_the_same_finding_again_is_the_same_alert_without_a_new_notification(store):
    store.record(fired(finding()), POLICY, now=at(0))
    summary = store.record(fired(finding(observed=30.1)), POLICY, now=at(1))
    assert summary.repeated == [1] and summary.queued == 0
    alert = store.get(1)
    assert (alert.count, alert.observed, alert.first_seen, alert.last_seen) == (2, 30.1, "2017-03-02T03:00:00Z", "2017-03-02T04:00:00Z")
    assert len(store.list()) == 1


def test_a_still_open_alert_is_reminded_once_per_cooldown_unless_acknowledged(store):
    store.record(fired(finding()), POLICY, now=at(0))
    assert store.record(fired(finding()), POLICY, now=at(23)).queued == 0
    reminder = store.record(fired(finding()), POLICY, now=at(24))
    assert reminder.queued == 1
    assert [m.kind for m in store.claim_outbox(now=at(24))] == ["fired", "reminder"]
    store.acknowledge(1, "oncall", "looking", now=at(25))
    assert store.record(fired(finding()), POLICY, now=at(60)).queued == 0
    assert store.get(1).status == "acknowledged" and store.get(1).count == 4


def test_info_findings_are_recorded_but_not_notified(store):
    summary = store.record(fired(finding(rule="input_drift", severity="info")), POLICY, now=at(0))
    assert summary.opened == [1] and summary.queued == 0
    assert store.outbox() == []


def test_an_alert_resolves_when_its_check_runs_clean_and_only_then(store):
    store.record(fired(finding()), POLICY, now=at(0))
    untouched = store.record(cleared(finding(store=5)), POLICY, now=at(1))
    assert untouched.resolved == [] and store.get(1).status == "open"
    summary = store.record(cleared(finding()), POLICY, now=at(2))
    assert summary.resolved == [1] and summary.queued == 1
    alert = store.get(1)
    assert (alert.status, alert.resolved_by, alert.resolved_at) == ("resolved", "auto", "2017-03-02T05:00:00Z")
    assert [m.kind for m in store.claim_outbox(now=at(2))] == ["fired", "resolved"]


def test_firing_again_within_the_cooldown_reopens_silently_after_it_a_new_incident(store):
    store.record(fired(finding()), POLICY, now=at(0))
    store.record(cleared(finding()), POLICY, now=at(1))
    flap = store.record(fired(finding()), POLICY, now=at(5))
    assert flap.reopened == [1] and flap.queued == 0
    assert store.get(1).status == "open" and store.get(1).count == 2
    store.record(cleared(finding()), POLICY, now=at(6))
    later = store.record(fired(finding()), POLICY, now=at(40))
    assert later.opened == [2] and later.queued == 1
    assert [a.id for a in store.list(("resolved",))] == [1]


def test_one_run_counts_a_fingerprint_once(store):
    summary = store.record(fired(finding(), finding(observed=31.0)), POLICY, now=at(0))
    assert summary.opened == [1] and store.get(1).count == 1


def test_ack_and_resolve_by_hand_and_their_errors(store):
    store.record(fired(finding()), POLICY, now=at(0))
    acked = store.acknowledge(1, "ana", "checking the feed", now=at(1))
    assert (acked.status, acked.acknowledged_by, acked.note) == ("acknowledged", "ana", "checking the feed")
    with pytest.raises(AlertStateError, match="already acknowledged"):
        store.acknowledge(1, "ana")
    resolved = store.resolve(1, "ana", "feed fixed", now=at(2))
    assert (resolved.status, resolved.resolved_by) == ("resolved", "ana")
    with pytest.raises(AlertStateError, match="already resolved"):
        store.resolve(1, "ana")
    with pytest.raises(AlertNotFound, match="no alert with id 9"):
        store.acknowledge(9, "ana")
    assert [e["kind"] for e in store.events(1)] == ["opened", "acknowledged", "resolved"]


def test_list_orders_by_severity_and_filters(store):
    store.record(fired(finding(rule="input_drift", severity="info", store=1), finding(store=2),
                       finding(rule="cohort_regression", severity="warning", store=3)), POLICY, now=at(0))
    assert [a.severity for a in store.list()] == ["critical", "warning", "info"]
    assert [a.store for a in store.list(min_severity="warning")] == [2, 3]
    assert [a.store for a in store.list(rule="input_drift")] == [1]


def test_a_claimed_message_is_not_claimed_twice_until_its_lease_expires(store):
    store.record(fired(finding()), POLICY, now=at(0))
    assert len(store.claim_outbox(now=at(0), lease_s=60)) == 1
    assert store.claim_outbox(now=at(0)) == []
    [again] = store.claim_outbox(now=at(0.02))  # 72 s later: the first run died holding it
    store.mark_delivered(again, 1, "HTTP 200", now=at(0.03))
    assert store.claim_outbox(now=at(1)) == [] and store.outbox() == []
    assert store.outbox(pending_only=False)[0]["delivered_at"] == "2017-03-02T03:01:48Z"


def test_failed_delivery_is_retried_later_then_set_aside(store):
    store.record(fired(finding()), POLICY, now=at(0))
    [message] = store.claim_outbox(now=at(0))
    store.mark_failed(message, 4, "HTTP 503", retry_at=at(1), dead=False, now=at(0))
    assert store.claim_outbox(now=at(0.5)) == []
    [message] = store.claim_outbox(now=at(1))
    assert message.attempts == 4
    store.mark_failed(message, 4, "HTTP 404", retry_at=at(2), dead=True, now=at(1))
    assert store.claim_outbox(now=at(5)) == []
    row = store.outbox()[0]
    assert row["dead_at"] and row["attempts"] == 8 and row["last_error"] == "HTTP 404"
    assert store.events(1)[-1]["kind"] == "notify_dead"


def test_accuracy_points_upsert_per_day_and_expected_errors_round_trip(store):
    point = {"subject": "champion", "scope": Scope("store", store=3), "date": "2017-03-02", "n": 50,
             "mape_pct": 14.0, "expected_pct": 13.0, "threshold_pct": 19.0}
    store.record_accuracy([point], now=at(0))
    store.record_accuracy([{**point, "mape_pct": 15.5}], now=at(1))
    [row] = store.accuracy("champion", "store")
    assert (row["store"], row["mape_pct"], row["threshold_pct"]) == (3, 15.5, 19.0)
    expected = ExpectedError.flat(12.5)
    store.save_expected("lstm16", 4, expected.to_json())
    saved = store.load_expected("lstm16", "4")
    assert "NaN" not in saved and ExpectedError.from_json(saved).to_json() == expected.to_json()
    assert store.load_expected("lstm16", 5) is None


def test_two_stores_on_one_file_see_each_other(tmp_path):
    first, second = AlertLog(tmp_path / "a.db"), AlertLog(tmp_path / "a.db")
    first.record(fired(finding()), POLICY, now=at(0))
    assert second.record(fired(finding()), POLICY, now=at(1)).repeated == [1]
