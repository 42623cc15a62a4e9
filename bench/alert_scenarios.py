"""Alert scenarios: does each injected fault raise the right alert, on the right scope, within one nightly cycle,
and do stable days raise none?

Synthetic chain (`data.synthetic.generate_sales`, where the truth is known), simulated night by night: the day's
actuals arrive, the live champion's forecasts of them are checked (freshness, input drift, live accuracy per
chain, store, item and (store, item)), then the nightly retrain makes two candidates (a refit of the profile
model and its INT8 conversion), which are checked against the champion and the seasonal-naive rule on the same
recent window and passed through the promotion gate. Everything goes through the real alert log (SQLite), with
deduplication, cooldown and auto-resolution, exactly as the flows run it.

The champion is `model.baselines.ProfileModel` (store-item level x weekday x month x trend) fitted on 2014-2015,
with its expected error measured on 2016: a real forecaster close to the data's noise floor, cheap enough to
refit every simulated night. Every fit uses whole calendar years, so that each refit sees the same seasons. INT8 is the affine int8 quantization of the
model's output in the edge models' scaled space (forecast over the mean of the 14 days before, `window_mean`),
over the range seen on a representative set of 2,048 training rows from the last year: the arithmetic of a
TFLite INT8 output tensor. The failed conversion's representative set holds Mondays only, so weekends clip.

60 stable days run once; the alert log is then copied and each scenario continues from it for 14 days with its
fault injected on the first of them. A scenario's `stable_false_alerts` are the alerts of those shared 60 days;
its `false_alerts` are alerts after the injection that the injection does not explain (another store, item or
model). `delay_days` counts nightly cycles after the first faulty day (0: the first night that could see it).

    .venv/bin/python bench/alert_scenarios.py [--out bench/results/alerts.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shelfcast.bench.readme import write_result
from shelfcast.data.synthetic import generate_sales
from shelfcast.loop.replay import Injection
from shelfcast.model.baselines import ProfileModel
from shelfcast.monitor import service
from shelfcast.monitor.evaluation import ExpectedError, evaluation_frame, history_windows, seasonal_naive
from shelfcast.monitor.findings import Scope
from shelfcast.monitor.gate import alert_gate
from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.thresholds import load_thresholds

CHAMPION_TRAIN = ("2014-01-01", "2015-12-31")
HOLDOUT = ("2016-01-01", "2016-12-31")
MONITOR_START = pd.Timestamp("2017-01-01")
STABLE_DAYS = 60
AFTER_DAYS = 14
EVAL_DAYS = 28  # the recent window candidates are judged on
LEVEL_SHIFT = 1.40
OUTAGE_DAYS = 4
REFIT, INT8 = "profile-refit", "profile-refit-int8"


@dataclass
class Candidate:
    name: str
    version: int
    run_id: str
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    rule: str
    scope: Scope
    store: int | None = None
    item: int | None = None
    models: tuple[str, ...] = ()  # candidate scenarios: the models the fault reaches (an INT8 child inherits it)

    @property
    def model(self) -> str | None:
        return self.models[0] if self.models else None

    def explains(self, alert, inject_version: int) -> bool:
        if self.models:
            return alert.model in self.models and alert.model_version == str(inject_version)
        if self.store is not None:
            return alert.store == self.store and alert.model is None
        return alert.item == self.item and alert.model is None


def scenarios(stores: int, items: int) -> list[Scenario]:
    store, item = min(4, stores), min(7, items)
    return [
        Scenario("store_level_shift", f"+40 % sales in store {store} from the injection day", "live_accuracy",
                 Scope("store", store=store), store=store),
        Scenario("item_weekday_profile", f"item {item} becomes a weekend item (Mon-Thu x0.6, Fri-Sun x1.5) in every store",
                 "live_accuracy", Scope("item", item=item), item=item),
        Scenario("feed_outage", f"no sales arrive from store {store} for {OUTAGE_DAYS} days, then the feed resumes",
                 "freshness", Scope("store", store=store), store=store),
        Scenario("candidate_worse_than_naive", "the nightly refit loses its calendar inputs (weekday and month profiles)",
                 "seasonal_naive", Scope("model", model=REFIT), models=(REFIT, INT8)),
        Scenario("int8_loses_accuracy", "the INT8 conversion is calibrated on Mondays only and clips the weekend",
                 "int8_drop", Scope("model", model=INT8), models=(INT8,)),
    ]


# ---- injections (on the true sales, from `start` on) ---------------------------------------------------------

def inject(truth: pd.DataFrame, scenario: Scenario, start: pd.Timestamp, rng) -> pd.DataFrame:
    """The replay's own injections on the truth (`shelfcast.loop.replay.Injection`); the outage here drops the
    store's rows for good (the stand-in has no feed to deliver them late)."""
    frame = truth.copy()
    if scenario.name == "store_level_shift":
        return Injection("level-shift", start.date(), store=scenario.store, factor=LEVEL_SHIFT).change_truth(frame, rng)
    if scenario.name == "item_weekday_profile":
        return Injection("weekday-profile", start.date(), item=scenario.item).change_truth(frame, rng)
    if scenario.name == "feed_outage":
        gone = (frame["date"] >= start) & (frame["date"] < start + pd.Timedelta(days=OUTAGE_DAYS)) & (frame["store"] == scenario.store)
        frame = frame[~gone]
    return frame.reset_index(drop=True)


