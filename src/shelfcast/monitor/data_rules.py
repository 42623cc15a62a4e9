"""Rules on the sales data itself: freshness (is anything arriving?) and input drift (context for accuracy).

Drift is measured per store as its share of chain sales, against its share in the training window on the same
weekdays. Calendar effects (month, trend, holidays) hit every store alike and cancel in a share, so a drift
figure means the store itself changed. It is an effect size in percent, never a p-value: a huge sample does
not turn a 1 % change into an alarm. Drift findings are `info` by default and are attached to a store's
accuracy finding as context ("share of chain sales +38 % against training").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from shelfcast.monitor.evaluation import require_columns
from shelfcast.monitor.findings import CheckResult, Finding, Scope
from shelfcast.monitor.thresholds import Thresholds

SALES_COLUMNS = ["store", "item", "date", "sales"]


def newest_sales_dates(sales: pd.DataFrame) -> dict[int, pd.Timestamp]:
    """The newest date with sales rows, per store."""
    require_columns(sales, ["store", "date"], "the sales frame")
    return {int(s): pd.Timestamp(d) for s, d in sales.groupby("store")["date"].max().items()}


def check_freshness(newest: Mapping[int, pd.Timestamp], now: pd.Timestamp, thresholds: Thresholds) -> CheckResult:
    """A store is stale when the end of its newest sales day is more than `max_age_hours` before `now`.

    When every store is stale the feed itself is down: one finding on the chain instead of one per store.
    """
    limit = thresholds.freshness
    now = pd.Timestamp(now)
    now = now.tz_convert(None) if now.tzinfo is not None else now  # compared with naive sales dates
    ages = {s: (now - (pd.Timestamp(d).normalize() + pd.Timedelta(days=1))) / pd.Timedelta(hours=1) for s, d in newest.items()}
    result = CheckResult()
    if not ages:
        result.skipped.append("freshness: no sales at all to date")
        return result
    result.check("freshness", "data", Scope("chain"))
    stale = {s: a for s, a in sorted(ages.items()) if a > limit.max_age_hours}
    for store in ages:
        result.check("freshness", "data", Scope("store", store=store))

    def finding(scope: Scope, age: float, newest_day) -> Finding:
        return Finding("freshness", limit.severity, "data", scope, float(age), limit.max_age_hours, "hours",
                       f"{scope.label}: no sales after {pd.Timestamp(newest_day):%Y-%m-%d}; the newest day ended "
                       f"{age:.0f} h ago (allowed {limit.max_age_hours:.0f} h)",
                       {"newest_date": f"{pd.Timestamp(newest_day):%Y-%m-%d}", "as_of": now.isoformat()})

    if len(ages) > 1 and len(stale) == len(ages):
        freshest = min(stale, key=stale.get)
        result.findings.append(finding(Scope("chain"), stale[freshest], newest[freshest]))
    else:
        result.findings += [finding(Scope("store", store=s), a, newest[s]) for s, a in stale.items()]
    return result


def drift_stats(recent: pd.DataFrame, training: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Per store: `share_change_pct`, its share of chain sales over the last `window_days` against its share
    on the same weekdays in training, and the `days` it saw.

    Shares are renormalised each day over the stores that reported that day, so one store's outage does not
    move the others' shares.
    """
    require_columns(recent, SALES_COLUMNS, "the recent sales frame")
    require_columns(training, SALES_COLUMNS, "the training sales frame")
    train = training.assign(weekday=pd.DatetimeIndex(training["date"]).day_of_week)
    by_weekday = train.groupby(["store", "weekday"])["sales"].sum().unstack("weekday")
    train_share = by_weekday / by_weekday.sum(axis=0)
    newest = pd.Timestamp(recent["date"].max())
    window = recent[(recent["date"] > newest - pd.Timedelta(days=window_days)) & recent["store"].isin(train_share.index)]
    daily = window.groupby(["date", "store"])["sales"].sum().unstack("store")
    if daily.empty:
        return pd.DataFrame(columns=["store", "days", "share_change_pct"])
    share = daily.div(daily.sum(axis=1), axis=0)
    weekdays = pd.DatetimeIndex(daily.index).day_of_week
    expected = train_share.T.reindex(weekdays).set_axis(daily.index)[daily.columns]
    expected = expected.where(daily.notna())
    expected = expected.div(expected.sum(axis=1), axis=0)
    ratio = share / expected
    return pd.DataFrame(
        {
            "store": ratio.columns.astype(int),
            "days": ratio.notna().sum(axis=0).to_numpy(dtype=int),
            "share_change_pct": (ratio.mean(axis=0).to_numpy(dtype=float) - 1) * 100,
        }
    )


def check_drift(stats: pd.DataFrame, thresholds: Thresholds) -> CheckResult:
    """`input_drift` per store: its share of chain sales moved by more than `max_share_change_pct`."""
    limit = thresholds.input_drift
    bound = limit.max_share_change_pct
    result = CheckResult()
    for row in stats.itertuples():
        if not np.isfinite(row.share_change_pct):
            continue
        scope = Scope("store", store=int(row.store))
        result.check("input_drift", "data", scope)
        if abs(row.share_change_pct) > bound:
            result.findings.append(
                Finding("input_drift", limit.severity, "data", scope, float(row.share_change_pct), bound, "%",
                        f"{scope.label}: share of chain sales {row.share_change_pct:+.1f} % against the training "
                        f"window over the last {row.days} days (context: allowed ±{bound:.0f} %)",
                        {"days": int(row.days)})
            )
    return result


def with_drift_context(accuracy: CheckResult, drift: CheckResult, stats: pd.DataFrame) -> CheckResult:
    """Accuracy and drift findings together, drift as context: each store's drift figures go into the message
    of that store's accuracy findings, and a store's own drift finding is dropped when an accuracy finding
    already covers the store (it is still checked, so an earlier drift alert resolves into the accuracy one)."""
    by_store = stats.set_index("store") if not stats.empty else stats
    findings, covered = [], set()
    for finding in accuracy.findings:
        store = finding.scope.store
        if finding.scope.kind in ("store", "cohort") and store is not None:
            covered.add(store)
            if store in by_store.index:
                row = by_store.loc[store]
                note = f"; input drift: share of chain sales {row.share_change_pct:+.1f} % against training"
                drift_context = {"share_change_pct": float(row.share_change_pct), "days": int(row.days)}
                finding = dataclasses.replace(finding, message=finding.message + note,
                                              context={**finding.context, "drift": drift_context})
        findings.append(finding)
    findings += [f for f in drift.findings if f.scope.store not in covered]
    return CheckResult(findings, accuracy.checked | drift.checked, accuracy.skipped + drift.skipped)
