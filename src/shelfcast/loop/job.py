"""The main job (`shelfcast run`, `make run`): the whole nightly loop on a fresh machine, in a few minutes.

It is a short replay (`shelfcast.loop.replay`) on the stack the settings name:

1. start the local stack (SeaweedFS S3, Prefect server, MLflow server) or reuse the one already running;
2. make history with the synthetic generator (or read `--data` in Kaggle format);
3. deliver the history before the last days as one file and run the ingest flow;
4. run one nightly retrain on a quick configuration and hand its candidates to promotion (canary);
5. replay the last days one morning at a time, on the loop's own clock: the day's file delivered and ingested
   (with the live checks on the model stores serve), stable advanced once canary has served a day, and every store
   syncing the promoted model with its own identity and forecasting the day from its recent sales, scored
   against what it then sold;
6. print a summary and where to look (Prefect UI, MLflow UI, S3 keys), and write it as JSON.
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
    from shelfcast.flows.serve import use_api
    from shelfcast.loop.replay import Replay, ReplayOptions
    from shelfcast.stack.local import LocalStack, ui_addresses

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if options.start_stack:
        step = time.perf_counter()
        LocalStack(settings).up(on_step=lambda message: say(f"stack: {message}"))
        timings["stack_seconds"] = time.perf_counter() - step

    history = make_history(options)
    days = sorted(history["date"].unique())
    if len(days) <= options.deliver_days + 60:
        raise ValueError(f"history has {len(days)} days; it needs more than the {options.deliver_days} delivered daily "
                         "and two months before them")
    end = pd.Timestamp(days[-1]).date()
    replay_options = ReplayOptions(
        data=options.data, stores=options.stores, items=options.items, start=end - timedelta(days=options.deliver_days - 1),
        end=end, policy="weekly", config=options.config, seed=options.seed,
        history_days=options.history_days - options.deliver_days,
    )
    say(f"history: {len(history):,} rows, {history.groupby(['store', 'item']).ngroups} series, "
        f"{pd.Timestamp(days[0]):%Y-%m-%d}..{end}; the last {options.deliver_days} days are replayed one morning "
        "at a time")
    folder = Path(settings.home) / "main-job" / clock.now().strftime("%Y%m%dT%H%M%S")
    specs = list(options.config.model_config_obj().variants)
    steps = progress.add_task("retrain", total=len(parent_sizes(specs)) + len(specs)) if progress else None

    def advance(kind: str, name: str) -> None:
        if progress:
            progress.update(steps, advance=1, description=f"retrain: {kind} {name} done")

    def served(record: dict) -> None:
        store = record["stores"][0]
        score = record["score"]["mape_pct"]
        say(f"{record['day']}: ingested {record['ingest']['rows_accepted']} rows; {len(record['stores'])} stores served "
            f"v{store['serving']}" + (f", MAPE {score:.1f} % against the day's sales" if score is not None else ""))

    with use_api(settings.prefect_api_url) as on_server, watch(advance):
        if not on_server:
            say("SHELFCAST_PREFECT_API_URL is empty: flows run on a temporary local API that keeps nothing")
        replay = Replay(folder, replay_options, settings, say=say, on_day=served, own_stack=False,
                        run_tags=("shelfcast", "main-job"))
        if not options.promote:
            raise ValueError("the main job replays what stores are served; run `shelfcast retrain` to train without "
                             "promoting")
        doc = replay.run()
    timings["ingest_seconds"] = replay.timings["ingest"]
    timings["retrain_seconds"] = replay.timings["retrain"]
    timings["store_seconds"] = replay.timings["stores"]
    records = replay.done_days()
    first_store = records[0]["stores"][0]
    store = {**first_store, "day": records[0]["day"], "folder": str(folder / "stores" / f"store-{first_store['store']}"),
             "forecasts": [{"item": int(item), "date": records[0]["day"], "sales": round(value, 1)}
                           for item, value in sorted(first_store["forecasts"].items(), key=lambda kv: int(kv[0]))]}
    alerts = [{"id": a.id, "rule": a.rule, "severity": a.severity, "scope": a.scope_label, "status": a.status,
               "message": a.message} for a in wiring.alert_log(settings).list()]
    timings["total_seconds"] = time.perf_counter() - started
    policy = doc["policy"]
    summary = {
        "night": replay.first_night,
        "ingest": [{k: r[k] for k in ("name", "action", "rows_read", "rows_accepted", "rows_duplicate",
                                        "rows_rejected", "error")} for r in replay.ingest_reports],
        "served": {"days": policy["days"], "mape_pct": policy["served_mape_pct"],
                   "seasonal_naive_mape_pct": policy["seasonal_naive_mape_pct"],
                   "noise_floor_pct": doc["noise_floor_pct"],
                   "daily": [{"day": d["day"], "mape_pct": d["mape_pct"], "n": d["n"]} for d in policy["daily"]],
                   "model_bytes_to_stores": policy["model_bytes_to_stores"], "stores": len(records[0]["stores"])},
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


S3_PREFIXES = ("landing/", "archive/", "tables/sales/", "ledger/files/", "quarantine/", "mlflow/", "models/",
               "channels/")


def s3_key_counts(settings: Settings) -> dict[str, int]:
    """How many objects each prefix of the bucket holds (what to look at, and proof that it is there)."""
    objects = wiring.bucket(settings)
    return {prefix: sum(1 for _ in objects.list(prefix)) for prefix in S3_PREFIXES}
