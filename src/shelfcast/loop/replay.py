"""`shelfcast replay`: the whole loop, day by day, on a simulated clock, judged by what stores were served.

For every simulated day, on a stack of its own (SeaweedFS, Prefect API, MLflow, started under the replay's folder
on free ports):

    01:00  the previous day's sales file lands in `landing/` (the uploader identity); the ingest flow runs, with
           its live checks on the champion stores serve (freshness, drift, live accuracy)
    02:00  on the policy's retrain days the retrain flow runs (training, `.tflite` export, interpreter
           evaluation, candidate alerts, the gate, promotion to canary; stable follows canary after its canary
           time); on other days stable alone is advanced when canary has served long enough
    06:00  every simulated store syncs its channel with the store identity (signed metadata, conditional GET)
           and forecasts today from its own recent sales with the model it serves
    next   the day's actual sales score what each store was served

History before `start` is delivered as one backfill file and a first model is trained and promoted before the
first day, so every policy starts from the same kind of model; `frozen` never retrains after it.

Injections (`--inject KIND:key=value,...`) change the true sales, the feed, or one night's training, each with the
alert rule and scope it must raise (`INJECTIONS`). Every day's record is appended to `days.jsonl` in the replay
folder as soon as the day is done, so an interrupted replay resumes at the first day not recorded.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.contract import clock
from shelfcast.contract.errors import ConfigError
from shelfcast.data.synthetic import scale_counts
from shelfcast.pipeline.config import RetrainConfig
from shelfcast.stack.process import free_ports

POLICIES = ("frozen", "monthly", "weekly", "nightly")
CANARY_STORES = 1  # the first simulated store follows canary, the others stable


# ---- injections ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InjectionKind:
    rule: str | None  # the alert rule(s) it must raise, "a|b" (None: it must raise none; what stores get is the result)
    scope: str  # store, item, chain or model
    summary: str


INJECTIONS: dict[str, InjectionKind] = {
    "level-shift": InjectionKind("live_accuracy", "store", "a store's sales scaled by `factor` from `date` on"),
    "weekday-profile": InjectionKind("live_accuracy", "item", "an item turns into a weekend item in every store "
                                     "(Mon-Thu x0.6, Fri-Sun x1.5, renormalised) from `date` on"),
    "feed-outage": InjectionKind("freshness", "store", "no file rows from a store for `days` days from `date`; the "
                                 "missed days arrive with the first file after the outage"),
    "new-item": InjectionKind(None, "item", "item `item` starts selling in every store on `date` (no history)"),
    "store-closed": InjectionKind("freshness", "store", "a store sells nothing from `date` on and its feed stops"),
    "broken-candidate": InjectionKind("seasonal_naive|champion_regression", "model", "the first retrain on or after `date` "
                                      "trains without its calendar inputs (drill calendar-lost)"),
    "lossy-int8": InjectionKind("int8_drop", "model", "the first retrain on or after `date` calibrates INT8 on a "
                                "range a fiftieth of the real one (drill int8-miscalibrated)"),
}
WEEKEND_PROFILE = np.array([0.6, 0.6, 0.6, 0.6, 1.5, 1.5, 1.5])


@dataclass(frozen=True)
class Injection:
    kind: str
    start: date
    store: int | None = None
    item: int | None = None
    factor: float = 1.4
    days: int = 4

    @property
    def name(self) -> str:
        where = f"store {self.store}" if self.store is not None else f"item {self.item}" if self.item is not None else "chain"
        return f"{self.kind} {where} {self.start}"

    @property
    def expected(self) -> InjectionKind:
        return INJECTIONS[self.kind]

    @property
    def drill(self) -> str | None:
        return {"broken-candidate": "calendar-lost", "lossy-int8": "int8-miscalibrated"}.get(self.kind)

    @classmethod
    def parse(cls, text: str) -> "Injection":
        """`level-shift:store=4,date=2017-03-01,factor=1.4`, `feed-outage:store=2,date=2017-05-02,days=4`,
        `weekday-profile:item=7,date=...`, `new-item:item=11,date=...`, `store-closed:store=5,date=...`,
        `broken-candidate:date=...`, `lossy-int8:date=...`."""
        kind, _, rest = text.partition(":")
        if kind not in INJECTIONS:
            raise ConfigError(f"--inject {text!r}: unknown kind {kind!r}; choose one of {', '.join(INJECTIONS)}")
        values: dict[str, str] = {}
        for part in filter(None, rest.split(",")):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"--inject {text!r}: {part!r} is not key=value")
            values[key.strip()] = value.strip()
        unknown = set(values) - {"store", "item", "date", "factor", "days"}
        if unknown:
            raise ConfigError(f"--inject {text!r}: unknown key(s) {sorted(unknown)}; use store, item, date, factor, days")
        if "date" not in values:
            raise ConfigError(f"--inject {text!r}: needs date=YYYY-MM-DD")
        try:
            injection = cls(kind, date.fromisoformat(values["date"]),
                            int(values["store"]) if "store" in values else None,
                            int(values["item"]) if "item" in values else None,
                            float(values.get("factor", 1.4)), int(values.get("days", 4)))
        except ValueError as exc:
            raise ConfigError(f"--inject {text!r}: {exc}") from None
        needs = {"store": injection.store, "item": injection.item}
        wanted = INJECTIONS[kind].scope
        if wanted in needs and needs[wanted] is None:
            raise ConfigError(f"--inject {text!r}: {kind} needs {wanted}=N")
        return injection

    def change_truth(self, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """The true sales after the injection (what the shops really sell)."""
        start = pd.Timestamp(self.start)
        after = truth["date"] >= start
        if self.kind == "level-shift":
            rows = after & (truth["store"] == self.store)
            truth.loc[rows, "sales"] = scale_counts(truth.loc[rows, "sales"].to_numpy(), np.float64(self.factor), rng)
        elif self.kind == "weekday-profile":
            rows = after & (truth["item"] == self.item)
            profile = WEEKEND_PROFILE / WEEKEND_PROFILE.mean()
            factor = profile[pd.DatetimeIndex(truth.loc[rows, "date"]).day_of_week]
            truth.loc[rows, "sales"] = scale_counts(truth.loc[rows, "sales"].to_numpy(), factor, rng)
        elif self.kind == "store-closed":
            truth = truth[~(after & (truth["store"] == self.store))]
        elif self.kind == "new-item":
            if (truth["item"] == self.item).any():
                truth = truth[~((truth["item"] == self.item) & ~after)]  # the item existed nowhere before
            else:
                raise ConfigError(f"new-item:item={self.item}: the data has no such item; pick one of the panel's "
                                  "items (its sales before the date are removed)")
        return truth.reset_index(drop=True)

    def feed(self, rows: pd.DataFrame, day: pd.Timestamp, truth: pd.DataFrame) -> pd.DataFrame:
        """The rows of `day`'s file after the injection (what the central system receives)."""
        if self.kind != "feed-outage":
            return rows
        start, end = pd.Timestamp(self.start), pd.Timestamp(self.start) + pd.Timedelta(days=self.days)
        if start <= day < end:
            return rows[rows["store"] != self.store]
        if day == end:  # the store system re-exports what it could not send
            missed = truth[(truth["store"] == self.store) & (truth["date"] >= start) & (truth["date"] < end)]
            return pd.concat([missed, rows], ignore_index=True)
        return rows

    def to_dict(self) -> dict:
        return {**asdict(self), "start": self.start.isoformat(), "name": self.name}


