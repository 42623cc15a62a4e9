"""Prefect tasks that run the alert checks; the retrain and ingest flows call them.

Each task loads the thresholds (`Settings.thresholds_file` over the packaged defaults), opens the alert log
(`Settings.alerts_db`), runs the check (`shelfcast.monitor.service`), publishes the run's alert table as a
Prefect markdown artifact, then delivers queued notifications to `Settings.alert_webhook_url`. Detection is
committed before delivery starts, so a crash in between loses nothing: the next run (or
`shelfcast alerts deliver`) sends what is queued. Each returns a small dict: ids of opened, reopened, repeated
and resolved alerts, the findings, what was not checked and why, and delivery counts.

Call sites (plain arguments):

    from shelfcast.flows.monitor import check_after_retrain, check_store_after_ingest
    from shelfcast.monitor.evaluation import variant_frames

    # flows/retrain.py, once the candidates are tagged and before they go to the gate and promotion:
    check_after_retrain(candidates, frames=variant_frames(windows, results), settings=settings,
                        experiment_id=tracker.experiment_id())
    #   candidates: objects with name, version, run_id, metrics (dict) and optionally variant, e.g.
    #     `tracking.Candidate`; metrics may hold mape_pct, champion_mape_pct, naive_mape_pct, parent_mape_pct.
    #   frames: optional {variant or name: DataFrame(store, item, date, actual, forecast[, champion_forecast,
    #     naive_forecast, parent_forecast])}; with them the per-(store, item) rule runs and each candidate's
    #     expected error is saved for the day it becomes the champion.

    # the promotion step, with its other gates:
    from shelfcast.monitor.gate import alert_gate
    gates = [alert_gate(wiring.alert_log(settings), load_thresholds(settings.thresholds_file),
                        force_reason=reason_or_None)]

    # flows/ingest.py, after every run (with no new dates it checks freshness only, which is when it matters):
    check_store_after_ingest(sales, settings=settings, new_dates=dates_added)
    #   sales: the `SalesTable`; the champion is found through MLflow (`champion` alias).

    # or, with everything at hand (tests, backfills, another model source):
    check_after_ingest(sales, champion=(model, version), tflite_path=path, input_spec=spec_dict,
                       forecasts=None, expected_mape_pct=None, training_sales=None, new_dates=None, settings=settings)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.monitor import service
from shelfcast.monitor.evaluation import tflite_window_model
from shelfcast.monitor.alert_log import Links
from shelfcast.monitor.thresholds import Thresholds, load_thresholds

def _links() -> Links:
    run_id = flow_run.id
    return Links(prefect_flow_run_id=str(run_id) if run_id else None, prefect_url=flow_run.ui_url or None)


def _publish(run: service.MonitorRun, settings: Settings, thresholds: Thresholds, key: str) -> dict:
    """Artifact, then delivery; returns the run summary with delivery counts."""
    logger = get_run_logger()
    create_markdown_artifact(run.markdown, key=key, description=run.markdown.splitlines()[0].lstrip("# "))
    report = service.deliver(wiring.alert_log(settings), thresholds, settings.alert_webhook_url)
    for error in report.errors:
        logger.warning("alert notification not delivered: %s", error)
    for finding in run.result.findings:
        logger.warning("alert: %s %s on %s: %s", finding.severity, finding.rule, finding.scope.label, finding.message)
    summary = run.as_dict()
    summary.update(delivered=len(report.delivered), unconfirmed=len(report.unconfirmed), retrying=len(report.retrying),
                   dead=len(report.dead), skipped_notifications=len(report.skipped), held=len(report.held))
    return summary


@task(name="monitor-candidates", cache_policy=NO_CACHE)
def check_after_retrain(
    candidates: list,
    frames: dict[str, pd.DataFrame] | None = None,
    settings: Settings | None = None,
    experiment_id: str | None = None,
) -> dict:
    """Candidate rules on tonight's candidates; alerts of the blocking rules then block them at the promotion gate."""
    settings = settings or Settings()
    thresholds = load_thresholds(settings.thresholds_file)
    run = service.check_candidates(
        wiring.alert_log(settings), thresholds, candidates, frames, links=_links(),
        tracking_uri=settings.mlflow_tracking_uri, experiment_id=experiment_id,
    )
    return _publish(run, settings, thresholds, "shelfcast-alerts-candidates")


def _live(settings: Settings, sales: pd.DataFrame, **options) -> dict:
    thresholds = load_thresholds(settings.thresholds_file)
    run = service.check_live(wiring.alert_log(settings), thresholds, sales, links=_links(), **options)
    return _publish(run, settings, thresholds, "shelfcast-alerts-live")


@task(name="monitor-live-champion", cache_policy=NO_CACHE)
def check_after_ingest(
    sales: pd.DataFrame,
    champion: tuple[str, object] | None = None,
    tflite_path: str | Path | None = None,
    input_spec: dict | None = None,
    forecasts: pd.DataFrame | None = None,
    expected_mape_pct: float | None = None,
    training_sales: pd.DataFrame | None = None,
    new_dates: list | None = None,
    settings: Settings | None = None,
) -> dict:
    """Freshness, input drift and the live champion's accuracy on the actuals that just arrived.

    `sales` (store, item, date, sales) must cover the longest window (28 days) plus the model's lookback.
    """
    window_model = tflite_window_model(tflite_path, input_spec) if tflite_path and forecasts is None else None
    return _live(settings or Settings(), sales, champion=champion, window_model=window_model, forecasts=forecasts,
                 fallback_mape_pct=expected_mape_pct, training_sales=training_sales, new_dates=new_dates)


@task(name="monitor-store-after-ingest", cache_policy=NO_CACHE)
def check_store_after_ingest(sales_store, settings: Settings | None = None, new_dates: list | None = None,
                             tracker=None) -> dict:
    """`check_after_ingest` on the sales store's recent days, with the champion found through MLflow.

    `new_dates` are the days this ingest added; an empty list (nothing arrived) checks freshness only, None
    checks everything."""
    settings = settings or Settings()
    thresholds = load_thresholds(settings.thresholds_file)
    tracker = tracker or wiring.tracker(settings)
    run = service.check_sales_store(
        wiring.alert_log(settings), thresholds, sales_store, tracker.load_champion,
        new_dates=new_dates, links=_links(), on_error=get_run_logger().error,
    )
    if run is None:
        return {"kind": "live", "skipped": ["the sales store is empty"]}
    return _publish(run, settings, thresholds, "shelfcast-alerts-live")
