"""Accuracy rules: candidates after a retrain, and the live champion after new actuals arrive.

Pure functions: evaluation frames (see `evaluation.py`) and small metric dicts in, `CheckResult` out.

Severity is tied to accuracy, not to a test statistic: a rule fires only when the error is worse by a
material amount (points of MAPE, from the thresholds file) AND that excess is unlikely to be noise at the tail
probability of z standard normal deviations. For the live champion the noise test compares the spread of the
window's Pearson residuals with the champion's own on its holdout (chi-square); for paired candidate-versus-
champion days it is a t test of the APE differences. Large samples therefore never fire on trivial differences,
and small samples (one item on one day) never fire on a single unlucky day.

Broad findings explain narrow ones: a store that fired is left out when items are judged (and the items that
fired when stores are), cohorts are judged without both, and the chain fires only for what they do not explain
or when they cover most of it (then it replaces them); more than `MAX_COHORT_FINDINGS` cohorts become one
finding; a candidate pages once, naming everything wrong with it. Everything evaluated still counts as
checked, so the alerts a broader finding replaces resolve.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm, t

from shelfcast.tracking import finite_number
from shelfcast.monitor.evaluation import EVAL_COLUMNS, ExpectedError, ape_pct, pearson_r2, require_columns
from shelfcast.monitor.findings import CheckResult, Finding, Scope
from shelfcast.monitor.thresholds import CANDIDATE_RULES, Thresholds, severity_rank

MAX_COHORT_FINDINGS = 5
METRIC_KEYS = {  # evaluation-frame column -> candidate.metrics key of the same MAPE
    "forecast": "mape_pct",
    "champion_forecast": "champion_mape_pct",
    "naive_forecast": "naive_mape_pct",
    "parent_forecast": "parent_mape_pct",
}


class CandidateLike(Protocol):
    name: str
    version: Any
    run_id: str | None
    metrics: dict


def candidate_model(candidate: CandidateLike) -> str:
    """The model part of a candidate's scope: its name, plus its variant when the name is shared by variants."""
    variant = getattr(candidate, "variant", None) or (candidate.metrics or {}).get("variant")
    return candidate.name if not variant or variant == candidate.name else f"{candidate.name}/{variant}"


def critical_t(z: float, n) -> np.ndarray:
    """Student's t quantile with the same tail probability as `z` under the normal, for n observations."""
    return t.isf(norm.sf(z), np.maximum(np.asarray(n, dtype=np.float64) - 1, 1))


def frame_metrics(frame: pd.DataFrame) -> dict:
    """MAPE of every forecast column present, over the same rows (days with sales > 0)."""
    require_columns(frame, EVAL_COLUMNS, "the evaluation frame")
    metrics = {}
    for column, key in METRIC_KEYS.items():
        if column in frame.columns:
            ape = ape_pct(frame["actual"], frame[column])
            metrics[key] = float(np.nanmean(ape)) if np.isfinite(ape).any() else float("nan")
    return metrics


def _window(frame: pd.DataFrame) -> str:
    dates = pd.DatetimeIndex(frame["date"])
    return f"{dates.min():%Y-%m-%d}..{dates.max():%Y-%m-%d}"


