"""Evaluation frames from raw sales, the two monitor runs end to end on a file-backed alert log, and rendering."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shelfcast.data.synthetic import generate_sales
from shelfcast.model.baselines import ProfileModel, same_weekday_two_weeks
from shelfcast.monitor import service
from shelfcast.monitor.evaluation import ExpectedError, evaluation_frame, forecast_targets, history_windows, seasonal_naive
from shelfcast.monitor.notify import notification_payload
from shelfcast.monitor.render import alerts_markdown, markdown_table, write_report
from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit

THRESHOLDS = load_thresholds()


def test_seasonal_naive_is_the_mean_of_lags_7_and_14_and_nan_across_a_gap():
    dates = pd.date_range("2017-01-01", periods=30)
    sales = pd.DataFrame({"store": 1, "item": 1, "date": dates, "sales": np.arange(30)})
    targets = sales[sales["date"] >= "2017-01-20"][["store", "item", "date"]]
    got = seasonal_naive(sales, targets)
    day = (targets["date"] - dates[0]).dt.days.to_numpy()
    np.testing.assert_allclose(got, ((day - 7) + (day - 14)) / 2)
    raw_x, _, ok = history_windows(sales, targets, 14)
    np.testing.assert_allclose(same_weekday_two_weeks(raw_x), got)
    gap = sales[sales["date"] != "2017-01-15"]
    assert np.isnan(seasonal_naive(gap, targets)[:5]).sum() > 0 and ok.all()


def test_window_inputs_carry_their_dates():
    dates = pd.date_range("2017-01-01", periods=20)
    sales = pd.DataFrame({"store": 2, "item": 3, "date": dates, "sales": np.arange(20) * 2})
    targets = pd.DataFrame({"store": [2], "item": [3], "date": [pd.Timestamp("2017-01-20")]})
    seen = {}

    def model(raw_x, input_dates):
        seen["dates"] = input_dates
        return raw_x[:, -1] + 1

    assert forecast_targets(sales, targets, model, lookback=5)[0] == 18 * 2 + 1
    assert pd.Timestamp(seen["dates"][0, 0]) == pd.Timestamp("2017-01-15")
    unknown = pd.DataFrame({"store": [9], "item": [9], "date": [pd.Timestamp("2017-01-20")]})
    assert np.isnan(forecast_targets(sales, unknown, model, lookback=5)[0])


@pytest.fixture(scope="module")
def world():
    sales = generate_sales(stores=3, items=5, start="2015-01-01", end="2017-02-28", seed=9)
    training = sales[sales["date"] <= "2015-12-31"]
    model = ProfileModel.fit(training[["store", "item", "date"]], training["sales"].to_numpy())
    holdout = sales[(sales["date"] >= "2016-01-01") & (sales["date"] <= "2016-12-31")]
    expected = ExpectedError.from_frame(evaluation_frame(holdout, {"forecast": model.predict(holdout)}))
    recent = sales[sales["date"] >= "2017-01-01"]
    return training, recent, model, expected


def forecasts_of(model, frame):
    return frame[["store", "item", "date"]].assign(forecast=model.predict(frame))


def test_live_run_records_accuracy_and_nothing_fires_on_healthy_data(tmp_path, world):
    training, recent, model, expected = world
    store = AlertLog(tmp_path / "a.db")
    run = service.check_live(store, THRESHOLDS, recent, forecasts=forecasts_of(model, recent), expected=expected,
                             training_sales=training, now="2017-03-01T03:00:00")
    assert run.result.findings == [] and run.summary.opened == []
    assert run.extra["accuracy_points"] == 3 * 28  # 3 stores x the 28 days of the longest window
    points = store.accuracy("champion", "store")
    assert {p["store"] for p in points} == {1, 2, 3}
    assert all(p["threshold_pct"] == pytest.approx(p["expected_pct"] + 6.0) for p in points)
    assert "0 new" in run.markdown and "_No alerts._" in run.markdown


def test_live_run_through_a_window_model_and_a_saved_expected_error(tmp_path, world):
    training, recent, model, expected = world
    store = AlertLog(tmp_path / "a.db")
    store.save_expected("champ", 3, expected.to_json())
    broken = recent.copy()
    last = (broken["store"] == 2) & (broken["date"] == broken["date"].max())
    broken.loc[last, "sales"] = broken.loc[last, "sales"] * 3

    def window_model(raw_x, input_dates):  # the profile model, queried at each target day
        day = pd.DatetimeIndex(input_dates[:, -1]) + pd.Timedelta(days=1)
        return model.predict(pd.DataFrame({"store": keys["store"], "item": keys["item"], "date": day}))

    keys = broken[broken["date"] > broken["date"].max() - pd.Timedelta(days=28)].reset_index(drop=True)
    run = service.check_live(store, THRESHOLDS, broken, window_model=window_model, champion=("champ", 3),
                             new_dates=[broken["date"].max()], now="2017-03-01T03:00:00")
    assert [(f.rule, f.scope.label) for f in run.result.findings] == [("live_accuracy", "store 2")]
    assert run.summary.opened == [1] and run.summary.queued == 1
    assert run.extra["accuracy_points"] == 3
    assert any("input_drift: no training window" in s for s in run.result.skipped)


def test_live_run_without_an_expected_error_says_what_is_missing(tmp_path, world):
    _, recent, model, _ = world
    run = service.check_live(AlertLog(tmp_path / "a.db"), THRESHOLDS, recent, forecasts=forecasts_of(model, recent),
                             champion=("never-checked", 1), now="2017-03-01T03:00:00")
    assert any("expected error is unknown" in s for s in run.result.skipped)
    assert "Not checked" in run.markdown


def test_candidate_run_saves_each_candidates_expected_error_and_links_its_run(tmp_path, world):
    _, recent, model, _ = world
    store = AlertLog(tmp_path / "a.db")
    window = recent[recent["date"] > "2017-01-31"]
    frame = evaluation_frame(window, {"forecast": model.predict(window) * 1.3, "champion_forecast": model.predict(window)})
    bad = SimpleNamespace(name="lstm16", version=5, run_id="abc123", metrics={})
    run = service.check_candidates(store, THRESHOLDS, [bad], {"lstm16": frame},
                                   tracking_uri="http://127.0.0.1:5000", experiment_id="4", now="2017-03-01T02:00:00")
    [alert] = run.alerts
    assert alert.rule == "champion_regression" and alert.model_version == "5"
    assert alert.mlflow_url == "http://127.0.0.1:5000/#/experiments/4/runs/abc123"
    assert store.load_expected("lstm16", 5) is not None
    assert run.as_dict()["findings"] == ["warning champion_regression lstm16 v5"]


def test_mlflow_links_need_an_http_server_and_an_experiment():
    assert service.mlflow_run_url("sqlite:///m.db", "r", "1") is None
    assert service.mlflow_run_url("http://h:5000/", "r", None) is None
    assert service.mlflow_run_url("http://h:5000/", "r", "1") == "http://h:5000/#/experiments/1/runs/r"


def test_markdown_escapes_pipes_and_shows_links(tmp_path):
    store = AlertLog(tmp_path / "a.db")
    bad = SimpleNamespace(name="a|b", version=1, run_id="r1", metrics={"mape_pct": 40.0})
    service.check_candidates(store, THRESHOLDS, [bad], tracking_uri="http://m", experiment_id="2")
    text = alerts_markdown(store.list())
    assert "a\\|b v1" in text and "[MLflow](http://m/#/experiments/2/runs/r1)" in text
    assert "Response: promotion of a|b v1 is blocked" in text.replace("\\|", "|")
    assert markdown_table(["x"], [["1"]]) == "| x |\n|---|\n| 1 |"


def test_notification_payload_is_slack_compatible(tmp_path):
    store = AlertLog(tmp_path / "a.db")
    service.check_candidates(store, THRESHOLDS, [SimpleNamespace(name="m", version=1, run_id="r", metrics={"mape_pct": 40.0})])
    payload = notification_payload(store.get(1), "fired")
    assert set(payload) == {"text", "blocks"}
    assert payload["blocks"][0]["type"] == "header" and len(payload["blocks"][0]["text"]["text"]) <= 150
    assert "[FIRING] critical mape_ceiling: m v1" in payload["text"]
    assert "shelfcast alerts ack 1" in payload["blocks"][-1]["elements"][0]["text"]
    resolved = notification_payload(store.get(1), "resolved")
    assert "[RESOLVED]" in resolved["text"] and "the condition cleared" in str(resolved["blocks"])


def test_report_writes_a_png_and_a_summary(tmp_path, world):
    training, recent, model, expected = world
    store = AlertLog(tmp_path / "a.db")
    service.check_live(store, THRESHOLDS, recent, forecasts=forecasts_of(model, recent), expected=expected,
                       now="2017-03-01T03:00:00")
    png, md = write_report(store, tmp_path / "report", "md")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = md.read_text()
    assert "| store | days |" in text and "mape_by_store.png" in text
    html = write_report(store, tmp_path / "report", "html")[1].read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html
    with pytest.raises(ValueError, match="md or html"):
        write_report(store, tmp_path / "report", "pdf")


def test_the_live_check_on_the_sales_store_forecasts_every_day_of_its_windows(tmp_path, monkeypatch):
    # A champion reading 8 weeks of history (the edge model's lookback): the store must load those 56 days before
    # each of the 28 days the windows judge. Loading 56 days in all forecast only the newest day, where one store
    # of nine items has too few rows to be judged, so a store whose sales shifted by 40 % raised nothing.
    from shelfcast.contract.objects import LocalObjects
    from shelfcast.data.sales import SalesTable
    from shelfcast.tracking import Champion

    sales = generate_sales(stores=2, items=2, start="2016-01-01", end="2016-06-30", seed=3)
    store = SalesTable(LocalObjects(tmp_path / "bucket"))
    store.commit_rows(store.table(), sales, "history.csv", "0" * 16, 1)

    def window_model(raw_x, _dates):
        return raw_x[:, -7]  # the same weekday a week back

    window_model.lookback = 56
    monkeypatch.setattr(service, "tflite_window_model", lambda path, spec: window_model)
    champion = Champion("3", {"mape_pct": 15.0}, name="m", input_spec={"lookback": 56}, tflite_path="m.tflite")
    run = service.check_sales_store(AlertLog(tmp_path / "alerts.db"), THRESHOLDS, store, lambda workdir: champion)
    assert run.extra["accuracy_points"] == 2 * 28  # two stores, every day of the longest window
    assert service.live_history_days(THRESHOLDS, 56) == 28 + 56