# ---- the models ------------------------------------------------------------------------------------------------

def fit_profile(sales: pd.DataFrame) -> ProfileModel:
    return ProfileModel.fit(sales[["store", "item", "date"]], sales["sales"].to_numpy())


def window_level(history: pd.DataFrame, rows: pd.DataFrame, fallback: np.ndarray) -> np.ndarray:
    """The mean of the 14 days before each row (the edge models' `window_mean` input scaling); `fallback`
    where the history has a gap."""
    raw_x, _, ok = history_windows(history, rows, 14)
    return np.where(ok, np.maximum(raw_x.mean(axis=1), 1.0), np.maximum(fallback, 1.0))


def int8_roundtrip(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Quantize to int8 over [low, high] (scale and zero point as TFLite computes them) and back."""
    scale = max(high - low, 1e-6) / 255.0
    zero = -128 - round(low / scale)
    q = np.clip(np.round(values / scale) + zero, -128, 127)
    return (q - zero) * scale


@dataclass
class Night:
    day: pd.Timestamp
    gate: dict  # candidate name -> rejection reasons


class Simulation:
    """One alert log, one chain of sales arriving day by day, one fixed champion."""

    def __init__(self, truth: pd.DataFrame, champion: ProfileModel, expected: ExpectedError, training: pd.DataFrame,
                 thresholds, db: Path, seed: int):
        self.truth = truth
        self.champion = champion
        self.expected = expected
        self.training = training
        self.thresholds = thresholds
        self.store = AlertLog(db)
        self.rng = np.random.default_rng(seed)
        self.timings = {"live_s": [], "retrain_s": []}

    def night(self, day: pd.Timestamp, version: int, broken: str | None = None) -> Night:
        now = day + pd.Timedelta(hours=27)  # 03:00 the morning after
        arrived = self.truth[self.truth["date"] <= day]
        recent = arrived[arrived["date"] > day - pd.Timedelta(days=EVAL_DAYS + 14)]
        started = time.perf_counter()
        forecasts = recent[["store", "item", "date"]].assign(forecast=self.champion.predict(recent))
        service.check_live(self.store, self.thresholds, recent, forecasts=forecasts, expected=self.expected,
                           champion=("champion", 1), training_sales=self.training, new_dates=[day], now=now)
        self.timings["live_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        gate = self._retrain(arrived, recent, day, version, broken, now)
        self.timings["retrain_s"].append(time.perf_counter() - started)
        return Night(day, gate)

    def _retrain(self, arrived, recent, day, version, broken, now) -> dict:
        cut = day - pd.Timedelta(days=EVAL_DAYS)
        train = arrived[arrived["date"].dt.year < cut.year]  # whole calendar years: see the module docstring
        model = fit_profile(train)
        if broken == "candidate_worse_than_naive":
            model = dataclasses.replace(model, weekday=pd.Series(1.0, index=model.weekday.index),
                                        month=pd.Series(1.0, index=model.month.index))
        window = recent[recent["date"] > cut].reset_index(drop=True)
        refit = model.predict(window)
        last_year = train[train["date"] > train["date"].max() - pd.Timedelta(days=365)]
        if broken == "int8_loses_accuracy":  # the representative set holds Mondays only
            last_year = last_year[last_year["date"].dt.day_of_week == 0]
        pick = self.rng.choice(len(last_year), size=min(2048, len(last_year)), replace=False)
        calib = last_year.iloc[pick].reset_index(drop=True)
        ratios = model.predict(calib) / window_level(train, calib, model.predict(calib))
        level = window_level(recent, window, refit)
        int8 = level * int8_roundtrip(refit / level, float(ratios.min()), float(ratios.max()))
        common = {"champion_forecast": self.champion.predict(window), "naive_forecast": seasonal_naive(recent, window)}
        frames = {
            REFIT: evaluation_frame(window, {"forecast": refit, **common}),
            INT8: evaluation_frame(window, {"forecast": int8, **common, "parent_forecast": refit}),
        }
        candidates = [Candidate(REFIT, version, f"run-{version}-refit"), Candidate(INT8, version, f"run-{version}-int8")]
        service.check_candidates(self.store, self.thresholds, candidates, frames, now=now)
        gate = alert_gate(self.store, self.thresholds)
        return {c.name: gate(c) for c in candidates}


def copy_db(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def alert_rows(store: AlertLog) -> list:
    return store.list(("open", "acknowledged", "resolved"), limit=100000)


def cycle_day(stamp: str) -> pd.Timestamp:
    """The sales day a check belongs to (checks run at 03:00 the morning after)."""
    moment = pd.Timestamp(stamp)
    moment = moment.tz_convert(None) if moment.tzinfo is not None else moment  # stamps are UTC ("...Z")
    return (moment - pd.Timedelta(hours=27)).normalize()


def describe(alert) -> dict:
    return {"id": alert.id, "rule": alert.rule, "severity": alert.severity, "scope": alert.scope_label,
            "first_cycle": f"{cycle_day(alert.first_seen):%Y-%m-%d}", "status": alert.status,
            "observed": round(alert.observed, 3), "threshold": round(alert.threshold, 3)}


def run(stores: int, items: int, seed: int, stable_days: int = STABLE_DAYS, after_days: int = AFTER_DAYS) -> dict:
    started = time.perf_counter()
    thresholds = load_thresholds()
    end = MONITOR_START + pd.Timedelta(days=stable_days + after_days)
    truth = generate_sales(stores=stores, items=items, start=CHAMPION_TRAIN[0], end=f"{end:%Y-%m-%d}", seed=seed)
    training = truth[(truth["date"] >= CHAMPION_TRAIN[0]) & (truth["date"] <= CHAMPION_TRAIN[1])]
    champion = fit_profile(training)
    holdout = truth[(truth["date"] >= HOLDOUT[0]) & (truth["date"] <= HOLDOUT[1])]
    expected = ExpectedError.from_frame(evaluation_frame(holdout, {"forecast": champion.predict(holdout)}))
    inject_day = MONITOR_START + pd.Timedelta(days=stable_days)

    work = Path(tempfile.mkdtemp(prefix="shelfcast-alert-scenarios-"))
    stable = Simulation(truth, champion, expected, training, thresholds, work / "stable.db", seed)
    stable_nights = [stable.night(MONITOR_START + pd.Timedelta(days=d), d + 1) for d in range(stable_days)]
    stable_alerts = alert_rows(stable.store)
    stable_blocks = sum(bool(reasons) for n in stable_nights for reasons in n.gate.values())
    print(f"stable: {stable_days} nights, {len(stable_alerts)} alert(s), {stable_blocks} gate block(s)", file=sys.stderr)

    results = []
    timings = {k: list(v) for k, v in stable.timings.items()}
    for number, scenario in enumerate(scenarios(stores, items)):
        db = work / f"{scenario.name}.db"
        copy_db(stable.store.path, db)
        faulty = inject(truth, scenario, inject_day, np.random.default_rng(seed + 100 + number))
        sim = Simulation(faulty, champion, expected, training, thresholds, db, seed + number)
        sim.rng = np.random.default_rng(seed + 1000)  # the same calibration draws in every scenario
        nights = []
        for d in range(after_days):
            day = inject_day + pd.Timedelta(days=d)
            broken = scenario.name if (d == 0 and scenario.model) else None
            nights.append(sim.night(day, stable_days + d + 1, broken))
        for k in timings:
            timings[k] += sim.timings[k]
        inject_version = stable_days + 1
        new = [a for a in alert_rows(sim.store) if cycle_day(a.first_seen) >= inject_day]
        reopened = [a for a in alert_rows(sim.store) if a.id in {s.id for s in stable_alerts} and a.count > 1]
        explained = [a for a in new if scenario.explains(a, inject_version)]
        hits = [a for a in explained if a.rule == scenario.rule]
        exact = [a for a in hits if a.scope_key == scenario.scope.key]
        first = min(exact or hits, key=lambda a: a.first_seen) if hits else None
        resolved = [a for a in exact if a.status == "resolved"]
        result = {
            "name": scenario.name,
            "description": scenario.description,
            "expected_rule": scenario.rule,
            "expected_scope": scenario.scope.label,
            "detected": bool(hits),
            "delay_days": int((cycle_day(first.first_seen) - inject_day).days) if first else None,
            "scope_correct": bool(exact),
            "false_alerts": len(new) - len(explained) + len(reopened),
            "stable_false_alerts": len(stable_alerts),
            "alerts_after_injection": [describe(a) for a in new],
            "resolved_after_days": (
                int((cycle_day(resolved[0].resolved_at) - inject_day).days) if resolved else None
            ),
        }
        if scenario.model:
            result["gate_blocked"] = bool(nights[0].gate[scenario.model])
            result["gate_reasons"] = nights[0].gate[scenario.model]
        results.append(result)
        print(f"{scenario.name}: detected={result['detected']} delay={result['delay_days']} "
              f"scope_correct={result['scope_correct']} false={result['false_alerts']}", file=sys.stderr)

    doc = {
        "scenarios": results,
        "stable": {
            "days": stable_days,
            "alerts": [describe(a) for a in stable_alerts],
            "stable_false_alerts": len(stable_alerts),
            "gate_blocks": stable_blocks,
        },
        "setup": {
            "data": f"generate_sales(stores={stores}, items={items}, seed={seed})",
            "champion": "model.baselines.ProfileModel fitted on "
                        f"{CHAMPION_TRAIN[0]}..{CHAMPION_TRAIN[1]}; expected error from {HOLDOUT[0]}..{HOLDOUT[1]}",
            "champion_holdout_mape_pct": round(expected.mape_pct, 3),
            "nightly_candidates": f"{REFIT}: ProfileModel refitted on the whole years before the last "
                                  f"{EVAL_DAYS} days, judged on those {EVAL_DAYS} days against the champion and the "
                                  f"seasonal-naive rule; {INT8}: its output, scaled by the mean of the 14 days "
                                  "before, through an affine int8 quantization calibrated on 2,048 training rows "
                                  "of the last year",
            "monitoring": f"{stable_days} stable days from {MONITOR_START:%Y-%m-%d}, then {after_days} days per scenario "
                          f"from {inject_day:%Y-%m-%d}; checks at 03:00 after each day",
            "thresholds": "packaged defaults (src/shelfcast/monitor/thresholds.toml)",
        },
        "timing": {
            "live_check_s_median": round(float(np.median(timings["live_s"])), 3),
            "retrain_check_s_median": round(float(np.median(timings["retrain_s"])), 3),
            "nights": len(timings["live_s"]),
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return doc


def passed(doc: dict) -> bool:
    """Every scenario detected on its scope within one nightly cycle, no false alert anywhere."""
    return not doc["stable"]["stable_false_alerts"] and all(
        r["detected"] and r["scope_correct"] and r["delay_days"] <= 1 and not r["false_alerts"] for r in doc["scenarios"]
    )


def replication(doc: dict, seed: int, stable_days: int) -> dict:
    return {
        "seed": seed,
        "stable_days": stable_days,
        "stable_false_alerts": doc["stable"]["stable_false_alerts"],
        "detected": sum(r["detected"] for r in doc["scenarios"]),
        "scope_correct": sum(r["scope_correct"] for r in doc["scenarios"]),
        "max_delay_days": max((r["delay_days"] for r in doc["scenarios"] if r["delay_days"] is not None), default=None),
        "false_alerts": sum(r["false_alerts"] for r in doc["scenarios"]),
        "passed": passed(doc),
        "wall_seconds": doc["wall_seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--stable-days", type=int, default=STABLE_DAYS)
    parser.add_argument("--after-days", type=int, default=AFTER_DAYS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/alerts.json"))
    parser.add_argument("--replicate", action="append", default=[], metavar="SEED:STABLE_DAYS",
                        help="also run the whole benchmark on another seed and stable stretch; summarised in the JSON")
    args = parser.parse_args(argv)
    doc = run(args.stores, args.items, args.seed, args.stable_days, args.after_days)
    doc["replications"] = []
    for spec in args.replicate:
        seed, days = (int(v) for v in spec.split(":"))
        doc["replications"].append(replication(run(args.stores, args.items, seed, days, args.after_days), seed, days))
    write_result(args.out, doc)
    print(f"{'scenario':<28} {'detected':>8} {'delay':>5} {'scope':>6} {'false':>5} {'stable false':>12}")
    for r in doc["scenarios"]:
        print(f"{r['name']:<28} {str(r['detected']):>8} {str(r['delay_days']):>5} {str(r['scope_correct']):>6} "
              f"{r['false_alerts']:>5} {r['stable_false_alerts']:>12}")
    for r in doc["replications"]:
        print(f"replication seed {r['seed']}, {r['stable_days']} stable days: {r}")
    print(f"wrote {args.out}")
    return 0 if passed(doc) and all(r["passed"] for r in doc["replications"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
