"""The main job (`shelfcast run`, `make run`): the whole nightly loop on a fresh machine, in a few minutes.

1. start the local stack (SeaweedFS S3, Prefect server, MLflow server) or reuse the one already running;
2. make history with the synthetic generator (or read `--data` in Kaggle format);
3. deliver the history before the last days as one file, then the last days one file per day, running the
   ingest flow after each delivery (as the hourly schedule would);
4. run one nightly retrain on a quick configuration;
5. hand the candidates over to promotion;
6. a store (store 1, on the canary channel) syncs the promoted model with its own identity and forecasts
   tomorrow from its recent sales, as a device in the shop would;
7. print a summary and where to look (Prefect UI, MLflow UI, S3 keys), and write it as JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.contract import clock
from shelfcast.data.ingest import deliver_days, deliver_range, open_landing
from shelfcast.pipeline.config import RetrainConfig
from shelfcast.pipeline.night import watch
from shelfcast.pipeline.nightly import parent_sizes


@dataclass
class JobOptions:
    data: Path | None = None
    stores: str = "1-5"
    items: str = "1-10"
    history_days: int = 730
    deliver_days: int = 7
    seed: int = 0
    config: RetrainConfig = field(default_factory=lambda: RetrainConfig.load("quick"))
    promote: bool = True
    start_stack: bool = True


def make_history(options: JobOptions) -> pd.DataFrame:
    """Sales history: the Kaggle file when given, else the generator ending yesterday (UTC)."""
    from shelfcast.data.schema import load_sales, parse_range

    if options.data is not None:
        return load_sales(options.data, parse_range(options.stores), parse_range(options.items))
    from shelfcast.data.synthetic import generate_sales

    end = clock.today() - timedelta(days=1)
    start = end - timedelta(days=options.history_days - 1)
    stores, items = parse_range(options.stores), parse_range(options.items)
    frame = generate_sales(stores=max(stores), items=max(items), start=str(start), end=str(end), seed=options.seed)
    return frame[frame["store"].isin(stores) & frame["item"].isin(items)].reset_index(drop=True)


def run_job(settings: Settings, options: JobOptions, say=print, progress=None) -> dict:
    """Run the whole loop; returns the summary (also written to `<home>/last-run.json`)."""
    from shelfcast.flows.ingest import ingest_flow
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.flows.serve import use_api
    from shelfcast.stack.local import LocalStack, ui_addresses

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if options.start_stack:
        step = time.perf_counter()
        LocalStack(settings).up(on_step=lambda message: say(f"stack: {message}"))
        timings["stack_seconds"] = time.perf_counter() - step

    step = time.perf_counter()
    history = make_history(options)
    days = sorted(history["date"].unique())
    if len(days) <= options.deliver_days:
        raise ValueError(f"history has {len(days)} days; it needs more than the {options.deliver_days} delivered daily")
    landing = open_landing("landing/", wiring.bucket(settings))
    split = days[-options.deliver_days - 1]
    history_key = deliver_range(landing, history, days[0], split, kind="history")
    say(f"history: {len(history):,} rows, {history.groupby(['store', 'item']).ngroups} series, "
        f"{pd.Timestamp(days[0]):%Y-%m-%d}..{pd.Timestamp(days[-1]):%Y-%m-%d}; delivered {history_key}")

    # Each delivery is ingested on the morning after its last day, as the hourly schedule would, and the retrain
    # runs at 02:00 after the last one: freshness, future dates and alert times follow that clock, so the replay
    # of past days raises no alert of its own making.
    simulated = clock.SimulatedClock(morning_after(split))
    reports: list[dict] = []
    from prefect import tags

    with use_api(settings.prefect_api_url) as on_server, clock.use_clock(simulated), tags("shelfcast", "main-job"):
        if not on_server:
            say("SHELFCAST_PREFECT_API_URL is empty: flows run on a temporary local API that keeps nothing")
        reports += ingest_flow()
        task = progress.add_task("daily deliveries", total=len(days[-options.deliver_days:])) if progress else None
        for day in days[-options.deliver_days:]:
            simulated.set(morning_after(day))
            (key,) = deliver_days(landing, history, [day])
            reports += ingest_flow()
            say(f"delivered {key} and ran the ingest flow at {clock.stamp()}")
            if progress:
                progress.advance(task)
        timings["ingest_seconds"] = time.perf_counter() - step

        step = time.perf_counter()
        simulated.advance(timedelta(hours=1))
        specs = list(options.config.model_config_obj().variants)
        say(f"retrain at {clock.stamp()}: {', '.join(spec.name for spec in specs)} on the last "
            f"{options.config.window_days} days")
        steps = progress.add_task("retrain", total=len(parent_sizes(specs)) + len(specs)) if progress else None

        def advance(kind: str, name: str) -> None:
            if progress:
                progress.update(steps, advance=1, description=f"retrain: {kind} {name} done")

        with watch(advance):
            night = retrain_flow(options.config, promote=options.promote)
        timings["retrain_seconds"] = time.perf_counter() - step

        step = time.perf_counter()
        store = store_step(settings, history, say)
        timings["store_seconds"] = time.perf_counter() - step
        alerts = [{"id": a.id, "rule": a.rule, "severity": a.severity, "scope": a.scope_label, "status": a.status,
                   "message": a.message} for a in wiring.alert_log(settings).list()]

    timings["total_seconds"] = time.perf_counter() - started
    summary = {
        "night": night,
        "ingest": [{k: r[k] for k in ("name", "action", "rows_read", "rows_accepted", "rows_duplicate",
                                        "rows_rejected", "error")} for r in reports],
        "where": {**ui_addresses(settings), "MLflow UI": wiring.tracker(settings).runs_url()},
        "store": store,
        "alerts": alerts,
        "s3_keys": s3_key_counts(settings),
        "timings": timings,
    }
    path = Path(settings.home) / "last-run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, default=str))
    summary["summary_path"] = str(path)
    return summary


def morning_after(day) -> str:
    """01:00 UTC on the day after `day`: when the hourly ingest first sees a file of that day's sales."""
    return clock.stamp(pd.Timestamp(day).to_pydatetime() + timedelta(days=1, hours=1))


