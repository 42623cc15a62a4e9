"""flows/monitor.py on the real Prefect API (test harness): the tasks the retrain and ingest flows call publish
their markdown artifact, link the flow run, and deliver to the webhook. The ingest-side task finds the champion
through a real MLflow registry (SQLite backend) and forecasts with its real `.tflite` file. The alert log is the
session's engine's (`alert_settings`)."""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from prefect import flow
from tests.integration._prefect import run_and_artifacts
from tests.integration.monitor.test_webhook import Receiver

from shelfcast.config import Settings
from shelfcast.contract.objects import LocalObjects
from shelfcast.data.sales import SalesTable
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.ingest import IngestOptions, ingest_landing, open_landing
from shelfcast.monitor.alert_log import AlertLog

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_after_retrain_task_publishes_links_and_notifies(prefect_api, tmp_path, receiver, alert_settings):
    from shelfcast.flows.monitor import check_after_retrain

    settings = Settings(home=tmp_path / "home", alert_webhook_url=receiver.url,
                        mlflow_tracking_uri="http://127.0.0.1:5999", **alert_settings)
    bad = SimpleNamespace(name="shelfcast-demand", version="12", run_id="abc", variant="lstm16-int8",
                          metrics={"mape_pct": 17.2, "parent_mape_pct": 16.1, "naive_mape_pct": 16.7})

    @flow(name="retrain-test")
    def night():
        return check_after_retrain([bad], settings=settings, experiment_id="3")

    summary, artifacts = run_and_artifacts(night, "shelfcast-alerts-candidates")
    assert summary["opened"] == [1] and summary["delivered"] == 1
    assert summary["findings"] == ["critical int8_drop shelfcast-demand/lstm16-int8 v12"]
    alert = AlertLog(settings.alerts_db).get(1)
    assert alert.prefect_flow_run_id and alert.mlflow_url == "http://127.0.0.1:5999/#/experiments/3/runs/abc"
    assert "int8_drop" in receiver.requests[0]["json"]["text"]
    (text,) = artifacts
    assert "shelfcast-demand/lstm16-int8 v12" in text and "int8_drop" in text


@pytest.fixture
def sales_store(tmp_path):
    """A real sales store (local folder objects) filled through the ingest logic from one landing file."""
    sales = generate_sales(stores=2, items=3, start="2016-01-01", end="2016-06-30", seed=5)
    landing = open_landing(str(tmp_path / "landing"), None)
    landing.deliver("history.csv", sales.assign(date=sales["date"].dt.strftime("%Y-%m-%d")).to_csv(index=False).encode())
    store = SalesTable(LocalObjects(tmp_path / "sales"))
    [report] = ingest_landing(store, landing, IngestOptions(today=date(2016, 7, 1)))
    assert report.rows_accepted == len(sales)
    return store


@pytest.fixture
def champion_registry(tmp_path, tiny_tflite):
    """An MLflow registry (SQLite) whose `champion` alias points at a real `.tflite` with its input spec."""
    from shelfcast.compress.variants import VariantResult
    from shelfcast.tracking import Tracker

    path = tmp_path / "lstm4.tflite"
    path.write_bytes(tiny_tflite["v1"])
    spec = tiny_tflite["spec"]
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "demand-monitor-test")
    result = VariantResult(name="lstm4", technique="size", units=4, sparsity=0.0, quantization="float32", seed=0,
                           status="ok", mape_pct=15.0, tflite_path=path,
                           input_example=np.ones((2, spec.lookback, spec.n_features), np.float32))
    params = {"input_spec": json.dumps(tiny_tflite["spec"].to_dict()), "start": "2016-01-01", "end": "2016-04-30"}
    logged = tracker.log_variant(tracker.start_night("2016-04-30", {}), "2016-04-30", result, params)
    tracker.client.set_registered_model_alias("demand-monitor-test", "champion", logged.version)
    return tracker


def test_after_ingest_task_checks_the_mlflow_champion_on_the_sales_store(prefect_api, tmp_path, sales_store, alert_settings,
                                                                         champion_registry):
    from shelfcast.flows.monitor import check_store_after_ingest

    settings = Settings(home=tmp_path / "home", **alert_settings)

    @flow(name="ingest-test")
    def hourly():
        return check_store_after_ingest(sales_store, settings=settings, tracker=champion_registry)

    summary, artifacts = run_and_artifacts(hourly, "shelfcast-alerts-live")
    # the newest sales day is 2016-06-30, long before now: the whole feed is stale, one chain alert
    assert "critical freshness all stores" in summary["findings"]
    assert summary["accuracy_points"] == 2 * 28
    assert not any("live_accuracy" in s for s in summary["skipped"])  # the champion forecast every day
    points = pd.DataFrame(AlertLog(settings.alerts_db).accuracy("champion", "store"))
    assert set(points["store"]) == {1, 2} and points["date"].max() == "2016-06-30"
    (text,) = artifacts
    assert "live champion" in text


def test_after_ingest_task_with_plain_arguments(prefect_api, tmp_path, tiny_tflite, alert_settings):
    from shelfcast.flows.monitor import check_after_ingest

    settings = Settings(home=tmp_path / "home", **alert_settings)
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite["v2"])
    sales = generate_sales(stores=2, items=2, start="2016-01-01", end="2016-03-31", seed=1)

    @flow(name="ingest-plain-test")
    def hourly():
        return check_after_ingest(sales, champion=("m", 1), tflite_path=path, input_spec=tiny_tflite["spec"].to_dict(),
                                  expected_mape_pct=14.0, training_sales=sales[sales["date"] < "2016-03-01"],
                                  new_dates=[pd.Timestamp("2016-03-31")], settings=settings)

    summary = hourly()
    assert summary["accuracy_points"] == 2  # one day, two stores
    assert summary["skipped"] == []


def test_mlflow_down_still_checks_freshness_and_says_why(prefect_api, tmp_path, sales_store, alert_settings):
    from shelfcast.flows.monitor import check_store_after_ingest
    from shelfcast.stack.process import free_port
    from shelfcast.tracking import Tracker

    settings = Settings(home=tmp_path / "home", **alert_settings)
    down = Tracker(f"http://127.0.0.1:{free_port()}", "demand-monitor-test", http_retries=0, http_timeout_s=2)

    @flow(name="ingest-mlflow-down-test")
    def hourly():
        return (check_store_after_ingest(sales_store, settings=settings, new_dates=["2016-06-30"], tracker=down),
                check_store_after_ingest(sales_store, settings=settings, new_dates=[], tracker=down))

    with_data, nothing_new = hourly()
    assert "critical freshness all stores" in with_data["findings"]
    assert any("the champion could not be loaded" in s for s in with_data["skipped"])
    assert nothing_new["repeated"] == with_data["opened"]  # the same stale-feed alert, seen again
    assert "live_accuracy: no new actuals in this run" in nothing_new["skipped"]
