"""The two monitor runs, as plain functions over adapters passed in (no Prefect here; flows/monitor.py wraps them).

- `check_candidates` after a retrain: every candidate rule on every candidate, one record call per candidate so
  each alert links to that candidate's MLflow run; each candidate's expected error (from its evaluation frame)
  is saved for the day it becomes the champion.
- `check_live` after an ingest: freshness and input drift on the sales, then the champion's accuracy on the
  recent actuals against its expected error; the daily MAPE per store goes to the accuracy series for the report.

Both return a `MonitorRun` with the findings, what changed in the alert log, and the Markdown of the run.
Delivery of queued notifications is a separate step (`deliver`), so detection never waits on a webhook.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from shelfcast.monitor.data_rules import check_drift, check_freshness, drift_stats, newest_sales_dates, with_drift_context
from shelfcast.monitor.evaluation import (ExpectedError, WindowModel, ape_pct, evaluation_frame, forecast_targets,
                                          tflite_window_model)
from shelfcast.monitor.findings import CheckResult, Scope
from shelfcast.monitor.notify import DeliveryReport, WebhookSender, deliver_pending
from shelfcast.monitor.render import run_markdown
from shelfcast.monitor.rules import CandidateLike, candidate_model, check_candidate, check_live as live_rules
from shelfcast.contract import clock
from shelfcast.monitor.alert_log import Alert, AlertLog, Links, RecordSummary
from shelfcast.monitor.thresholds import Thresholds

LIVE_LOOKBACK_DAYS = 56  # the least history the live check loads (freshness sees every store active since)


def live_window_days(thresholds: Thresholds) -> int:
    """The longest window of the live rules (live accuracy and cohorts), in days."""
    return max(thresholds.live_accuracy.windows_days + thresholds.cohort_regression.windows_days)


def live_history_days(thresholds: Thresholds, lookback: int) -> int:
    """Days of sales before the newest that the live check needs: its longest window, each of whose days is
    forecast from the `lookback` days before it."""
    return max(LIVE_LOOKBACK_DAYS, live_window_days(thresholds) + lookback)


@dataclass
class MonitorRun:
    kind: str
    result: CheckResult
    summary: RecordSummary
    alerts: list[Alert]  # the alerts this run opened, updated or resolved
    markdown: str
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """A small, plain summary (for flow return values and logs)."""
        return {
            "kind": self.kind,
            "opened": self.summary.opened,
            "reopened": self.summary.reopened,
            "repeated": self.summary.repeated,
            "resolved": self.summary.resolved,
            "queued": self.summary.queued,
            "findings": [f"{f.severity} {f.rule} {f.scope.label}" for f in self.result.findings],
            "skipped": self.result.skipped,
            **self.extra,
        }


def mlflow_run_url(tracking_uri: str | None, run_id: str | None, experiment_id: str | None) -> str | None:
    """The MLflow UI page of a run, when the tracking server is an HTTP one and the experiment is known."""
    if not (tracking_uri and run_id and experiment_id) or not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _finish(kind: str, title: str, alert_log: AlertLog, result: CheckResult, summary: RecordSummary, extra=None) -> MonitorRun:
    touched = [alert_log.get(i) for i in dict.fromkeys(summary.touched)]
    markdown = run_markdown(title, summary, touched, result.skipped, alert_log.list())
    return MonitorRun(kind, result, summary, touched, markdown, extra or {})


def check_candidates(
    alert_log: AlertLog,
    thresholds: Thresholds,
    candidates: Sequence[CandidateLike],
    frames: Mapping[str, pd.DataFrame] | None = None,
    links: Links = Links(),
    tracking_uri: str | None = None,
    experiment_id: str | None = None,
    now=None,
) -> MonitorRun:
    """Run the candidate rules on each candidate and record the outcome.

    `frames` maps a candidate (by `candidate_model(c)`, `c.variant`, `c.name` or `str(c.version)`) to its
    evaluation frame (`evaluation.variant_frames` makes them for a night); a candidate without one is judged on
    its `metrics`. Metrics a frame cannot give (the champion's MAPE on the same holdout, when the frame has no
    champion column) come from `metrics`.
    """
    now = now or clock.now()
    frames = frames or {}
    total, summary = CheckResult(), RecordSummary()
    for candidate in candidates:
        model = candidate_model(candidate)
        names = (model, getattr(candidate, "variant", None), candidate.name, str(candidate.version))
        frame = next((frames[k] for k in names if k in frames), None)
        result = check_candidate(candidate, thresholds, frame)
        run_id = getattr(candidate, "run_id", None)
        own = Links(run_id, mlflow_run_url(tracking_uri, run_id, experiment_id), links.prefect_flow_run_id, links.prefect_url)
        part = alert_log.record(result, thresholds.alerts, own, now)
        for name in ("opened", "reopened", "repeated", "resolved"):
            getattr(summary, name).extend(getattr(part, name))
        summary.queued += part.queued
        total.extend(result)
        if frame is not None and candidate.version is not None:
            alert_log.save_expected(model, candidate.version, ExpectedError.from_frame(frame).to_json(), now)
    return _finish("candidates", f"shelfcast monitor: {len(candidates)} candidate(s)", alert_log, total, summary)


def live_frame(
    sales: pd.DataFrame, days: int, forecasts: pd.DataFrame | None = None, window_model: WindowModel | None = None,
    lookback: int | None = None,
) -> pd.DataFrame:
    """The last `days` days of `sales` with the champion's forecast of each, from `forecasts` (store, item, date,
    forecast) or by running `window_model` on the history before each day."""
    newest = pd.Timestamp(sales["date"].max())
    recent = sales[sales["date"] > newest - pd.Timedelta(days=days)].reset_index(drop=True)
    if forecasts is not None:
        merged = recent.merge(forecasts[["store", "item", "date", "forecast"]], on=["store", "item", "date"], how="left")
        values = merged["forecast"].to_numpy(dtype=np.float64)
    elif window_model is not None:
        values = forecast_targets(sales, recent, window_model, lookback or getattr(window_model, "lookback", 14))
    else:
        raise ValueError("pass the champion's forecasts or a window model to compute them")
    return evaluation_frame(recent, {"forecast": values})


def daily_store_accuracy(frame: pd.DataFrame, expected: ExpectedError, thresholds: Thresholds, dates) -> list[dict]:
    """One accuracy point per store and date: MAPE that day, its expected value and the live threshold."""
    rows = frame[frame["date"].isin(pd.DatetimeIndex(dates))]
    rows = rows.assign(ape=ape_pct(rows["actual"], rows["forecast"]), exp=expected.expected_ape("store", rows)[0])
    rows = rows.dropna(subset=["ape"])
    ceiling = thresholds.mape_ceiling.max_mape_pct
    points = []
    for (number, day), part in rows.groupby(["store", "date"]):
        exp = float(part["exp"].mean())
        points.append({
            "subject": "champion", "scope": Scope("store", store=int(number)), "date": f"{pd.Timestamp(day):%Y-%m-%d}",
            "n": len(part), "mape_pct": float(part["ape"].mean()), "expected_pct": exp,
            "threshold_pct": min(exp + thresholds.live_accuracy.max_points, ceiling),
        })
    return points


def check_live(
    alert_log: AlertLog,
    thresholds: Thresholds,
    sales: pd.DataFrame,
    *,
    forecasts: pd.DataFrame | None = None,
    window_model: WindowModel | None = None,
    expected: ExpectedError | None = None,
    champion: tuple[str, object] | None = None,
    fallback_mape_pct: float | None = None,
    training_sales: pd.DataFrame | None = None,
    new_dates=None,
    links: Links = Links(),
    now=None,
    notes: Sequence[str] = (),
) -> MonitorRun:
    """Freshness, input drift and the live champion's accuracy on `sales` (store, item, date, sales: enough recent
    history for the longest window, plus the lookback of `window_model`).

    The expected error is `expected`, else the one saved for `champion` = (model, version) when it was a
    candidate, else a flat `fallback_mape_pct` (the champion's holdout MAPE). Without any, or without forecasts, the accuracy rules are skipped and say so; `notes` are
    more such reasons from the caller (e.g. the champion could not be loaded).
    """
    now = pd.Timestamp(now or clock.now())
    result = check_freshness(newest_sales_dates(sales), now, thresholds)
    result.skipped.extend(notes)
    stats = pd.DataFrame(columns=["store", "days", "share_change_pct"])
    drift = CheckResult()
    if training_sales is not None:
        stats = drift_stats(sales, training_sales, thresholds.input_drift.window_days)
        drift = check_drift(stats, thresholds)
    else:
        drift.skipped.append("input_drift: no training window given")
    accuracy = CheckResult()
    if expected is None and champion is not None:
        saved = alert_log.load_expected(*champion)
        expected = ExpectedError.from_json(saved) if saved else None
    if expected is None and fallback_mape_pct is not None:
        expected = ExpectedError.flat(fallback_mape_pct)
    extra = {}
    if new_dates is not None and len(new_dates) == 0:
        accuracy.skipped.append("live_accuracy: no new actuals in this run")
    elif expected is None:
        accuracy.skipped.append("live_accuracy: the champion's expected error is unknown (pass expected or a "
                                "champion whose candidate check saved one)")
    elif forecasts is None and window_model is None:
        accuracy.skipped.append("live_accuracy: no champion forecasts and no model to make them")
    else:
        frame = live_frame(sales, live_window_days(thresholds), forecasts, window_model)
        accuracy = live_rules(frame, expected, thresholds)
        dates = frame["date"].unique() if new_dates is None else new_dates
        points = daily_store_accuracy(frame, expected, thresholds, dates)
        alert_log.record_accuracy(points, now)
        extra["accuracy_points"] = len(points)
    result.extend(with_drift_context(accuracy, drift, stats))
    summary = alert_log.record(result, thresholds.alerts, links, now)
    version = f" v{champion[1]}" if champion else ""
    return _finish("live", f"shelfcast monitor: live champion{version} on actuals to {pd.Timestamp(sales['date'].max()):%Y-%m-%d}",
                   alert_log, result, summary, extra)


def check_sales_store(
    alert_log: AlertLog,
    thresholds: Thresholds,
    sales_store,
    load_champion: Callable[[Path], object],
    *,
    new_dates=None,
    links: Links = Links(),
    on_error: Callable[[str], None] = lambda message: None,
) -> MonitorRun | None:
    """`check_live` on the sales store's recent days, with the live champion from `load_champion(workdir)`
    (`Tracker.load_champion`: a `tracking.Champion`, None before the first promotion), run in the edge
    interpreter. None when the sales store is empty.

    `new_dates` are the days this ingest added; an empty list (nothing arrived) checks freshness only, None
    checks everything. A champion that cannot be loaded (MLflow down) must not hide a stale feed: freshness and
    drift still run, `on_error` hears why, and the run's skipped rules say so.
    """
    newest = sales_store.newest_date()  # from the table's file statistics: no data file is read
    if newest is None:
        return None

    def live(lookback: int = 0, **options) -> MonitorRun:
        sales = sales_store.load(newest - timedelta(days=live_history_days(thresholds, lookback)), newest)
        return check_live(alert_log, thresholds, sales, links=links, **options)

    if new_dates is not None and len(new_dates) == 0:
        return live(new_dates=[])
    with tempfile.TemporaryDirectory(prefix="shelfcast-champion-") as workdir:
        try:
            champion = load_champion(Path(workdir))
            if champion is not None and (not champion.input_spec or champion.tflite_path is None):
                raise ValueError(f"champion v{champion.version} (run {champion.run_id}) has no input_spec "
                                 "parameter or no .tflite under tflite/")
        except Exception as exc:  # noqa: BLE001 - any failure to load it; the run records why
            problem = f"{type(exc).__name__}: {str(exc)[:300]}"
            on_error(f"live champion not checked: {problem}")
            return live(notes=[f"live_accuracy: the champion could not be loaded ({problem})"])
        if champion is None:
            return live(new_dates=new_dates, notes=["live_accuracy: no champion yet"])
        training = sales_store.load(*champion.training) if champion.training else None
        key = (candidate_model(champion), champion.version)  # where its candidate check saved the expected error
        window_model = tflite_window_model(champion.tflite_path, dict(champion.input_spec))
        return live(window_model.lookback, champion=key, window_model=window_model,
                    fallback_mape_pct=champion.metrics.get("mape_pct"), training_sales=training, new_dates=new_dates)


def deliver(alert_log: AlertLog, thresholds: Thresholds, webhook_url: str | None, now=None) -> DeliveryReport:
    """Send the queued notifications (see `notify.deliver_pending`)."""
    policy = thresholds.alerts
    sender = WebhookSender(webhook_url, attempts=policy.attempts_per_run, backoff_s=policy.backoff_s) if webhook_url else None
    return deliver_pending(alert_log, sender, policy, now)