# ---- options and policies ----------------------------------------------------------------------------------

@dataclass
class ReplayOptions:
    data: Path | None = None
    stores: str = "1-5"
    items: str = "1-10"
    start: date = date(2017, 1, 1)
    end: date = date(2017, 12, 31)
    policy: str = "weekly"
    warm_start: bool = True
    stores_simulated: int | None = None  # None: every store of the panel
    injections: list[Injection] = field(default_factory=list)
    config: RetrainConfig = field(default_factory=lambda: RetrainConfig.load("replay"))
    seed: int = 0
    history_days: int = 730  # synthetic data only: days before `start`

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"--policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        if self.end < self.start:
            raise ConfigError(f"--end {self.end} is before --start {self.start}")

    def retrains_on(self, day: date) -> bool:
        """Whether the policy's schedule retrains in the night before `day`'s stores open. The first model is
        trained the night before `start`, so no policy retrains on `start` itself."""
        if self.policy == "frozen" or day <= self.start:
            return False
        if self.policy == "nightly":
            return True
        if self.policy == "weekly":
            return (day - self.start).days % 7 == 0
        return day.day == 1  # monthly

    def to_dict(self) -> dict:
        return {"data": str(self.data) if self.data else "synthetic", "stores": self.stores, "items": self.items,
                "start": self.start.isoformat(), "end": self.end.isoformat(), "policy": self.policy,
                "warm_start": self.warm_start, "stores_simulated": self.stores_simulated, "seed": self.seed,
                "injections": [i.to_dict() for i in self.injections], "config": self.config.model_dump()}


