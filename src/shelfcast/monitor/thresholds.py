"""Alert thresholds: one TOML file, validated at load, every error naming the bad key.

The package ships `thresholds.toml` with the defaults (read through `importlib.resources`, so it works from a
wheel or a checkout). An override file holds only the keys it changes and is merged over the defaults; its
path comes from the caller (`--thresholds`) or from `Settings.thresholds_file` (`SHELFCAST_THRESHOLDS_FILE`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from shelfcast.contract.errors import ConfigError

SEVERITIES = ("info", "warning", "critical")
# The rules that judge a candidate before its promotion (the ones `alerts.blocking_rules` may name), most
# specific first: a candidate's findings merge into one alert named after the first of them.
CANDIDATE_RULES = ("int8_drop", "seasonal_naive", "champion_regression", "mape_ceiling", "cohort_regression")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def _positive(min_value: float = 0.0, strict: bool = True) -> dict:
    return {"min": min_value, "strict": strict}


@dataclass(frozen=True)
class MapeCeiling:
    max_mape_pct: float = field(metadata=_positive())
    severity: str


@dataclass(frozen=True)
class PointsLimit:
    """A regression limit in MAPE points (champion_regression, int8_drop)."""

    max_points: float = field(metadata=_positive(strict=False))
    severity: str


@dataclass(frozen=True)
class SeasonalNaive:
    min_margin_points: float = field(metadata=_positive(strict=False))
    severity: str


@dataclass(frozen=True)
class WindowedLimit:
    """A limit judged over windows of recent days: material (points) and not noise (z) (live_accuracy,
    cohort_regression)."""

    max_points: float = field(metadata=_positive(strict=False))
    z: float = field(metadata=_positive())
    min_observations: int = field(metadata=_positive(2, strict=False))
    windows_days: tuple[int, ...] = field(metadata=_positive(1, strict=False))
    severity: str


@dataclass(frozen=True)
class Freshness:
    max_age_hours: float = field(metadata=_positive())
    severity: str


@dataclass(frozen=True)
class InputDrift:
    window_days: int = field(metadata=_positive(1, strict=False))
    max_share_change_pct: float = field(metadata=_positive())
    severity: str


@dataclass(frozen=True)
class AlertPolicy:
    cooldown_hours: float = field(metadata=_positive(strict=False))
    notify_min_severity: str
    attempts_per_run: int = field(metadata=_positive(1, strict=False))
    backoff_s: float = field(metadata=_positive(strict=False))
    max_attempts: int = field(metadata=_positive(1, strict=False))
    # Candidate rules whose open alert blocks that candidate's promotion, whatever its severity: severity says
    # who is told (critical pages), this says what the gate does.
    blocking_rules: tuple[str, ...] = field(metadata={"choices": CANDIDATE_RULES})


@dataclass(frozen=True)
class Thresholds:
    mape_ceiling: MapeCeiling
    champion_regression: PointsLimit
    seasonal_naive: SeasonalNaive
    cohort_regression: WindowedLimit
    int8_drop: PointsLimit
    live_accuracy: WindowedLimit
    freshness: Freshness
    input_drift: InputDrift
    alerts: AlertPolicy
    source: str = "defaults"

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def _check_value(where: str, key: str, value, spec: dataclasses.Field):
    """Coerce and range-check one value; `where` names the file, `key` the dotted key."""
    kind = spec.type
    bounds = spec.metadata

    def fail(problem: str):
        raise ConfigError(f"thresholds {where}: key '{key}' {problem}")

    if kind == "str":  # every string field is a severity or a severity threshold
        if value not in SEVERITIES:
            fail(f"is {value!r}; choose one of {', '.join(SEVERITIES)}")
        return value
    if kind == "tuple[str, ...]":
        choices = bounds["choices"]
        if not isinstance(value, (list, tuple)) or any(v not in choices for v in value):
            fail(f"must be a list of rule names from {', '.join(choices)}, got {value!r}")
        return tuple(dict.fromkeys(value))
    if kind == "tuple[int, ...]":
        if not isinstance(value, (list, tuple)) or not value:
            fail(f"must be a non-empty list of whole days, like [1, 7], got {value!r}")
        return tuple(sorted({_check_number(fail, v, int, bounds) for v in value}))
    return _check_number(fail, value, int if kind == "int" else float, bounds)


def _check_number(fail, value, kind, bounds):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
        fail(f"must be {'a whole number' if kind is int else 'a number'}, got {value!r}")
    low, strict = bounds.get("min", 0), bounds.get("strict", False)
    if value < low or (strict and value == low):
        fail(f"must be {'>' if strict else '>='} {low}, got {value!r}")
    return kind(value)


def _section(where: str, name: str, cls, values) -> object:
    if not isinstance(values, dict):
        raise ConfigError(f"thresholds {where}: key '{name}' must be a table [{name}], got {values!r}")
    specs = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(
            f"thresholds {where}: unknown key '{name}.{unknown[0]}'; keys of [{name}] are {', '.join(specs)}"
        )
    missing = [k for k in specs if k not in values]
    if missing:
        raise ConfigError(f"thresholds {where}: key '{name}.{missing[0]}' is missing")
    return cls(**{k: _check_value(where, f"{name}.{k}", values[k], spec) for k, spec in specs.items()})


def _merge(base: dict, override: dict) -> dict:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def _read_toml(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"thresholds {where}: not valid TOML ({exc}); fix the syntax at that line") from None


def default_text() -> str:
    return resources.files("shelfcast.monitor").joinpath("thresholds.toml").read_text(encoding="utf-8")


def parse_thresholds(data: dict, where: str = "defaults") -> Thresholds:
    """Validate a complete thresholds mapping (defaults already merged in)."""
    sections = {f.name: f.type for f in dataclasses.fields(Thresholds) if f.name != "source"}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"thresholds {where}: unknown key '{unknown[0]}'; sections are {', '.join(sections)}")
    classes = {f.name: globals()[f.type] for f in dataclasses.fields(Thresholds) if f.name != "source"}
    built = {name: _section(where, name, cls, data.get(name, {})) for name, cls in classes.items()}
    return Thresholds(**built, source=where)


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """The packaged defaults, with the keys of `path` (when given) merged over them and everything validated."""
    data = _read_toml(default_text(), "defaults")
    if path is None:
        return parse_thresholds(data)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"thresholds file {path} does not exist; pass an existing TOML file or unset SHELFCAST_THRESHOLDS_FILE"
        )
    where = str(path)
    return parse_thresholds(_merge(data, _read_toml(path.read_text(encoding="utf-8"), where)), where)