STORE_ID, STORE_CHANNEL = 1, "canary"  # canary stores get a new model first


def store_step(settings: Settings, history: pd.DataFrame, say) -> dict:
    """What a shop device does next: sync the channel with the store identity (verify the signed metadata, pull,
    verify, atomic swap), then forecast tomorrow for every item from the store's recent sales."""
    from shelfcast.device.forecast import predict_store
    from shelfcast.device.sync import StoreClient

    folder = Path(settings.home) / "stores" / f"store-{STORE_ID}"
    signer = wiring.signer(settings)  # the device is provisioned with the bucket's root, as `keys show --root-out`
    result = StoreClient(wiring.bucket(settings, "store"), STORE_CHANNEL, folder, store_id=STORE_ID,
                         trusted_root=signer.root_bytes() if signer else None).sync()
    summary = {"store": STORE_ID, "channel": STORE_CHANNEL, "folder": str(folder), "status": result.status,
               "serving": result.serving, "model_bytes": result.model_bytes, "message": result.message}
    say(f"store {STORE_ID} sync ({STORE_CHANNEL}): {result.status}, serving "
        f"{'v' + result.serving if result.serving else 'nothing yet'} ({result.model_bytes:,} bytes downloaded)")
    if result.serving is None:
        return summary
    recent = history[history["store"] == STORE_ID]
    recent = recent[recent["date"] > recent["date"].max() - pd.Timedelta(days=120)]
    sales_csv = folder / "recent-sales.csv"
    recent[["date", "store", "item", "sales"]].to_csv(sales_csv, index=False, date_format="%Y-%m-%d")
    report = predict_store(folder, sales_csv, STORE_ID)
    forecasts = sorted(report.forecasts, key=lambda f: f.item)
    summary["forecasts"] = [{"item": f.item, "date": f.date, "sales": round(f.sales, 1)} for f in forecasts]
    if forecasts:
        shown = ", ".join(f"item {f.item}: {f.sales:.1f}" for f in forecasts[:4])
        say(f"store {STORE_ID} forecast for {forecasts[0].date} with v{report.version}: {shown}"
            + (f" (+{len(forecasts) - 4} more)" if len(forecasts) > 4 else ""))
    return summary


S3_PREFIXES = ("landing/", "tables/sales/", "ledger/files/", "quarantine/", "mlflow/", "models/", "channels/")


def s3_key_counts(settings: Settings) -> dict[str, int]:
    """How many objects each prefix of the bucket holds (what to look at, and proof that it is there)."""
    objects = wiring.bucket(settings)
    return {prefix: sum(1 for _ in objects.list(prefix)) for prefix in S3_PREFIXES}