def check_candidate(candidate: CandidateLike, thresholds: Thresholds, frame: pd.DataFrame | None = None) -> CheckResult:
    """Every candidate rule on one candidate.

    With `frame`, MAPEs come from its columns (all on the same rows); without it, from `candidate.metrics`
    (`mape_pct`, `champion_mape_pct`, `naive_mape_pct`, `parent_mape_pct`). A rule whose comparison is missing
    is skipped and says why (no champion yet: bootstrap; no float parent: not an INT8 model).
    """
    metrics = dict(candidate.metrics or {})
    window = "its evaluation window"
    if frame is not None:
        metrics.update(frame_metrics(frame))
        window = _window(frame)
    model = candidate_model(candidate)
    scope = Scope("model", model=model, version=None if candidate.version is None else str(candidate.version))
    result = CheckResult()

    def known(key: str) -> float | None:
        return finite_number(metrics.get(key))

    mape = known("mape_pct")
    if mape is None:
        result.skipped.append(f"candidate {model}: no mape_pct; pass an evaluation frame or metrics['mape_pct']")
        return result
    context = {"window": window, "run_id": getattr(candidate, "run_id", None), **{k: metrics.get(k) for k in METRIC_KEYS.values()}}

    def rule(name: str, severity: str, observed: float, threshold: float, fires: bool, unit: str, message: str):
        result.check(name, "candidate", scope)
        if fires:
            result.findings.append(Finding(name, severity, "candidate", scope, observed, threshold, unit, message, context))

    ceiling = thresholds.mape_ceiling
    rule("mape_ceiling", ceiling.severity, mape, ceiling.max_mape_pct, mape > ceiling.max_mape_pct, "MAPE %",
         f"MAPE {mape:.2f} % on {window} is above the ceiling of {ceiling.max_mape_pct:.2f} %")

    champion = known("champion_mape_pct")
    if champion is None:
        result.skipped.append(f"champion_regression on {model}: no champion on this window (bootstrap)")
    else:
        limit = thresholds.champion_regression
        worse = mape - champion
        rule("champion_regression", limit.severity, worse, limit.max_points, worse > limit.max_points, "points",
             f"MAPE {mape:.2f} % is {worse:+.2f} points against the champion's {champion:.2f} % on {window} "
             f"(allowed +{limit.max_points:.2f})")

    naive = known("naive_mape_pct")
    if naive is None:
        result.skipped.append(f"seasonal_naive on {model}: no seasonal-naive forecast on this window")
    else:
        rule_ = thresholds.seasonal_naive
        bar = naive - rule_.min_margin_points
        rule("seasonal_naive", rule_.severity, mape, bar, mape >= bar, "MAPE %",
             f"MAPE {mape:.2f} % does not beat the seasonal-naive rule (mean of lags 7 and 14): {naive:.2f} % "
             f"on {window}" + (f", by the required {rule_.min_margin_points:.2f} points" if rule_.min_margin_points else ""))

    parent = known("parent_mape_pct")
    if parent is not None:
        limit = thresholds.int8_drop
        drop = mape - parent
        rule("int8_drop", limit.severity, drop, limit.max_points, drop > limit.max_points, "points",
             f"the INT8 model loses {drop:.2f} points against its float parent ({mape:.2f} % vs {parent:.2f} %) "
             f"on {window} (allowed {limit.max_points:.2f})")

    if frame is not None and "champion_forecast" in frame.columns:
        result.extend(_candidate_cohorts(frame, scope, thresholds))
    result.findings = merge_candidate_findings(result.findings)
    return result