def load_truth(options: ReplayOptions) -> pd.DataFrame:
    """The true daily sales of the panel up to `end` (Kaggle file or generator), injections applied."""
    from shelfcast.data.schema import load_sales, parse_range

    stores, items = parse_range(options.stores), parse_range(options.items)
    if options.data is not None:
        truth = load_sales(options.data, stores, items)
    else:
        from shelfcast.data.synthetic import generate_sales

        first = options.start - timedelta(days=options.history_days)
        truth = generate_sales(stores=max(stores), items=max(items), start=str(first), end=str(options.end),
                               seed=options.seed)
        truth = truth[truth["store"].isin(stores) & truth["item"].isin(items)]
    truth = truth[truth["date"] <= pd.Timestamp(options.end)].sort_values(["date", "store", "item"])
    if truth.empty or truth["date"].min() >= pd.Timestamp(options.start) - pd.Timedelta(days=120):
        raise ConfigError(f"the data has no history well before --start {options.start}; the first model needs "
                          "at least a year of it")
    if truth["date"].max() < pd.Timestamp(options.end):
        raise ConfigError(f"the data ends on {truth['date'].max():%Y-%m-%d}, before --end {options.end}")
    rng = np.random.default_rng(options.seed + 17)
    truth = truth.reset_index(drop=True)
    for injection in options.injections:
        truth = injection.change_truth(truth, rng)
    return truth


# ---- the replay's own stack -------------------------------------------------------------------------------

def replay_settings(base: Settings, folder: Path, ports: dict[str, int]) -> Settings:
    """Settings of a stack that belongs to the replay: its own home (data, keys, alert log), its own ports."""
    return base.model_copy(update={
        "home": folder / "home",
        "s3_endpoint_url": f"http://127.0.0.1:{ports['seaweedfs']}",
        "prefect_api_url": f"http://127.0.0.1:{ports['prefect']}/api",
        "mlflow_tracking_uri": f"http://127.0.0.1:{ports['mlflow']}",
        "keys_dir": None, "root_key_file": None, "alert_webhook_url": None,
        "trainer_secret_key": None, "store_secret_key": None, "uploader_secret_key": None,
    })


def drain_prefect(timeout_s: float = 10.0) -> None:
    """Send the logs and events Prefect still holds and stop its background services, while this replay's API is
    still up: the next flow (another replay's stack, another API) starts services of its own instead of calling
    a stopped server, and an interrupted replay exits instead of retrying one."""
    from prefect._internal.concurrency.services import QueueService

    QueueService.drain_all(timeout=timeout_s, at_exit=False)


@contextmanager
def settings_in_environment(settings: Settings):
    """The flows read their settings from the environment (as a deployment's worker does): point them at the
    replay's stack for the duration."""
    values = {"SHELFCAST_HOME": str(settings.home), "SHELFCAST_S3_ENDPOINT_URL": settings.s3_endpoint_url,
              "SHELFCAST_PREFECT_API_URL": settings.prefect_api_url,
              "SHELFCAST_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    cleared = [name for name in ("SHELFCAST_KEYS_DIR", "SHELFCAST_ROOT_KEY_FILE", "SHELFCAST_ALERT_WEBHOOK_URL",
                                 "SHELFCAST_TRAINER_SECRET_KEY", "SHELFCAST_STORE_SECRET_KEY",
                                 "SHELFCAST_UPLOADER_SECRET_KEY") if name in os.environ]
    saved = {name: os.environ.get(name) for name in [*values, *cleared]}
    os.environ.update(values)
    for name in cleared:
        del os.environ[name]
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ---- one day -------------------------------------------------------------------------------------------------

def stamp_at(day: date, hour: int) -> str:
    return clock.stamp(datetime(day.year, day.month, day.day, hour))


@dataclass
class StoreDevice:
    store: int
    channel: str
    folder: Path

    def sync_and_forecast(self, settings: Settings, truth_store: pd.DataFrame, day: date, trusted_root) -> dict:
        """Sync with the store identity, then forecast `day` from the store's own sales up to the day before."""
        from shelfcast.device.forecast import predict_store
        from shelfcast.device.sync import StoreClient

        result = StoreClient(wiring.bucket(settings, "store"), self.channel, self.folder, store_id=self.store,
                             trusted_root=trusted_root).sync()
        record = {"store": self.store, "channel": self.channel, "status": result.status, "serving": result.serving,
                  "model_bytes": result.model_bytes, "bytes_received": result.bytes_received, "forecasts": {}}
        if not result.ok:
            record["message"] = result.message
        recent = truth_store[(truth_store["date"] < pd.Timestamp(day))
                             & (truth_store["date"] >= pd.Timestamp(day) - pd.Timedelta(days=70))]
        if result.serving is None or recent.empty or recent["date"].max() < pd.Timestamp(day) - pd.Timedelta(days=1):
            return record  # nothing to serve yet, or the shop is closed
        sales_csv = self.folder / "recent-sales.csv"
        recent[["date", "store", "item", "sales"]].to_csv(sales_csv, index=False, date_format="%Y-%m-%d")
        report = predict_store(self.folder, sales_csv, self.store)
        record["forecasts"] = {str(f.item): round(float(f.sales), 3) for f in report.forecasts}
        record["skipped"] = len(report.skipped)
        record["version"] = report.version
        return record


