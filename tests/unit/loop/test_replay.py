"""The replay's pure parts: injections on the truth and the feed, policy schedules, scoring, judging, results."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from shelfcast.bench.replay import compare_with_frozen, merge_result, pooled, replay_tables, rolling
from shelfcast.contract.errors import ConfigError
from shelfcast.data.synthetic import scale_counts
from shelfcast.loop.replay import (Injection, ReplayOptions, first_retrain_on_or_after, judge_injection, score_day,
                                   seasonal_naive_day)

pytestmark = pytest.mark.unit


def panel(days: int = 60, stores=(1, 2), items=(1, 2, 3), sales: int = 20) -> pd.DataFrame:
    dates = pd.date_range("2017-01-01", periods=days)
    rows = [(d, s, i, sales) for d in dates for s in stores for i in items]
    return pd.DataFrame(rows, columns=["date", "store", "item", "sales"])


def test_parse_reads_every_key_and_refuses_with_the_fix():
    shift = Injection.parse("level-shift:store=4,date=2017-03-01,factor=1.5")
    assert (shift.kind, shift.store, shift.start, shift.factor) == ("level-shift", 4, date(2017, 3, 1), 1.5)
    assert Injection.parse("feed-outage:store=2,date=2017-05-02,days=3").days == 3
    assert Injection.parse("lossy-int8:date=2017-02-01").drill == "int8-miscalibrated"
    assert Injection.parse("broken-candidate:date=2017-02-01").drill == "calendar-lost"
    with pytest.raises(ConfigError, match="unknown kind 'level'; choose one of level-shift"):
        Injection.parse("level:store=1,date=2017-01-01")
    with pytest.raises(ConfigError, match="needs date=YYYY-MM-DD"):
        Injection.parse("level-shift:store=1")
    with pytest.raises(ConfigError, match="level-shift needs store=N"):
        Injection.parse("level-shift:date=2017-01-01")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['shop'\]"):
        Injection.parse("level-shift:shop=1,date=2017-01-01")
    with pytest.raises(ConfigError, match="'store' is not key=value"):
        Injection.parse("level-shift:store,date=2017-01-01")


def test_level_shift_scales_one_store_from_its_date_only():
    truth = panel(days=400, sales=50)
    after = Injection.parse("level-shift:store=2,date=2017-02-01,factor=1.4").change_truth(truth.copy(), np.random.default_rng(0))
    shifted = after[(after["store"] == 2) & (after["date"] >= "2017-02-01")]["sales"]
    assert shifted.mean() == pytest.approx(70, rel=0.02)  # 50 x 1.4, Poisson noise over ~1,000 counts
    untouched = after[(after["store"] == 1) | (after["date"] < "2017-02-01")]
    assert (untouched["sales"] == 50).all()


def test_weekday_profile_turns_an_item_into_a_weekend_item():
    truth = panel(days=700, sales=100)
    after = Injection.parse("weekday-profile:item=2,date=2017-01-01").change_truth(truth.copy(), np.random.default_rng(0))
    rows = after[after["item"] == 2]
    weekday = pd.DatetimeIndex(rows["date"]).day_of_week
    profile = np.array([0.6, 0.6, 0.6, 0.6, 1.5, 1.5, 1.5]) / np.mean([0.6, 0.6, 0.6, 0.6, 1.5, 1.5, 1.5])
    for day in range(7):
        assert rows[weekday == day]["sales"].mean() == pytest.approx(100 * profile[day], rel=0.03)
    assert (after[after["item"] != 2]["sales"] == 100).all()


def test_scale_counts_thins_below_one_and_adds_above():
    rng = np.random.default_rng(1)
    sales = np.full(20_000, 10)
    assert scale_counts(sales, np.float64(0.5), rng).mean() == pytest.approx(5, rel=0.02)
    assert scale_counts(sales, np.float64(2.0), rng).mean() == pytest.approx(20, rel=0.02)
    assert (scale_counts(sales, np.float64(0.5), rng) <= sales).all()


def test_store_closed_removes_its_sales_from_the_date_and_new_item_its_history():
    truth = panel()
    closed = Injection.parse("store-closed:store=1,date=2017-01-20").change_truth(truth.copy(), np.random.default_rng(0))
    assert closed[closed["store"] == 1]["date"].max() == pd.Timestamp("2017-01-19")
    assert len(closed[closed["store"] == 2]) == len(truth[truth["store"] == 2])
    new = Injection.parse("new-item:item=3,date=2017-02-01").change_truth(truth.copy(), np.random.default_rng(0))
    assert new[new["item"] == 3]["date"].min() == pd.Timestamp("2017-02-01")
    assert len(new[new["item"] != 3]) == len(truth[truth["item"] != 3])
    with pytest.raises(ConfigError, match="the data has no such item"):
        Injection.parse("new-item:item=9,date=2017-02-01").change_truth(truth.copy(), np.random.default_rng(0))


def test_feed_outage_holds_a_store_back_then_delivers_the_missed_days_once():
    truth = panel()
    outage = Injection.parse("feed-outage:store=2,date=2017-01-10,days=3")
    files = {day: outage.feed(truth[truth["date"] == day], day, truth) for day in pd.date_range("2017-01-08", "2017-01-15")}
    for day in pd.date_range("2017-01-10", "2017-01-12"):
        assert set(files[day]["store"]) == {1}
    resumed = files[pd.Timestamp("2017-01-13")]
    assert sorted(resumed[resumed["store"] == 2]["date"].unique()) == list(pd.date_range("2017-01-10", "2017-01-13"))
    delivered = pd.concat(files.values())
    assert not delivered.duplicated(["date", "store", "item"]).any()
    assert len(delivered) == len(truth[(truth["date"] >= "2017-01-08") & (truth["date"] <= "2017-01-15")])


def test_policies_retrain_on_their_schedule_never_on_the_first_day():
    def schedule(policy):
        options = ReplayOptions(start=date(2017, 1, 1), end=date(2017, 3, 31), policy=policy)
        return [d.date() for d in pd.date_range("2017-01-01", "2017-03-31") if options.retrains_on(d.date())]

    assert schedule("frozen") == []
    assert schedule("monthly") == [date(2017, 2, 1), date(2017, 3, 1)]
    weekly = schedule("weekly")
    assert weekly[:2] == [date(2017, 1, 8), date(2017, 1, 15)] and len(weekly) == 12
    assert len(schedule("nightly")) == 89
    options = ReplayOptions(start=date(2017, 1, 1), end=date(2017, 3, 31), policy="weekly")
    assert first_retrain_on_or_after(options, date(2017, 1, 9)) == date(2017, 1, 15)
    with pytest.raises(ConfigError, match="choose one of frozen, monthly, weekly, nightly"):
        ReplayOptions(policy="hourly")


def test_score_day_pools_absolute_percentage_errors_on_days_with_sales():
    truth = pd.DataFrame({"date": pd.Timestamp("2017-01-05"), "store": [1, 1, 2], "item": [1, 2, 1],
                          "sales": [10, 0, 20]})
    record = {"day": "2017-01-05", "stores": [{"store": 1, "forecasts": {"1": 12.0, "2": 5.0}}, {"store": 2, "forecasts": {"1": 15.0}}]}
    score = score_day(record, truth)
    assert score["n"] == 2  # the zero-sales day is left out
    assert score["mape_pct"] == pytest.approx((20 + 25) / 2)
    assert score["per_store"] == {"1": pytest.approx(20.0), "2": pytest.approx(25.0)}


def test_seasonal_naive_day_is_the_mean_of_the_same_weekday_one_and_two_weeks_back():
    truth = panel(days=30, stores=(1,), items=(1,))
    truth.loc[truth["date"] == "2017-01-08", "sales"] = 10  # one week back
    truth.loc[truth["date"] == "2017-01-01", "sales"] = 30  # two weeks back: forecast 20
    truth.loc[truth["date"] == "2017-01-15", "sales"] = 25
    assert seasonal_naive_day(truth, pd.Timestamp("2017-01-15"), {(1, 1)}) == pytest.approx(20.0)


def test_judge_injection_counts_nights_scope_and_recovery():
    injection = Injection.parse("level-shift:store=2,date=2017-02-01")
    options = ReplayOptions(start=date(2017, 1, 1), end=date(2017, 3, 31), policy="weekly")
    days = pd.date_range("2017-01-01", "2017-03-31")
    ape = np.where((days >= "2017-02-01") & (days < "2017-02-20"), 30.0, 10.0)
    scored = pd.DataFrame({"date": days, "store": 2, "item": 1, "ape": ape})
    alerts = [
        {"id": 1, "rule": "live_accuracy", "severity": "critical", "scope_kind": "store", "store": 1, "item": None,
         "model": None, "first_seen": "2017-01-20T01:00:00Z"},  # before the injection: not its detection
        {"id": 2, "rule": "live_accuracy", "severity": "critical", "scope_kind": "store", "store": 2, "item": None,
         "model": None, "first_seen": "2017-02-02T01:00:00Z"},
    ]
    result = judge_injection(injection, options, scored, alerts, [])
    assert result["detected"] and result["scope_correct"] and result["delay_nights"] == 1
    assert result["mape_before_pct"] == pytest.approx(10.0)
    # The 14-day mean is back within 0.5 points once 14 good days follow the bad ones (2017-02-20 .. 03-05).
    assert result["recovered_days"] == (pd.Timestamp("2017-03-05") - pd.Timestamp("2017-02-01")).days
    wrong = [dict(alerts[1], store=3)]
    missed = judge_injection(injection, options, scored, wrong, [])
    assert not missed["detected"] and not missed["scope_correct"]


def _entry(name, days, mape, injections=()):
    return {"name": name, "days": len(days), "first_day": days[0], "last_day": days[-1], "injections": list(injections),
            "daily": [{"day": d, "mape_pct": mape, "n": 50, "seasonal_naive_mape_pct": 20.0} for d in days],
            "served_mape_pct": mape, "seasonal_naive_mape_pct": 20.0, "retrains": 1, "failed_retrains": 0,
            "promotions": 1, "critical_alerts": 0, "model_bytes_to_stores": 5768, "model_bytes_on_quiet_days": 0,
            "wall_seconds": 120.0, "promotion_log": [{"day": days[-1], "canary": "3"}], "alerts": []}


def test_results_merge_compare_with_frozen_and_render(tmp_path):
    days = [f"2017-01-{d:02d}" for d in range(1, 21)]
    out = tmp_path / "replay.json"
    for name, mape in (("weekly", 13.0), ("frozen", 14.5)):
        run = {"data": "train.csv", "stores": "1-5", "items": "1-10", "noise_floor_pct": 12.7,
               "noise_floor_mape_optimal_pct": 12.4, "policy": _entry(name, days, mape), "injections": []}
        png = merge_result(out, run)
    doc = json.loads(out.read_text())
    assert [p["name"] for p in doc["policies"]] == ["frozen", "weekly"]
    weekly = doc["policies"][1]
    assert weekly["frozen_same_days_mape_pct"] == pytest.approx(14.5)
    assert weekly["gain_over_frozen_pts"] == pytest.approx(1.5)
    assert png.exists() and png.stat().st_size > 10_000
    table = replay_tables(doc)
    assert "| weekly | 20 (2017-01-01..2017-01-20) | 13.00 | 12.70 | 20.00 | 13.00 / 14.50 / 1.50 (20 days) |" in table
    assert table.startswith("Retraining weekly paid: stores were served 13.00 % MAPE against 14.50 % from the frozen "
                            "first model on the same 20 days (+1.50 points); over its 20 days it served 13.00 % against "
                            "a noise floor of 12.70 % (0.30 points above it).")


def test_a_run_is_compared_with_frozen_on_the_days_both_served(tmp_path):
    """Frozen stopped early (10 of 20 days): the comparison uses those 10 days only, and the table says the run is
    partial."""
    out = tmp_path / "replay.json"
    days = [f"2017-01-{d:02d}" for d in range(1, 21)]
    weekly = _entry("weekly", days, 13.0)
    for d in weekly["daily"][:10]:
        d["mape_pct"] = 16.0  # worse on the first ten days, better after
    frozen = dict(_entry("frozen", days[:10], 15.0), planned_days=20)
    for entry in (weekly, frozen):
        merge_result(out, {"data": "train.csv", "stores": "1-5", "items": "1-10", "noise_floor_pct": 12.7,
                           "noise_floor_mape_optimal_pct": 12.4, "policy": entry, "injections": []})
    doc = json.loads(out.read_text())
    weekly = doc["policies"][1]
    assert weekly["compared_days"] == 10
    assert weekly["same_days_mape_pct"] == pytest.approx(16.0) and weekly["gain_over_frozen_pts"] == pytest.approx(-1.0)
    assert "Retraining weekly did not pay" in replay_tables(doc)
    assert "| frozen | 10 of 20 (2017-01-01..2017-01-10) |" in replay_tables(doc)


def test_pooled_weights_days_by_forecasts_and_rolling_needs_a_week():
    daily = [{"day": "a", "mape_pct": 10.0, "n": 30}, {"day": "b", "mape_pct": 20.0, "n": 10},
             {"day": "c", "mape_pct": None, "n": 0}]
    assert pooled(daily) == pytest.approx(12.5)
    assert pooled(daily, {"b"}) == pytest.approx(20.0)
    smooth = rolling([1.0] * 6 + [8.0] * 8, window=14)
    assert np.isnan(smooth[:6]).all() and smooth[6] == pytest.approx((6 + 8) / 7)
    doc = {"policies": [_entry("weekly", ["2017-01-01"], 13.0)], "injected_runs": []}
    compare_with_frozen(doc)
    assert doc["policies"][0]["gain_over_frozen_pts"] is None  # no frozen run to compare with
