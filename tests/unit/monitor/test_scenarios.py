"""The scenario benchmark's machinery on a tiny panel: the JSON it commits has the promised keys, and the faults
that do not depend on the panel's size are caught on the first night on their scope."""

from __future__ import annotations

import pytest

from bench.alert_scenarios import main, run

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def doc():
    return run(stores=3, items=4, seed=2, stable_days=3, after_days=2)


def test_every_scenario_reports_the_promised_keys(doc):
    names = [r["name"] for r in doc["scenarios"]]
    assert names == ["store_level_shift", "item_weekday_profile", "feed_outage", "candidate_worse_than_naive",
                     "int8_loses_accuracy"]
    for row in doc["scenarios"]:
        assert {"name", "detected", "delay_days", "scope_correct", "false_alerts", "stable_false_alerts"} <= set(row)
    assert doc["stable"]["days"] == 3 and "ProfileModel" in doc["setup"]["champion"]


@pytest.mark.parametrize("name", ["feed_outage", "candidate_worse_than_naive", "int8_loses_accuracy"])
def test_size_independent_faults_are_caught_the_first_night(doc, name):
    row = next(r for r in doc["scenarios"] if r["name"] == name)
    assert (row["detected"], row["delay_days"], row["scope_correct"], row["false_alerts"]) == (True, 0, True, 0)
    if name != "feed_outage":
        assert row["gate_blocked"] and "critical alert" in row["gate_reasons"][0]


def test_the_command_writes_its_json_with_replications(tmp_path):
    import json

    out = tmp_path / "alerts.json"
    main(["--stores", "2", "--items", "3", "--stable-days", "1", "--after-days", "1", "--replicate", "3:1",
          "--out", str(out)])
    doc = json.loads(out.read_text())
    assert len(doc["scenarios"]) == 5 and doc["stable"]["days"] == 1
    [again] = doc["replications"]
    assert (again["seed"], again["stable_days"]) == (3, 1)
    assert {"stable_false_alerts", "detected", "scope_correct", "max_delay_days", "false_alerts", "passed"} <= set(again)