def served_errors(records: list[dict], truth: pd.DataFrame) -> pd.DataFrame:
    """Every forecast the stores were served on the days of `records` (date, store, item, forecast), with its
    actual sales and absolute percentage error; days without sales are left out, as MAPE leaves them out."""
    from shelfcast.monitor.evaluation import ape_pct

    rows = [(pd.Timestamp(record["day"]), store["store"], int(item), forecast)
            for record in records for store in record["stores"] for item, forecast in store["forecasts"].items()]
    served = pd.DataFrame(rows, columns=["date", "store", "item", "forecast"])
    scored = served.merge(truth[["date", "store", "item", "sales"]], on=["date", "store", "item"], how="inner")
    return scored.assign(ape=ape_pct(scored["sales"], scored["forecast"])).dropna(subset=["ape"])


def score_day(record: dict, truth_day: pd.DataFrame) -> dict:
    """The day's served MAPE, pooled and per store, against its actual sales."""
    scored = served_errors([record], truth_day)
    return {"mape_pct": float(scored["ape"].mean()) if len(scored) else None, "n": int(len(scored)),
            "per_store": {str(k): float(v) for k, v in scored.groupby("store")["ape"].mean().items()}}


def seasonal_naive_day(truth: pd.DataFrame, day: pd.Timestamp, served_keys: set) -> float | None:
    """MAPE of the mean of the same weekday one and two weeks back on the served (store, item) of `day`."""
    frame = truth[truth["date"].isin([day, day - pd.Timedelta(days=7), day - pd.Timedelta(days=14)])]
    wide = frame.pivot_table(index=["store", "item"], columns="date", values="sales")
    if day not in wide.columns or len(wide.columns) < 3:
        return None
    wide = wide[wide.index.isin(served_keys)] if served_keys else wide
    y = wide[day].to_numpy()
    forecast = (wide[day - pd.Timedelta(days=7)] + wide[day - pd.Timedelta(days=14)]).to_numpy() / 2
    keep = np.isfinite(forecast) & (y > 0)
    return float(np.mean(np.abs(forecast[keep] - y[keep]) / y[keep]) * 100) if keep.any() else None


# ---- the replay --------------------------------------------------------------------------------------------

