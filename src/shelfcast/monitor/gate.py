"""The promotion gate: an open alert of a blocking rule on a candidate blocks its promotion unless forced with a
reason.

The blocking rules are `alerts.blocking_rules` of the thresholds (by default every candidate rule but
cohort_regression), whatever the alert's severity: severity decides who is told (a candidate worse than the
champion notifies, it does not page), the rule decides what the gate does.

`alert_gate(alert_log, thresholds)` returns a callable `(candidate) -> list[str]` of rejection reasons, the shape
the promotion selection takes for every gate. A candidate needs `name`, `version` (and `metrics`, optionally
`variant`): the gate looks up open or acknowledged alerts of a blocking rule raised on exactly that model version
(an alert's fingerprint leaves the version out, so it follows its variant: tonight's check of a newer version
moves it on, or resolves it). The candidate check must run before the gate: `flows/retrain.py` runs it as soon as
candidates are tagged. Acknowledging an alert does not unblock it; only the condition clearing (the alert
resolves) or a forced promotion does. Every block and every override is written to the alert's history with who
and why.
"""

from __future__ import annotations

import getpass
from typing import Callable

from shelfcast.monitor.rules import CandidateLike, candidate_model
from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.thresholds import Thresholds


def alert_gate(
    alert_log: AlertLog, thresholds: Thresholds, force_reason: str | None = None, actor: str | None = None
) -> Callable[[CandidateLike], list[str]]:
    """A gate over `alert_log` for the blocking rules of `thresholds`. With `force_reason`, blocking alerts are
    logged as overridden and pass."""
    if force_reason is not None and not force_reason.strip():
        raise ValueError("a forced promotion needs a reason: pass --reason with why the alert may be ignored")
    who = actor or getpass.getuser()
    rules = set(thresholds.alerts.blocking_rules)

    def gate(candidate: CandidateLike) -> list[str]:
        model = candidate_model(candidate)
        blocking = [a for a in alert_log.live_candidate_alerts(model, candidate.version) if rules & rules_of(a)]
        label = f"{model} v{candidate.version}"
        if force_reason:
            for alert in blocking:
                alert_log.log_event(alert.id, "gate_forced", who, f"{label} promoted despite this alert: {force_reason}")
            return []
        for alert in blocking:
            alert_log.log_event(alert.id, "gate_blocked", "gate", f"blocked the promotion of {label}")
        return [
            f"{a.severity} alert {a.id} ({a.rule}, {a.status} since {a.first_seen}): {a.message}; "
            f"promote anyway only with --force --reason"
            for a in blocking
        ]

    gate.__name__ = gate.__qualname__ = "alert_gate"
    return gate


def rules_of(alert) -> set[str]:
    """Every rule an alert stands for: a candidate's findings merge into one alert, named after the most specific
    rule, with the others in its context (`shelfcast.monitor.rules.merge_candidate_findings`)."""
    return {alert.rule, *alert.context.get("also_rules", ())}
