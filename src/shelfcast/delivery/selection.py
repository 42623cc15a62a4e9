"""Choose the night's model: the most accurate candidate that fits the edge budget and passes every gate.

`select_candidate(candidates, champion, policy, gates)` is pure: no I/O, the same inputs give the same decision.
Every candidate that is not chosen gets a `Rejection` naming the rules it failed and why.

Rules, in order:
1. Eligibility, each candidate on its own: it built (`status == "ok"`); its metric is a finite number; its
   `.tflite` is at most `max_tflite_bytes`; its interpreter latency is at most `max_latency_us`; it uses LiteRT
   builtin ops only (when `require_builtin_ops`); it carries its input specification (`details["input_spec"]`);
   and every gate passes. A gate is any callable
   `gate(candidate) -> None | str | list[str]` returning rejection reasons (the alert gate is one); a gate that
   raises rejects the candidate (fail closed).
2. Rank the eligible by the metric (lower is better), then smaller file, then lower latency, then version.
3. Against a champion (the model stable stores run, scored on the same window): the best is chosen when its
   metric is at most the champion's plus `max_regression_pts`. Where the retrain also measured the paired
   gain (`champion_gain_pts` and its standard error `champion_gain_se`: the champion's APE minus the
   candidate's on the same holdout days), the best must gain something, and at least `min_gain_z` standard
   errors, as well, so a candidate that differs from the champion only by noise (or not at all) does not move
   every store; `min_gain_z = 0` lets a fresh model as accurate as the champion win.
4. Bootstrap, when the channel has no champion yet: there is nothing to compare with, so the best must stay
   under the absolute ceiling `bootstrap_max_metric` and beat the seasonal-naive rule on the same window
   (`baseline_metric`). Without a baseline the bootstrap is refused unless `bootstrap_requires_baseline` is
   off, so a first model is never promoted on its own word.

A version reaches `stable` only after serving on `canary` for `min_canary_seconds` (`canary_served_seconds`
measures it from the canary's promotion log); `stable`'s first version follows the same rule, so the very first
model a chain runs in production has been through canary stores too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from shelfcast.contract.errors import ConfigError
from shelfcast.tracking import Candidate, Champion, finite_number

Gate = Callable[[Any], "None | str | Iterable[str]"]


@dataclass(frozen=True)
class SelectionPolicy:
    """The edge budget and the promotion rules. Build from a mapping with `from_mapping` (validated)."""

    metric: str = "mape_pct"
    max_tflite_bytes: int = 6_000
    max_latency_us: float = 1_000.0
    require_builtin_ops: bool = True
    max_regression_pts: float = 0.0
    min_gain_z: float = 2.0
    bootstrap_max_metric: float = 25.0
    bootstrap_requires_baseline: bool = True
    min_canary_seconds: float = 20 * 3600.0

    def __post_init__(self) -> None:
        for name in ("max_tflite_bytes", "max_latency_us", "bootstrap_max_metric"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"selection policy: {name}={getattr(self, name)!r} must be positive")
        for name in ("max_regression_pts", "min_gain_z", "min_canary_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"selection policy: {name}={getattr(self, name)!r} must not be negative")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "SelectionPolicy":
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"selection policy: unknown key(s) {unknown}; known keys are {sorted(known)}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"selection policy: {exc}") from None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Rejection:
    version: str
    variant: str
    rules: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict:
        return {"version": self.version, "variant": self.variant, "rules": list(self.rules), "reason": self.reason}


@dataclass(frozen=True)
class Decision:
    """What selection decided: `action` is `promote`, `bootstrap`, `keep` (the champion stays) or `none`."""

    action: str
    reason: str
    chosen: Candidate | None
    rejections: tuple[Rejection, ...]
    champion: Champion | None
    metric: str
    baseline_metric: float | None = None

    @property
    def moves(self) -> bool:
        return self.chosen is not None

    def rejection_for(self, version: str) -> Rejection | None:
        return next((r for r in self.rejections if r.version == version), None)

    def to_dict(self) -> dict:
        return {
            "action": self.action,
            "reason": self.reason,
            "metric": self.metric,
            "chosen": self.chosen.summary() if self.chosen else None,
            "champion": ({"version": self.champion.version, "metrics": dict(self.champion.metrics),
                          "same_window": self.champion.same_window} if self.champion else None),
            "baseline_metric": self.baseline_metric,
            "rejections": [r.to_dict() for r in self.rejections],
        }


def _gate_name(gate: Gate) -> str:
    return getattr(gate, "__name__", None) or type(gate).__name__


def _gate_reasons(gate: Gate, candidate: Candidate) -> list[str]:
    try:
        outcome = gate(candidate)
    except Exception as exc:  # noqa: BLE001 - a broken gate must block, not crash or pass
        return [f"gate {_gate_name(gate)} failed ({type(exc).__name__}: {exc}); blocked until it runs"]
    if outcome is None:
        return []
    if isinstance(outcome, str):
        return [outcome] if outcome else []
    return [str(reason) for reason in outcome if reason]


def eligibility(candidate: Candidate, policy: SelectionPolicy, gates: Sequence[Gate] = ()) -> list[tuple[str, str]]:
    """Every (rule, reason) the candidate fails on its own; empty when it is eligible."""
    failures: list[tuple[str, str]] = []
    if candidate.status != "ok":
        failures.append(("failed", f"the variant did not build: {candidate.reason or candidate.status}"))
    if candidate.metric(policy.metric) is None:
        failures.append(("metric", f"no finite {policy.metric} (got {(candidate.metrics or {}).get(policy.metric)!r})"))
    if candidate.tflite_bytes is None:
        failures.append(("size", "its .tflite size is unknown; measure the file"))
    elif candidate.tflite_bytes > policy.max_tflite_bytes:
        failures.append(("size", f".tflite is {candidate.tflite_bytes:,} bytes, over the budget of "
                                 f"{policy.max_tflite_bytes:,}"))
    if candidate.latency_us is None:
        failures.append(("latency", "its interpreter latency is unknown; measure it"))
    elif candidate.latency_us > policy.max_latency_us:
        failures.append(("latency", f"latency {candidate.latency_us:,.0f} us is over the budget of "
                                    f"{policy.max_latency_us:,.0f} us"))
    if not isinstance((candidate.details or {}).get("input_spec"), Mapping):
        failures.append(("spec", "no input specification; a store could not turn raw sales into its inputs"))
    if policy.require_builtin_ops and candidate.builtin_ops_only is not True:
        failures.append(("ops", "it uses ops outside the LiteRT builtins (or they were not checked); "
                                "stores run builtin ops only"))
    for gate in gates:
        failures.extend((f"gate:{_gate_name(gate)}", reason) for reason in _gate_reasons(gate, candidate))
    return failures


def _rank_key(metric: str):
    return lambda c: (c.metric(metric), c.tflite_bytes, c.latency_us, c.version)


def select_candidate(
    candidates: Sequence[Candidate],
    champion: Champion | None,
    policy: SelectionPolicy,
    gates: Sequence[Gate] = (),
    *,
    baseline_metric: float | None = None,
) -> Decision:
    """Decide which candidate (if any) to promote; see the module docstring for the rules."""
    m = policy.metric
    rejections: list[Rejection] = []
    eligible: list[Candidate] = []
    for candidate in candidates:
        failures = eligibility(candidate, policy, gates)
        if failures:
            rejections.append(Rejection(candidate.version, candidate.variant, tuple(r for r, _ in failures),
                                        "; ".join(reason for _, reason in failures)))
        else:
            eligible.append(candidate)
    eligible.sort(key=_rank_key(m))

    def decide(action: str, reason: str, chosen: Candidate | None) -> Decision:
        return Decision(action, reason, chosen, tuple(rejections), champion, m, baseline_metric)

    def reject_all(rule: str, reason_for: Callable[[Candidate], str]) -> None:
        rejections.extend(Rejection(c.version, c.variant, (rule,), reason_for(c)) for c in eligible)

    if not eligible:
        if champion is not None:
            return decide("keep", f"no candidate is eligible; champion v{champion.version} stays", None)
        return decide("none", "no candidate is eligible and the channel has no model yet", None)

    best = eligible[0]
    best_value = best.metric(m)
    if champion is not None:
        champion_value = _champion_value(champion, m)
        limit = None if champion_value is None else champion_value + policy.max_regression_pts
        window = "on the same window" if champion.same_window else "on its own night's window"
        if limit is not None and best_value > limit:
            reject_all("champion", lambda c: (
                f"{m} {c.metric(m):.2f} is worse than champion v{champion.version}'s {champion_value:.2f} {window} "
                f"(allowed regression {policy.max_regression_pts:.2f} points)"))
            return decide("keep", f"no eligible candidate beats champion v{champion.version} "
                                  f"({m} {champion_value:.2f}); it stays", None)
        gain, se = best.metric("champion_gain_pts"), best.metric("champion_gain_se")
        paired = champion.same_window and m == "mape_pct" and gain is not None and se is not None
        if paired and policy.min_gain_z > 0 and (gain <= 0 or gain < policy.min_gain_z * se):
            reject_all("gain", lambda c: (
                f"{m} gain over champion v{champion.version} on the same days is "
                f"{_gain_text(c)}, under the {policy.min_gain_z:.1f} standard errors a promotion needs"))
            return decide("keep", f"{best.label} gains {_gain_text(best)} {m} points over champion "
                                  f"v{champion.version}, within noise (min_gain_z {policy.min_gain_z:.1f}); "
                                  f"it stays", None)
        _reject_outranked(rejections, eligible, best, m)
        if limit is None:
            reason = f"champion v{champion.version} has no {m}; the most accurate eligible candidate replaces it"
        else:
            reason = (f"{best.label}: {m} {best_value:.2f} against champion v{champion.version}'s "
                      f"{champion_value:.2f} {window} (allowed regression {policy.max_regression_pts:.2f} points)")
            if paired:
                reason += f", a paired gain of {_gain_text(best)} points"
        return decide("promote", reason, best)

    # Bootstrap: the channel's first model.
    if best_value > policy.bootstrap_max_metric:
        reject_all("bootstrap", lambda c: (f"bootstrap: {m} {c.metric(m):.2f} is over the ceiling "
                                           f"{policy.bootstrap_max_metric:.2f} for a channel's first model"))
        return decide("none", "bootstrap refused: no candidate is under the ceiling", None)
    if baseline_metric is None or not math.isfinite(baseline_metric):
        if policy.bootstrap_requires_baseline:
            reject_all("bootstrap", lambda c: ("bootstrap: the seasonal-naive baseline on the same window is "
                                               "missing; a channel's first model must beat it"))
            return decide("none", "bootstrap refused: no baseline to compare the first model with", None)
    elif best_value >= baseline_metric:
        reject_all("bootstrap", lambda c: (f"bootstrap: {m} {c.metric(m):.2f} does not beat the seasonal-naive "
                                           f"rule's {baseline_metric:.2f}"))
        return decide("none", "bootstrap refused: no candidate beats the seasonal-naive rule", None)
    _reject_outranked(rejections, eligible, best, m)
    against = "" if baseline_metric is None else f", seasonal-naive {baseline_metric:.2f}"
    return decide("bootstrap", f"first model of the channel: {best.label} with {m} {best_value:.2f} "
                               f"(ceiling {policy.bootstrap_max_metric:.2f}{against})", best)


def _gain_text(candidate: Candidate) -> str:
    gain, se = candidate.metric("champion_gain_pts"), candidate.metric("champion_gain_se")
    return "unmeasured" if gain is None or se is None else f"{gain:+.2f} ± {se:.2f}"


def _champion_value(champion: Champion, metric: str) -> float | None:
    return finite_number((champion.metrics or {}).get(metric))


def _reject_outranked(rejections: list[Rejection], eligible: list[Candidate], best: Candidate, m: str) -> None:
    rejections.extend(
        Rejection(c.version, c.variant, ("outranked",),
                  f"eligible, but {best.label} is more accurate or equal and smaller "
                  f"({m} {best.metric(m):.2f} vs {c.metric(m):.2f})")
        for c in eligible[1:]
    )


def canary_served_seconds(canary_log: Sequence[Any], version: str, now: datetime) -> float:
    """How long `version` has served on canary: the sum of the spans between each log entry that moved canary to
    it and the next entry (or `now`). `canary_log` holds pointer entries (`seq`, `version`, `moved_at`)."""
    from shelfcast.contract.clock import parse as parse_utc

    entries = sorted(canary_log, key=lambda e: e.seq)
    served = 0.0
    for entry, following in zip(entries, list(entries[1:]) + [None]):
        if entry.version != version:
            continue
        end = parse_utc(following.moved_at) if following is not None else now
        served += max(0.0, (end - parse_utc(entry.moved_at)).total_seconds())
    return served


def stable_refusal(canary_log: Sequence[Any], version: str, policy: SelectionPolicy, now: datetime) -> str | None:
    """Why `version` may not go to stable yet (None when it may): it must have served on canary long enough."""
    if not any(e.version == version for e in canary_log):
        return f"version {version} never served on canary; promote it to canary first"
    served = canary_served_seconds(canary_log, version, now)
    if served < policy.min_canary_seconds:
        return (f"version {version} has served {served / 3600:.1f} h on canary, needs "
                f"{policy.min_canary_seconds / 3600:.1f} h before stable")
    return None


def load_policy(path=None) -> SelectionPolicy:
    """The policy from a JSON or TOML file of `SelectionPolicy` keys (defaults when `path` is None)."""
    if path is None:
        return SelectionPolicy()
    import json
    import tomllib
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
        values = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"promotion policy {path}: {exc}; write it as JSON or TOML with SelectionPolicy keys") from None
    try:
        return SelectionPolicy.from_mapping(values)
    except ConfigError as exc:
        raise ConfigError(f"promotion policy {path}: {exc}") from None
