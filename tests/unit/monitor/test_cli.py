"""The on-call CLI end to end through Typer's CliRunner on a real alert log file (SQLite, no server)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from shelfcast.cli import build_app
from shelfcast.data.synthetic import generate_sales
from shelfcast.model.baselines import ProfileModel
from shelfcast.monitor import service
from shelfcast.monitor.evaluation import ExpectedError, evaluation_frame
from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.thresholds import load_thresholds

pytestmark = pytest.mark.unit

THRESHOLDS = load_thresholds()


@pytest.fixture
def db(tmp_path):
    """An alert log with one critical candidate alert and a week of live accuracy for 3 stores."""
    path = tmp_path / "alerts.db"
    store = AlertLog(path)
    bad = SimpleNamespace(name="lstm16-int8", version=7, run_id="run-7", metrics={"mape_pct": 18.0, "parent_mape_pct": 16.0})
    service.check_candidates(store, THRESHOLDS, [bad], now="2017-03-02T02:00:00")
    sales = generate_sales(stores=3, items=4, start="2015-01-01", end="2017-02-28", seed=2)
    train = sales[sales["date"] < "2016-01-01"]
    model = ProfileModel.fit(train[["store", "item", "date"]], train["sales"].to_numpy())
    holdout = sales[(sales["date"] >= "2016-01-01") & (sales["date"] < "2017-01-01")]
    expected = ExpectedError.from_frame(evaluation_frame(holdout, {"forecast": model.predict(holdout)}))
    recent = sales[sales["date"] >= "2017-01-01"]
    forecasts = recent[["store", "item", "date"]].assign(forecast=model.predict(recent))
    service.check_live(store, THRESHOLDS, recent, forecasts=forecasts, expected=expected, now="2017-03-01T03:00:00")
    return path


def invoke(*args, env=None):
    return CliRunner().invoke(build_app(), [str(a) for a in args], env=env or {"COLUMNS": "200"})


def test_list_shows_the_open_alert(db):
    result = invoke("alerts", "list", "--db", db)
    assert result.exit_code == 0, result.output
    assert "1 live alert(s)" in result.output
    assert "int8_drop" in result.output and "lstm16-int8 v7" in result.output and "critical" in result.output


def test_list_filters_and_refuses_bad_choices(db):
    assert "No resolved alerts" in invoke("alerts", "list", "--status", "resolved", "--db", db).output
    bad = invoke("alerts", "list", "--status", "closed", "--db", db)
    assert bad.exit_code == 1 and "--status 'closed'" in bad.output


def test_show_prints_the_alert_and_its_history(db):
    result = invoke("alerts", "show", "1", "--db", db)
    assert result.exit_code == 0, result.output
    for text in ("alert 1: critical int8_drop", "run-7", "history", "opened", "fingerprint"):
        assert text in result.output
    missing = invoke("alerts", "show", "42", "--db", db)
    assert missing.exit_code == 1 and "no alert with id 42" in missing.output


def test_ack_then_resolve(db):
    acked = invoke("alerts", "ack", "1", "--by", "ana", "--note", "rerunning calibration", "--db", db)
    assert acked.exit_code == 0 and "is now acknowledged" in acked.output
    assert "acknowledged" in invoke("alerts", "list", "--db", db).output
    resolved = invoke("alerts", "resolve", "1", "--by", "ana", "--note", "recalibrated", "--db", db)
    assert resolved.exit_code == 0 and "is now resolved" in resolved.output
    again = invoke("alerts", "resolve", "1", "--db", db)
    assert again.exit_code == 1 and "already resolved" in again.output
    history = invoke("alerts", "show", "1", "--db", db).output
    assert "rerunning calibration" in history and "recalibrated" in history


def test_outbox_and_deliver_without_a_webhook(db):
    assert "1 notification(s)" in invoke("alerts", "outbox", "--db", db).output
    result = invoke("alerts", "deliver", "--db", db)
    assert result.exit_code == 0 and "held 1: no webhook is configured; set SHELFCAST_ALERT_WEBHOOK_URL" in result.output
    assert "1 notification(s)" in invoke("alerts", "outbox", "--db", db).output  # still waiting, not "delivered"


def test_report_writes_png_and_markdown_or_html(db, tmp_path):
    out = tmp_path / "report"
    result = invoke("report", "--db", db, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "mape_by_store.png").stat().st_size > 10_000
    summary = (out / "summary.md").read_text()
    assert "Open alerts (1)" in summary and "| 3 | 28 |" in summary
    html = invoke("report", "--db", db, "--out", out, "--format", "html", "--since", "2017-02-15")
    assert html.exit_code == 0 and (out / "summary.html").read_text().startswith("<!doctype html>")
    wrong = invoke("report", "--db", db, "--out", out, "--format", "pdf")
    assert wrong.exit_code == 1 and "md or html" in wrong.output


def test_the_default_log_lives_under_shelfcast_home(tmp_path):
    env = {"SHELFCAST_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = invoke("alerts", "list", env=env)
    assert result.exit_code == 0 and "No live alerts" in result.output
    assert (tmp_path / "home" / "alerts.db").exists()