class Replay:
    """One replay: its folder holds the stack, `replay.json` (options, ports) and `days.jsonl` (a line per day)."""

    def __init__(self, folder: Path, options: ReplayOptions, base: Settings, say: Callable[[str], None] = print,
                 progress=None, on_day: Callable[[dict], None] | None = None, own_stack: bool = True,
                 run_tags: tuple[str, ...] = ("shelfcast", "replay")):
        """`own_stack`: a stack of the replay's own under `folder` on free ports (else the stack `base` names,
        already running, as the main job uses it)."""
        self.folder, self.options, self.say, self.progress = Path(folder), options, say, progress
        self.on_day = on_day or (lambda record: None)
        self.own_stack, self.run_tags = own_stack, run_tags
        self.ingest_reports: list[dict] = []
        self.phase: Callable[[str], None] = lambda text: None
        self.first_night: dict | None = None
        self.state_path, self.days_path = self.folder / "replay.json", self.folder / "days.jsonl"
        self.folder.mkdir(parents=True, exist_ok=True)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else None
        if state is not None and state["options"] != json.loads(json.dumps(options.to_dict(), default=str)):
            raise ConfigError(f"{self.folder} holds a replay with other options; resume it with the same options "
                              "or start a new one in another --folder")
        if state is None:
            state = {"options": options.to_dict(),
                     "ports": dict(zip(("seaweedfs", "prefect", "mlflow"), free_ports(3))) if own_stack else None}
            self.state_path.write_text(json.dumps(state, indent=1, default=str))
        self.settings = replay_settings(base, self.folder, state["ports"]) if own_stack else base
        self.timings: dict[str, float] = {"stack": 0.0, "ingest": 0.0, "retrain": 0.0, "promote": 0.0, "stores": 0.0}

    def done_days(self) -> list[dict]:
        if not self.days_path.exists():
            return []
        records = []
        for line in self.days_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: that day is replayed
        return records

    def run(self) -> dict:
        from prefect import tags

        from shelfcast.flows.serve import use_api
        from shelfcast.stack.local import LocalStack

        options, settings = self.options, self.settings
        started = time.perf_counter()
        step = time.perf_counter()
        if self.own_stack:
            LocalStack(settings).up(on_step=lambda message: self.say(f"stack: {message}"))
        self.timings["stack"] += time.perf_counter() - step
        truth = load_truth(options)
        panel_stores = sorted(truth["store"].unique())
        count = options.stores_simulated or len(panel_stores)
        devices = [StoreDevice(int(s), "canary" if n < CANARY_STORES else "stable",
                               self.folder / "stores" / f"store-{s}") for n, s in enumerate(panel_stores[:count])]
        sales_of = {device.store: truth[truth["store"] == device.store] for device in devices}  # each shop's own POS
        days = [d.date() for d in pd.date_range(options.start, options.end)]
        records = self.done_days()
        done = {r["day"] for r in records}
        simulated = clock.SimulatedClock(stamp_at(options.start - timedelta(days=1), 0))
        task = self.progress.add_task("replay", total=len(days), completed=len(done)) if self.progress else None
        self.phase = (lambda text: self.progress.update(task, description=f"replay ({options.policy}) {text}")) \
            if self.progress else (lambda text: None)
        try:
            with settings_in_environment(settings), use_api(settings.prefect_api_url), clock.use_clock(simulated), \
                    tags(*self.run_tags, options.policy):
                if not records:
                    self.bootstrap(truth, simulated)
                root = self.trusted_root()
                for day in days:
                    if day.isoformat() in done:
                        continue
                    record = self.one_day(day, truth, devices, sales_of, simulated, root)
                    with self.days_path.open("a") as handle:
                        handle.write(json.dumps(record, default=str) + "\n")
                    records.append(record)
                    self.on_day(record)
                    if self.progress:
                        self.progress.update(task, advance=1)
        finally:
            self.timings["total"] = time.perf_counter() - started
            drain_prefect()
        return summarize(self, truth, records)

    def report(self) -> dict:
        """The result of the days recorded so far, without running any (a replay still going, or stopped)."""
        records = self.done_days()
        if not records:
            raise ConfigError(f"{self.folder} has no replayed day yet; run the replay first")
        return summarize(self, load_truth(self.options), records)

    def trusted_root(self):
        signer = wiring.signer(self.settings)
        return signer.root_bytes() if signer else None

    def bootstrap(self, truth: pd.DataFrame, simulated) -> None:
        """History up to two days before `start` as one backfill; the first model trained and promoted to canary
        on the day before `start`, so stable stores serve it from the first day on."""
        from shelfcast.data.ingest import deliver_range, open_landing
        from shelfcast.flows.ingest import ingest_flow
        from shelfcast.flows.retrain import retrain_flow

        options = self.options
        landing = open_landing("landing/", wiring.bucket(self.settings, "uploader"))
        last = pd.Timestamp(options.start) - pd.Timedelta(days=2)
        key = deliver_range(landing, truth, truth["date"].min(), last, kind="backfill")
        simulated.set(stamp_at((last + pd.Timedelta(days=1)).date(), 1))
        step = time.perf_counter()
        self.ingest_reports += ingest_flow()
        self.timings["ingest"] += time.perf_counter() - step
        self.say(f"history delivered as {key} and ingested")
        simulated.set(stamp_at(options.start - timedelta(days=1), 2))
        step = time.perf_counter()
        night = retrain_flow(options.config.model_copy(update={"warm_start": False}), promote=True)
        self.timings["retrain"] += time.perf_counter() - step
        self.first_night = night
        (self.folder / "bootstrap.json").write_text(json.dumps(
            {"seconds": {k: v for k, v in self.timings.items() if v}, "night": night_record(night, None)}, default=str))
        self.say(f"first model: {describe_promotion(night)}")

    def one_day(self, day: date, truth: pd.DataFrame, devices: list[StoreDevice], sales_of: dict[int, pd.DataFrame],
                simulated, root) -> dict:
        from shelfcast.data.ingest import frame_to_csv, open_landing
        from shelfcast.flows.ingest import ingest_flow
        from shelfcast.flows.retrain import retrain_flow

        options, settings = self.options, self.settings
        record: dict = {"day": day.isoformat(), "retrain": False, "seconds": {}}
        yesterday = pd.Timestamp(day) - pd.Timedelta(days=1)

        # 01:00: yesterday's file.
        simulated.set(stamp_at(day, 1))
        self.phase(f"{day}: ingest")
        step = time.perf_counter()
        rows = truth[truth["date"] == yesterday]
        for injection in options.injections:
            rows = injection.feed(rows, yesterday, truth)
        landing = open_landing("landing/", wiring.bucket(settings, "uploader"))
        landing.deliver(f"sales-{yesterday:%Y-%m-%d}.csv", frame_to_csv(rows))
        reports = ingest_flow()
        self.ingest_reports += reports
        record["ingest"] = {"rows_accepted": sum(r["rows_accepted"] for r in reports),
                            "rows_rejected": sum(r["rows_rejected"] for r in reports),
                            "files": [r["action"] for r in reports]}
        record["seconds"]["ingest"] = time.perf_counter() - step

        # 02:00: the policy's retrain, else the stable advance.
        simulated.set(stamp_at(day, 2))
        step = time.perf_counter()
        if options.retrains_on(day):
            self.phase(f"{day}: retrain")
            drills = [i.drill for i in options.injections if i.drill and first_retrain_on_or_after(options, i.start) == day]
            config = options.config.model_copy(update={"warm_start": options.warm_start,
                                                       "drill": drills[0] if drills else None})
            try:
                night = retrain_flow(config, promote=True)
                record["retrain"] = True
                record["night"] = night_record(night, drills[0] if drills else None)
            except Exception as exc:  # noqa: BLE001 - a failed night is part of the record; stores keep their model
                record["retrain"] = True
                record["night"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            record["seconds"]["retrain"] = time.perf_counter() - step
        else:
            record["advance"] = self.advance_stable(day)
            record["seconds"]["promote"] = time.perf_counter() - step

        # 06:00: the stores.
        simulated.set(stamp_at(day, 6))
        self.phase(f"{day}: {len(devices)} stores sync and forecast")
        step = time.perf_counter()
        record["stores"] = [device.sync_and_forecast(settings, sales_of[device.store], day, root) for device in devices]
        record["seconds"]["stores"] = time.perf_counter() - step
        for phase, seconds in record["seconds"].items():
            self.timings[phase] = self.timings.get(phase, 0.0) + seconds
        truth_day = truth[truth["date"] == pd.Timestamp(day)]
        record["score"] = score_day(record, truth_day)
        served = {(s["store"], int(i)) for s in record["stores"] for i in s["forecasts"]}
        record["seasonal_naive_mape_pct"] = seasonal_naive_day(truth, pd.Timestamp(day), served)
        return record

    def advance_stable(self, day: date) -> dict | None:
        """When canary serves a version stable does not, run the promotion with no new candidates: it moves
        stable once the canary time has passed (and re-signs the delivery metadata)."""
        from shelfcast.delivery.channels import read_head
        from shelfcast.flows.promote import promote_candidates

        objects = wiring.bucket(self.settings)
        canary, stable = read_head(objects, "canary").version, read_head(objects, "stable").version
        if canary is None or canary == stable:
            return None
        outcome = promote_candidates([], night=f"{day}-advance", settings=self.settings)
        return {"stable": (outcome.get("stable") or {}).get("version"), "notes": outcome.get("notes", [])[:2]}


def first_retrain_on_or_after(options: ReplayOptions, start: date) -> date | None:
    day = max(start, options.start)
    while day <= options.end:
        if options.retrains_on(day):
            return day
        day += timedelta(days=1)
    return None


def night_record(night: dict, drill: str | None) -> dict:
    promotion = night.get("promotion") or {}
    decision = promotion.get("decision") or {}
    return {
        "night": night.get("night"), "seconds": night.get("seconds"), "drill": drill,
        "variants": [{"name": v["name"], "status": v["status"], "version": v.get("version"),
                      "mape_pct": (v.get("metrics") or {}).get("mape_pct"),
                      "tflite_bytes": (v.get("metrics") or {}).get("tflite_bytes")} for v in night.get("variants", [])],
        "naive_mape_pct": night.get("naive_mape_pct"),
        "chosen": (decision.get("chosen") or {}).get("version") if isinstance(decision.get("chosen"), dict)
        else decision.get("chosen"),
        "reason": decision.get("reason"),
        "canary": (promotion.get("canary") or {}).get("version"),
        "stable": (promotion.get("stable") or {}).get("version"),
        "errors": promotion.get("errors", []),
        "rejections": [{"version": r.get("version"), "reasons": [str(x)[:200] for x in r.get("reasons", [])][:3]}
                       for r in decision.get("rejections", [])],
    }


def describe_promotion(night: dict) -> str:
    record = night_record(night, None)
    best = min((v for v in record["variants"] if v["mape_pct"] is not None), key=lambda v: v["mape_pct"], default=None)
    moved = f"canary -> v{record['canary']}" if record["canary"] else "no channel moved"
    return (f"night {record['night']}: {len(record['variants'])} variants, best "
            f"{best['name'] + ' ' + format(best['mape_pct'], '.2f') + ' %' if best else '-'}; {moved} ({record['reason']})")


# ---- results ------------------------------------------------------------------------------------------------

def summarize(replay: Replay, truth: pd.DataFrame, records: list[dict]) -> dict:
    """The replay's result: served accuracy per day and store, versions, promotions, alerts, bytes, phases, and
    for each injection whether and how soon it was detected and repaired."""
    from shelfcast.model.baselines import noise_floor

    options = replay.options
    records = sorted(records, key=lambda r: r["day"])
    scored = served_errors(records, truth)

    period = truth[(truth["date"] >= pd.Timestamp(options.start)) & (truth["date"] <= pd.Timestamp(records[-1]["day"]))] \
        if records else truth.iloc[:0]
    floor = noise_floor(period[["store", "item", "date"]], period["sales"].to_numpy()) if len(period) > 60 else None
    naive = [r["seasonal_naive_mape_pct"] for r in records if r.get("seasonal_naive_mape_pct") is not None]

    # Every alert the replay raised, resolved ones too (a feed outage's freshness alert resolves when the days arrive).
    alerts = [alert_record(a) for a in wiring.alert_log(replay.settings).list(
        statuses=("open", "acknowledged", "resolved"), limit=100_000)]
    promotions = [{"day": r["day"], "canary": r["night"].get("canary"), "stable": r["night"].get("stable"),
                   "chosen": r["night"].get("chosen"), "reason": r["night"].get("reason")}
                  for r in records if r.get("night") and (r["night"].get("canary") or r["night"].get("stable"))]
    promotions += [{"day": r["day"], "canary": None, "stable": r["advance"]["stable"], "chosen": None,
                    "reason": "stable advanced after its canary time"}
                   for r in records if r.get("advance") and r["advance"].get("stable")]
    promotions.sort(key=lambda p: p["day"])
    moved_days = {p["day"] for p in promotions}
    bytes_by_day = {r["day"]: sum(s["model_bytes"] for s in r["stores"]) for r in records}
    versions: dict[str, list] = {}
    for record in records:
        for store in record["stores"]:
            history = versions.setdefault(str(store["store"]), [])
            if not history or history[-1]["version"] != store["serving"]:
                history.append({"from": record["day"], "version": store["serving"]})
    retrains = [r for r in records if r.get("retrain")]
    moves, phases = channel_moves(replay.settings), phase_seconds(replay.folder, records)
    policy = {
        "name": options.policy,
        "days": len(records),
        "first_day": records[0]["day"] if records else None,
        "last_day": records[-1]["day"] if records else None,
        "served_mape_pct": float(scored["ape"].mean()) if len(scored) else None,
        "served_forecasts": sum(len(s["forecasts"]) for r in records for s in r["stores"]),
        "scored_forecasts": int(len(scored)),
        "served_mape_pct_per_store": {str(k): float(v) for k, v in scored.groupby("store")["ape"].mean().items()},
        "seasonal_naive_mape_pct": float(np.mean(naive)) if naive else None,
        "daily": [{"day": r["day"], "mape_pct": r["score"]["mape_pct"], "n": r["score"]["n"],
                   "per_store": r["score"]["per_store"],
                   "seasonal_naive_mape_pct": r.get("seasonal_naive_mape_pct"), "retrain": r.get("retrain", False),
                   "model_bytes": bytes_by_day[r["day"]]} for r in records],
        "versions": versions,
        "retrains": len(retrains),
        "failed_retrains": sum(1 for r in retrains if "error" in (r.get("night") or {})),
        "nights": [{"day": r["day"], **r["night"]} for r in retrains],
        "promotions": len([p for p in promotions if p["canary"]]),
        "stable_moves": len([p for p in promotions if p["stable"]]),
        "promotion_log": promotions,
        "rollbacks": moves.get("rollback") if moves is not None else None,
        "channel_moves": sum(moves.values()) if moves is not None else None,
        "alerts": alerts,
        "critical_alerts": sum(1 for a in alerts if a["severity"] == "critical"),
        "model_bytes_to_stores": int(sum(bytes_by_day.values())),
        "model_bytes_on_quiet_days": int(sum(b for d, b in bytes_by_day.items() if d not in moved_days)),
        "seconds_per_phase": phases,
        "wall_seconds": round(sum(phases.values()), 1),
        "planned_days": (options.end - options.start).days + 1,
        "training": training_description(options),
        "injections": [i.name for i in options.injections],
    }
    return {
        "data": str(options.data.name if options.data else "synthetic generator"),
        "stores": options.stores, "items": options.items,
        "start": options.start.isoformat(), "end": options.end.isoformat(),
        "noise_floor_pct": floor["mape_pct_true_mean"] if floor else None,
        "noise_floor_mape_optimal_pct": floor["mape_pct_mape_optimal"] if floor else None,
        "policy": policy,
        "injections": [judge_injection(i, options, scored, alerts, records) for i in options.injections],
    }


def channel_moves(settings: Settings) -> dict[str, int] | None:
    """Moves in the channels' own logs, counted by action (`promote`, `advance`, `rollback`, ...); None when the
    replay's S3 server is not running to ask (a report from a stopped replay's folder)."""
    from collections import Counter
    from urllib.parse import urlparse

    from shelfcast.delivery.channels import read_log
    from shelfcast.stack.process import port_open

    if not port_open(urlparse(settings.s3_endpoint_url or "").port or 443):
        return None
    objects = wiring.bucket(settings)
    counts = Counter(e.action for channel in ("canary", "stable") for e in read_log(objects, channel))
    return {"rollback": 0, **counts}


def phase_seconds(folder: Path, records: list[dict]) -> dict[str, float]:
    """Seconds per phase over the first model (`bootstrap.json`) and every recorded day: the work the replay did,
    whether it ran in one go or was resumed."""
    totals: dict[str, float] = {}
    path = Path(folder) / "bootstrap.json"
    if path.exists():
        for phase, seconds in json.loads(path.read_text())["seconds"].items():
            totals[f"first_{phase}"] = seconds
    for record in records:
        for phase, seconds in record["seconds"].items():
            totals[phase] = totals.get(phase, 0.0) + seconds
    return {k: round(v, 1) for k, v in totals.items()}


def training_description(options: ReplayOptions) -> dict:
    config = options.config
    model = config.model_config_obj()
    return {"model": config.model, "variants": [s.name for s in model.variants], "window_days": config.window_days,
            "epochs": model.train.epochs, "warm_start": options.warm_start and options.policy != "frozen",
            "warm_epochs": config.warm_epochs, "first_model": "cold"}


def alert_record(alert) -> dict:
    return {"id": alert.id, "rule": alert.rule, "severity": alert.severity, "scope": alert.scope_label,
            "scope_kind": alert.scope_kind, "store": alert.store, "item": alert.item, "model": alert.model,
            "model_version": alert.model_version, "first_seen": alert.first_seen, "last_seen": alert.last_seen,
            "resolved_at": alert.resolved_at,
            "status": alert.status, "count": alert.count}


def judge_injection(injection: Injection, options: ReplayOptions, scored: pd.DataFrame, alerts: list[dict],
                    records: list[dict]) -> dict:
    """Detected (an alert of the expected rule opened on or after the injection), how many nights later, whether
    on the right scope, and how many days until served MAPE on the affected scope is back within 0.5 points of
    its level in the 28 days before."""
    expected = injection.expected
    rules = set(expected.rule.split("|")) if expected.rule else set()
    start = injection.start
    night: dict = {}
    if injection.drill:  # a candidate fault can only show on the night it happens
        start = first_retrain_on_or_after(options, injection.start) or injection.start
        night = next((r["night"] for r in records if r["day"] == start.isoformat() and r.get("night")), {})

    def day_of(stamp: str | None) -> date | None:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).date() if stamp else None

    def raised_since(a) -> date | None:
        """The day the alert fired for this injection: opened on or after its start, or seen again then
        (an alert of a model fingerprint stays one row across nights)."""
        if a["rule"] not in rules:
            return None
        if day_of(a["first_seen"]) >= start:
            return day_of(a["first_seen"])
        last = day_of(a.get("last_seen"))
        return start if injection.drill and last is not None and last >= start else None

    def right_scope(a) -> bool:
        if expected.scope == "store":
            return a["scope_kind"] == "store" and a["store"] == injection.store
        if expected.scope == "item":
            return a["scope_kind"] == "item" and a["item"] == injection.item
        versions = {v["version"] for v in night.get("variants", [])}
        return a["model"] is not None and (not versions or a["model_version"] in versions)

    raised = [(raised_since(a), a) for a in alerts]
    raised = sorted(((d, a) for d, a in raised if d is not None), key=lambda pair: pair[0])
    scoped = [(d, a) for d, a in raised if right_scope(a)]
    result = {"name": injection.name, "kind": injection.kind, "rule": expected.rule, "scope": expected.scope,
              "start": injection.start.isoformat(), "detected": bool(scoped),
              "delay_nights": (scoped[0][0] - start).days if scoped else None,
              "scope_correct": bool(scoped) and right_scope(raised[0][1]),
              "alerts": [a["id"] for _, a in raised][:10]}
    if injection.drill:
        result["blocked"] = bool(night) and night.get("canary") is None
        result["night"] = {k: night.get(k) for k in ("night", "chosen", "reason", "drill", "rejections", "error")}
        if not night.get("variants"):  # the night never made candidates: nothing of it could be detected
            result.update(detected=False, delay_nights=None, scope_correct=False,
                          note=f"the drill's night made no candidates: {night.get('error', 'no night on that day')}")
    area = scored
    if expected.scope == "store" and injection.store is not None:
        area = scored[scored["store"] == injection.store]
    elif expected.scope == "item" and injection.item is not None:
        area = scored[scored["item"] == injection.item]
    daily = area.groupby("date")["ape"].mean()
    before = daily[(daily.index < pd.Timestamp(injection.start))
                   & (daily.index >= pd.Timestamp(injection.start) - pd.Timedelta(days=28))]
    after = daily[daily.index >= pd.Timestamp(injection.start)].rolling(14, min_periods=7).mean()
    result["mape_before_pct"] = float(before.mean()) if len(before) else None
    recovered = after[after <= before.mean() + 0.5] if len(before) else after.iloc[:0]
    result["recovered_days"] = int((recovered.index[0] - pd.Timestamp(injection.start)).days) if len(recovered) else None
    if injection.kind == "new-item":
        first_served = area[area["date"] >= pd.Timestamp(injection.start)]["date"].min()
        result["first_forecast_days"] = int((first_served - pd.Timestamp(injection.start)).days) \
            if pd.notna(first_served) else None
        result["detected"] = not any(a["item"] == injection.item for a in alerts if a["severity"] == "critical")
        result["note"] = "detected means no critical alert was raised for the new item"
    return result
