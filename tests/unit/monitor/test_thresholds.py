"""The thresholds file: packaged defaults, partial overrides, and load-time errors that name the bad key."""

from __future__ import annotations

import tomllib

import pytest

from shelfcast.config import Settings
from shelfcast.contract.errors import ConfigError
from shelfcast.monitor.thresholds import default_text, load_thresholds, parse_thresholds

pytestmark = pytest.mark.unit


def write(tmp_path, text: str):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return path


def test_packaged_defaults_load_and_match_the_file():
    thresholds = load_thresholds()
    raw = tomllib.loads(default_text())
    assert thresholds.source == "defaults"
    assert thresholds.mape_ceiling.max_mape_pct == raw["mape_ceiling"]["max_mape_pct"]
    assert thresholds.int8_drop.max_points == raw["int8_drop"]["max_points"]
    assert thresholds.live_accuracy.windows_days == tuple(sorted(raw["live_accuracy"]["windows_days"]))
    assert thresholds.freshness.max_age_hours == raw["freshness"]["max_age_hours"]
    assert thresholds.input_drift.severity == "info"
    assert set(thresholds.as_dict()) == set(raw)


def test_an_override_file_changes_only_its_keys(tmp_path):
    path = write(tmp_path, "[int8_drop]\nmax_points = 0.5\n\n[freshness]\nmax_age_hours = 30\n")
    thresholds = load_thresholds(path)
    defaults = load_thresholds()
    assert thresholds.int8_drop.max_points == 0.5
    assert thresholds.int8_drop.severity == defaults.int8_drop.severity
    assert thresholds.freshness.max_age_hours == 30.0 and isinstance(thresholds.freshness.max_age_hours, float)
    assert thresholds.live_accuracy == defaults.live_accuracy
    assert thresholds.source == str(path)


def test_settings_env_points_at_the_override(tmp_path, monkeypatch):
    path = write(tmp_path, "[mape_ceiling]\nmax_mape_pct = 22.5\n")
    monkeypatch.setenv("SHELFCAST_THRESHOLDS_FILE", str(path))
    assert load_thresholds(Settings().thresholds_file).mape_ceiling.max_mape_pct == 22.5


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ("[live_accuracy]\nmax_pointz = 3\n", "live_accuracy.max_pointz", "unknown key"),
        ("[alarms]\nx = 1\n", "alarms", "unknown key"),
        ("[live_accuracy]\nz = 'four'\n", "live_accuracy.z", "must be a number"),
        ("[live_accuracy]\nz = true\n", "live_accuracy.z", "must be a number"),
        ("[live_accuracy]\nz = 0\n", "live_accuracy.z", "must be > 0"),
        ("[champion_regression]\nmax_points = -0.1\n", "champion_regression.max_points", "must be >= 0"),
        ("[cohort_regression]\nmin_observations = 2.5\n", "cohort_regression.min_observations", "whole number"),
        ("[live_accuracy]\nwindows_days = []\n", "live_accuracy.windows_days", "non-empty list"),
        ("[live_accuracy]\nwindows_days = [1, 0]\n", "live_accuracy.windows_days", "must be >= 1"),
        ("[freshness]\nseverity = 'page'\n", "freshness.severity", "choose one of info, warning, critical"),
        ("[alerts]\nnotify_min_severity = 'loud'\n", "alerts.notify_min_severity", "choose one of"),
        ("[alerts]\nblocking_rules = ['live_accuracy']\n", "alerts.blocking_rules",
         "must be a list of rule names from int8_drop, seasonal_naive"),
        ("[alerts]\nblocking_rules = 'int8_drop'\n", "alerts.blocking_rules", "must be a list of rule names"),
        ("freshness = 3\n", "freshness", "must be a table"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_thresholds(path)
    message = str(info.value)
    assert f"'{key}'" in message
    assert problem in message
    assert str(path) in message


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[int8_drop\nmax_points = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_thresholds(path)


def test_missing_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*SHELFCAST_THRESHOLDS_FILE"):
        load_thresholds(tmp_path / "nope.toml")


def test_a_complete_mapping_needs_every_key():
    data = tomllib.loads(default_text())
    del data["int8_drop"]["max_points"]
    with pytest.raises(ConfigError, match="'int8_drop.max_points' is missing"):
        parse_thresholds(data)


def test_windows_are_deduplicated_and_sorted(tmp_path):
    path = write(tmp_path, "[live_accuracy]\nwindows_days = [7, 1, 7, 3]\n")
    assert load_thresholds(path).live_accuracy.windows_days == (1, 3, 7)