def merge_candidate_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per candidate: the most severe, most specific one (`CANDIDATE_RULES` order), naming the
    others in its message, so a broken model pages once with everything that is wrong with it."""
    if len(findings) <= 1:
        return findings
    top = max(severity_rank(f.severity) for f in findings)
    primary = min((f for f in findings if severity_rank(f.severity) == top), key=lambda f: CANDIDATE_RULES.index(f.rule))
    others = [f for f in findings if f is not primary]
    also = [
        f"{f.rule} {f.observed:{'+.2f' if f.unit == 'points' else '.2f'}} against {f.threshold:.2f} {f.unit}"
        + (f" on {f.scope.label}" if f.scope != primary.scope else "")
        for f in others
    ]
    return [dataclasses.replace(primary, message=f"{primary.message}; also: {'; '.join(also)}",
                                context={**primary.context, "also": [f.message for f in others],
                                         "also_rules": [f.rule for f in others]})]


def _candidate_cohorts(frame: pd.DataFrame, model_scope: Scope, thresholds: Thresholds) -> CheckResult:
    """Paired per-cohort regression: the candidate's minus the champion's APE on the same days."""
    limit = thresholds.cohort_regression
    diff = ape_pct(frame["actual"], frame["forecast"]) - ape_pct(frame["actual"], frame["champion_forecast"])
    data = frame[["store", "item", "date"]].assign(observed=diff, expected=0.0).dropna(subset=["observed"])
    stats = _window_stats(data, ["store", "item"], limit.windows_days, limit.z)
    stats = stats[stats["n"] >= limit.min_observations].assign(threshold=limit.max_points)
    result = _fire(stats, ["store", "item"], "cohort", "cohort_regression", "candidate", limit, model_scope,
                   "points", lambda r: f"{r.observed:+.2f} points against the champion on the same {int(r.n)} days "
                   f"({r.start:%Y-%m-%d}..{r.end:%Y-%m-%d}); allowed +{r.threshold:.2f}")
    result.findings = collapse_cohorts(result.findings, thresholds, model_scope)
    return result


def _window_stats(data: pd.DataFrame, keys: list[str], windows_days, z: float, newest=None) -> pd.DataFrame:
    """Per group and per window of the last N days: size, mean `observed` and `expected`, and a test statistic
    `t` with its critical value `crit`, at the tail probability of `z` under the normal.

    With a `dispersion` column (each row's squared Pearson residual over a healthy model's dispersion, see
    `ExpectedError`) the test is chi-square: their sum over n rows against chi2(n). Without it, a one-sample
    t test of the row-wise excess (`observed - expected`, e.g. paired differences of two models' APE).
    """
    newest = pd.Timestamp(data["date"].max() if newest is None else newest)
    chi2_test = "dispersion" in data.columns and bool(data["dispersion"].notna().all())
    data = data.assign(excess=data["observed"] - data["expected"], dispersion=data["dispersion"] if chi2_test else 0.0)
    parts = []
    for days in windows_days:
        sub = data[data["date"] > newest - pd.Timedelta(days=days)]
        if sub.empty:
            continue
        grouped = sub.groupby(keys) if keys else sub.assign(_all=0).groupby("_all")
        agg = grouped.agg(n=("excess", "size"), observed=("observed", "mean"), expected=("expected", "mean"),
                          excess=("excess", "mean"), sd=("excess", "std"), dispersion=("dispersion", "sum"),
                          start=("date", "min"), end=("date", "max")).reset_index()
        parts.append(agg.assign(window_days=days))
    if not parts:
        return pd.DataFrame(columns=[*keys, "n", "observed", "expected", "excess", "t", "crit", "start", "end",
                                     "window_days"])
    stats = pd.concat(parts, ignore_index=True)
    if chi2_test:
        return stats.assign(t=stats["dispersion"], crit=chi2.isf(norm.sf(z), stats["n"]))
    se = np.maximum(stats["sd"].fillna(0.0) / np.sqrt(stats["n"]), 1e-9)
    return stats.assign(t=stats["excess"] / se, crit=critical_t(z, stats["n"]))


def _fire(stats, keys, kind, rule, subject, limit, base: Scope, unit, describe) -> CheckResult:
    """One check per group; a finding for each group where some window is material and significant.

    `stats` has per group and window: observed, expected, threshold, n, the statistic t and its critical value
    crit. Among the firing windows of a group the strongest (largest t over crit) is reported; all of them are
    in the context.
    """
    result = CheckResult()
    if stats.empty:
        return result
    stats = stats.copy()
    stats["fires"] = (stats["observed"] > stats["threshold"]) & (stats["t"] > stats["crit"])
    stats["strength"] = stats["t"] / stats["crit"]
    group_keys = keys or ["_all"]
    if not keys:
        stats = stats.assign(_all=0)
    for group, rows in stats.groupby(group_keys, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        where = dict(zip(keys, (int(g) for g in group))) if keys else {}
        scope = Scope(kind, model=base.model, version=base.version, **where)
        result.check(rule, subject, scope)
        firing = rows[rows["fires"]]
        if firing.empty:
            continue
        best = firing.loc[firing["strength"].idxmax()]
        context = {
            "window": f"{best.start:%Y-%m-%d}..{best.end:%Y-%m-%d}",
            "window_days": int(best.window_days),
            "n": int(best.n),
            "expected": float(best.expected),
            "t": float(best.t),
            "critical_t": float(best.crit),
            "firing_windows_days": sorted(int(d) for d in firing["window_days"]),
        }
        result.findings.append(
            Finding(rule, limit.severity, subject, scope, float(best.observed), float(best.threshold), unit,
                    f"{scope.label}: {describe(best)}", context)
        )
    return result


def check_live(frame: pd.DataFrame, expected: ExpectedError, thresholds: Thresholds) -> CheckResult:
    """The live champion on actuals: chain, store and item windows (`live_accuracy`), then (store, item)
    cohorts (`cohort_regression`), each against the champion's expected error for that scope.

    `frame` holds the recent actuals and the champion's forecasts of them (`store, item, date, actual,
    forecast`); the windows end on its newest date. The expected error of each row comes from
    `ExpectedError.expected_ape` (scaled to the row's sales level), so a low season is not a regression.

    A broken store also worsens every item it sells and the chain, a little: items are judged without the rows
    of stores that fired (and stores without the items that fired), cohorts without both, and the chain fires
    only for what they do not explain, so each fault is named once, at the scope where it is.
    """
    require_columns(frame, EVAL_COLUMNS, "the live evaluation frame")
    rows = frame.assign(observed=ape_pct(frame["actual"], frame["forecast"])).dropna(subset=["observed"])
    result = CheckResult()
    if rows.empty:
        result.skipped.append("live_accuracy: no actuals with sales > 0 to evaluate")
        return result
    newest = pd.Timestamp(frame["date"].max())

    def judge(kind: str, keep=None) -> CheckResult:
        part = rows if keep is None else rows[keep]
        return _live_scope(part, kind, expected, thresholds, newest) if len(part) else CheckResult()

    def fired(found: CheckResult, key: str) -> pd.Series:
        return rows[key].isin({getattr(f.scope, key) for f in found.findings})

    first_stores = judge("store")
    items = judge("item", ~fired(first_stores, "store"))
    stores = judge("store", ~fired(items, "item"))
    explained = fired(stores, "store") | fired(items, "item")
    cohorts = judge("cohort", ~explained)
    chain = judge("chain")
    # The whole chain is off when it fails beyond what the stores and items that failed explain, or when
    # those cover most of it; then one chain alert replaces them.
    rest = judge("chain", ~explained) if chain.findings and explained.any() and explained.mean() <= 0.5 else chain
    for part in (chain, first_stores, items, stores, cohorts):
        result.checked |= part.checked
    if chain.findings and rest.findings:
        finding = chain.findings[0]
        worst = sorted(stores.findings + items.findings, key=lambda f: -f.observed)[:5]
        if worst:
            finding.context["worst"] = [f"{f.scope.label}: {f.observed:.1f} %" for f in worst]
        result.findings.append(finding)
        return result
    result.findings += stores.findings + items.findings
    result.findings += collapse_cohorts(cohorts.findings, thresholds, Scope("chain"))
    return result


LIVE_KEYS = {"chain": [], "store": ["store"], "item": ["item"], "cohort": ["store", "item"]}


def _live_scope(rows: pd.DataFrame, kind: str, expected: ExpectedError, thresholds: Thresholds, newest) -> CheckResult:
    cohort = kind == "cohort"
    limit = thresholds.cohort_regression if cohort else thresholds.live_accuracy
    mean, dispersion = expected.expected_ape(kind, rows)
    data = rows[["store", "item", "date", "observed"]].assign(
        expected=mean, dispersion=pearson_r2(rows["actual"], rows["forecast"]) / np.maximum(dispersion, 1e-9)
    )
    stats = _window_stats(data, LIVE_KEYS[kind], limit.windows_days, limit.z, newest)
    stats = stats[stats["n"] >= limit.min_observations]
    material = stats["expected"] + limit.max_points
    stats = stats.assign(threshold=material if cohort else np.minimum(material, thresholds.mape_ceiling.max_mape_pct))
    return _fire(
        stats, LIVE_KEYS[kind], kind, "cohort_regression" if cohort else "live_accuracy", "champion", limit,
        Scope("chain"), "MAPE %", lambda r: f"MAPE {r.observed:.2f} % over {int(r.n)} sales days ({r.start:%Y-%m-%d}.."
        f"{r.end:%Y-%m-%d}) against an expected {r.expected:.2f} %; threshold {r.threshold:.2f} %",
    )


def collapse_cohorts(findings: list[Finding], thresholds: Thresholds, broad: Scope) -> list[Finding]:
    """More than MAX_COHORT_FINDINGS cohort findings become one finding on the broader scope."""
    if len(findings) <= MAX_COHORT_FINDINGS:
        return findings
    worst = sorted(findings, key=lambda f: -(f.observed - f.threshold))
    first = worst[0]
    listing = "; ".join(f"{f.scope.label} {f.observed:.1f}" for f in worst[:MAX_COHORT_FINDINGS])
    return [
        Finding("cohort_regression", thresholds.cohort_regression.severity, first.subject, broad, float(len(findings)),
                float(MAX_COHORT_FINDINGS), "cohorts",
                f"{broad.label}: {len(findings)} (store, item) cohorts regressed; worst: {listing}",
                {"cohorts": [f.scope.key for f in worst]})
    ]

