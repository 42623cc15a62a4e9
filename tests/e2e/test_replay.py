"""`shelfcast replay` through the real loop: its own stack (SeaweedFS, Prefect server, MLflow server) on free
ports, the real ingest, retrain and promotion flows, and store devices syncing with the store identity.

Two short replays on the synthetic generator: a clean week (the weekly policy's first retrain on day 8), killed
after its third day and resumed; and a fortnight with the injections the loop detects today, each judged by the
alert it must raise."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.contract.errors import ConfigError
from shelfcast.loop.replay import Injection, Replay, ReplayOptions, load_truth
from shelfcast.pipeline.config import RetrainConfig
from shelfcast.stack.local import LocalStack

pytestmark = pytest.mark.e2e
# Small and quick: one float parent and its INT8 child on the last year of 50 synthetic series.
CONFIG = dict(variants=["lstm8", "lstm8+int8"], epochs=6)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def clean_week(tmp_path_factory):
    """Eight days (the weekly retrain falls on the eighth), interrupted after day 3 and resumed."""
    folder = tmp_path_factory.mktemp("replay-week")
    base = Settings(home=folder / "base")
    options = ReplayOptions(stores="1-5", items="1-10", start=date(2017, 1, 1), end=date(2017, 1, 8), policy="weekly",
                            config=RetrainConfig.load("replay", **CONFIG), history_days=400)

    def stop_after_three(record):
        if record["day"] == "2017-01-03":
            raise Interrupt

    first = Replay(folder, options, base, say=lambda m: None, on_day=stop_after_three)
    with pytest.raises(Interrupt):
        first.run()
    lines_after_kill = (folder / "days.jsonl").read_text().splitlines()
    replay = Replay(folder, options, base, say=lambda m: None)
    try:
        doc = replay.run()
    finally:
        LocalStack(replay.settings).down()
    return {"doc": doc, "replay": replay, "options": options, "folder": folder, "lines_after_kill": lines_after_kill}


def test_a_resumed_replay_records_every_day_once(clean_week):
    assert len(clean_week["lines_after_kill"]) == 3
    days = [json.loads(line)["day"] for line in (clean_week["folder"] / "days.jsonl").read_text().splitlines()]
    assert days == [f"2017-01-0{d}" for d in range(1, 9)]
    assert clean_week["doc"]["policy"]["days"] == 8


def test_a_replay_folder_refuses_other_options(clean_week):
    other = ReplayOptions(stores="1-5", items="1-10", start=date(2017, 1, 1), end=date(2017, 1, 9), policy="weekly",
                          config=clean_week["options"].config, history_days=400)
    with pytest.raises(ConfigError, match="holds a replay with other options"):
        Replay(clean_week["folder"], other, Settings(home=clean_week["folder"] / "base"))


def test_every_store_is_served_from_the_first_day_and_bytes_move_only_with_a_promotion(clean_week):
    policy = clean_week["doc"]["policy"]
    records = [json.loads(line) for line in (clean_week["folder"] / "days.jsonl").read_text().splitlines()]
    first = records[0]
    assert [s["store"] for s in first["stores"]] == [1, 2, 3, 4, 5]
    assert [s["channel"] for s in first["stores"]] == ["canary"] + ["stable"] * 4
    assert first["advance"]["stable"] is not None  # the first model served a day on canary, then stable got it
    served = {s["serving"] for s in first["stores"]}
    assert len(served) == 1 and None not in served
    assert all(len(s["forecasts"]) == 10 for r in records for s in r["stores"])
    (version,) = served
    for store in first["stores"]:  # day 1 downloads exactly the served model's bytes, once per store
        model = clean_week["folder"] / "stores" / f"store-{store['store']}" / "versions" / version / "model.tflite"
        assert store["model_bytes"] == model.stat().st_size > 0
    moved = {p["day"] for p in policy["promotion_log"]}
    for record in records:
        day_bytes = sum(s["model_bytes"] for s in record["stores"])
        if record["day"] not in moved:
            assert day_bytes == 0, record["day"]
        assert all(s["status"] in ("updated", "unchanged") for s in record["stores"])
    assert policy["model_bytes_on_quiet_days"] == 0
    assert policy["model_bytes_to_stores"] == sum(s["model_bytes"] for r in records for s in r["stores"])
    assert policy["retrains"] == 1 and records[-1]["retrain"] and records[-1]["night"]["variants"]
    # The channels' own logs agree: the first model's canary move, then every move the days recorded.
    assert policy["channel_moves"] == 1 + policy["promotions"] + policy["stable_moves"] and policy["rollbacks"] == 0


def test_served_mape_is_what_the_stores_forecast_against_the_truth(clean_week):
    doc, options = clean_week["doc"], clean_week["options"]
    truth = load_truth(options)
    errors = []
    for line in (clean_week["folder"] / "days.jsonl").read_text().splitlines():
        record = json.loads(line)
        actual = truth[truth["date"] == pd.Timestamp(record["day"])].set_index(["store", "item"])["sales"]
        for store in record["stores"]:
            for item, forecast in store["forecasts"].items():
                y = actual[(store["store"], int(item))]
                if y > 0:
                    errors.append(abs(forecast - y) / y * 100)
    assert doc["policy"]["served_mape_pct"] == pytest.approx(np.mean(errors))
    assert doc["policy"]["scored_forecasts"] == len(errors) == 8 * 50
    # A trained model on Poisson counts around 20-60 a day: far better than no model, not better than the floor.
    assert doc["noise_floor_pct"] < doc["policy"]["served_mape_pct"] < 30


def test_the_clean_week_raises_no_alert_of_its_own_making(clean_week):
    policy = clean_week["doc"]["policy"]
    critical = [a for a in policy["alerts"] if a["severity"] == "critical" and a["model"] is None]
    assert critical == []


def test_the_sales_store_holds_every_delivered_row_exactly_once(clean_week):
    replay, options = clean_week["replay"], clean_week["options"]
    truth = load_truth(options)
    stack = LocalStack(replay.settings)
    stack.up()
    try:
        frame = wiring.sales(replay.settings).load(date(2015, 1, 1), date(2017, 1, 8))
    finally:
        stack.down()
    expected = truth[truth["date"] <= pd.Timestamp("2017-01-07")]  # day 8's file lands on day 9
    assert len(frame) == len(expected)
    assert not frame.duplicated(["date", "store", "item"]).any()


# The kinds the loop detects today. A weekday change and a night trained without its calendar are replayed
# too (`shelfcast replay --inject`); the weekday change needs more days than this fortnight, and the candidate
# rules do not catch the calendar-less night yet (README, "A year of nights"), so no test claims they do.
INJECTED = [
    "level-shift:store=2,date=2017-01-08,factor=1.6",
    "feed-outage:store=3,date=2017-01-05,days=3",
    "new-item:item=5,date=2017-01-02",
    "store-closed:store=4,date=2017-01-10",
    "lossy-int8:date=2017-01-15",
]


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replay-injected")
    options = ReplayOptions(stores="1-4", items="1-5", start=date(2017, 1, 1), end=date(2017, 1, 16), policy="weekly",
                            config=RetrainConfig.load("replay", **CONFIG), history_days=400,
                            injections=[Injection.parse(text) for text in INJECTED])
    replay = Replay(folder, options, Settings(home=folder / "base"), say=lambda m: None)
    try:
        doc = replay.run()
    finally:
        LocalStack(replay.settings).down()
    return {i["kind"]: i for i in doc["injections"]} | {"doc": doc}


@pytest.mark.parametrize("kind", ["feed-outage", "store-closed"])
def test_each_data_injection_raises_its_rule_on_its_scope(injected, kind):
    result = injected[kind]
    assert result["detected"] and result["scope_correct"], result
    assert result["delay_nights"] == 1, result  # the first morning a whole day of the store is missing


def test_a_level_shift_raises_live_accuracy_on_its_store_within_two_nights(injected):
    result = injected["level-shift"]
    assert result["detected"] and result["scope_correct"], result
    assert result["delay_nights"] <= 2, result
    alerts = [a for a in injected["doc"]["policy"]["alerts"] if a["rule"] == "live_accuracy"]
    assert alerts and {a["store"] for a in alerts} == {2}  # the shifted store and no other


def test_a_feed_outage_alert_resolves_when_the_missed_days_arrive(injected):
    alerts = [a for a in injected["doc"]["policy"]["alerts"] if a["rule"] == "freshness" and a["store"] == 3]
    assert len(alerts) == 1 and alerts[0]["status"] == "resolved"
    assert alerts[0]["first_seen"] == "2017-01-06T01:00:00Z"  # the 5th's file came without store 3
    assert alerts[0]["resolved_at"].startswith("2017-01-09")  # the 8th's file brought the 5th to the 8th


def test_a_lossy_int8_conversion_is_caught_the_night_it_happens_and_never_served(injected):
    result = injected["lossy-int8"]
    assert result["detected"] and result["delay_nights"] == 0 and result["scope_correct"], result
    night = next(n for n in injected["doc"]["policy"]["nights"] if n.get("drill") == "int8-miscalibrated")
    int8 = next(v for v in night["variants"] if v["name"].endswith("+INT8"))
    assert int8["version"] in {r["version"] for r in result["night"]["rejections"]}
    assert result["night"]["chosen"] != int8["version"]
    served = {v["version"] for versions in injected["doc"]["policy"]["versions"].values() for v in versions}
    assert int8["version"] not in served


def test_a_new_item_raises_no_critical_alert_and_stores_skip_it_until_it_has_history(injected):
    result = injected["new-item"]
    assert result["detected"]  # here: no critical alert on the new item
    assert result["first_forecast_days"] is None  # 15 days of history, the model needs 56
    doc = injected["doc"]
    assert all(a["item"] != 5 for a in doc["policy"]["alerts"] if a["severity"] == "critical")
