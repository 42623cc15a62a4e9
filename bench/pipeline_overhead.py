"""What the orchestration costs and what it buys: the nightly retrain flow against the same calls in a plain loop.

One run, same data and configuration for every arm (a synthetic panel ingested into a real SeaweedFS sales
store, MLflow on SQLite, the Prefect API from `prefect_test_harness`):

1. plain loop   `shelfcast.pipeline.night.run_night`, the sequence the flow runs, with plain function steps
                instead of Prefect tasks (MLflow logging and the alert rules on the candidates included);
2. flow         `retrain_flow` with the default task runner (one thread). Loop and flow run twice, alternating
                (loop, flow, loop, flow), so neither gains from going second: overhead_ratio = best flow / best loop;
3. flow, Dask   the same flow fanning out on a local Dask cluster of 2 worker processes:
                fanout_speedup = flow / flow on Dask (cluster start-up included, it is part of the cost);
4. next night   7 more days ingested, then a cold retrain and a warm start from the champion (night 2's flow
                with `warm_start=True`): warm_seconds / cold_seconds (flow wall time) and the MAPE of each.

    .venv/bin/python bench/pipeline_overhead.py --out bench/results/pipeline.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["lstm16", "lstm16+int8", "lstm8", "lstm8+int8"]
DEPLOYABLE = "LSTM-16+INT8"


def plain_loop(settings, config, night: str) -> dict:
    """The retrain flow's work without Prefect: `run_night`, the sequence the flow runs, with plain steps (the
    alert rules on the candidates included)."""
    from shelfcast import wiring
    from shelfcast.flows.retrain import check_candidates
    from shelfcast.pipeline.night import NightSteps, run_night

    started = time.perf_counter()
    report, _ = run_night(config, wiring.sales(settings), wiring.tracker(settings), settings,
                          NightSteps(check_candidates=check_candidates), night=night)
    return {"seconds": time.perf_counter() - started,
            "mape_pct": {v["name"]: v["metrics"].get("mape_pct") for v in report.variants}}


def timed_flow(config, night: str) -> dict:
    from shelfcast.flows.retrain import retrain_flow

    started = time.perf_counter()
    report = retrain_flow(config, night=night)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "report": report,
            "mape_pct": {v["name"]: v["metrics"].get("mape_pct") for v in report["variants"]},
            "versions": {v["name"]: v["version"] for v in report["variants"]}}


def warm_up_tensorflow() -> None:
    """Import TensorFlow and run one tiny fit, so neither timed arm pays the first-use cost."""
    from shelfcast.data.synthetic import generate_sales
    from shelfcast.data.windows import SplitSpec, make_windows
    from shelfcast.contract.features import InputSpec
    from shelfcast.model.lstm import TrainConfig, train_lstm

    frame = generate_sales(stores=1, items=1, start="2017-01-01", end="2017-04-30", seed=0)
    train_lstm(make_windows(frame, InputSpec(), SplitSpec(0.2, 0.1)), 4, 0, TrainConfig(epochs=1))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    parser.add_argument("--stores", type=int, default=4)
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--new-days", type=int, default=7)
    args = parser.parse_args(argv)

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    from prefect.testing.utilities import prefect_test_harness
    from rich.console import Console
    from rich.table import Table

    from shelfcast import wiring

    from shelfcast.bench.readme import write_result
    from shelfcast.config import Settings
    from shelfcast.data.sales import SalesTable
    from shelfcast.data.synthetic import generate_sales
    from shelfcast.data.ingest import IngestOptions, deliver_days, deliver_range, ingest_landing, open_landing
    from shelfcast.pipeline.config import RetrainConfig
    from shelfcast.stack.local import ensure_bucket, identities
    from shelfcast.stack.process import free_port
    from shelfcast.stack.seaweedfs import start_seaweedfs
    from shelfcast.tracking import Tracker

    console = Console()
    wall = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="shelfcast-bench-pipeline-"))
    port = free_port()
    os.environ.update({
        "SHELFCAST_HOME": str(tmp / "home"), "SHELFCAST_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "SHELFCAST_BUCKET": "bench", "SHELFCAST_MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
    })
    settings = Settings()
    s3 = start_seaweedfs(tmp / "weed", identities(settings), port)
    try:
        ensure_bucket(settings)
        # The holdout (the last 28 days before the new days) falls in October: a month the training year has seen.
        sales = generate_sales(stores=args.stores, items=args.items, start="2016-07-01", end="2017-11-07", seed=11)
        days = sorted(sales["date"].unique())
        objects = wiring.bucket(settings)
        landing = open_landing("landing/", objects)
        store = SalesTable(objects)
        deliver_range(landing, sales, days[0], days[-args.new_days - 1], kind="history")
        ingest_landing(store, landing, IngestOptions())
        config = RetrainConfig.load("quick", variants=VARIANTS)
        console.print(f"panel {args.stores} x {args.items}, {len(days)} days; variants {VARIANTS}; warming up TensorFlow")
        warm_up_tensorflow()

        with prefect_test_harness(server_startup_timeout=120):
            loops, flows = [], []
            for attempt in (1, 2):
                console.print(f"1/5 plain loop ({attempt}/2)")
                loops.append(plain_loop(settings, config, f"loop-{attempt}"))
                console.print(f"    {loops[-1]['seconds']:.1f}s\n2/5 flow, thread runner ({attempt}/2)")
                flows.append(timed_flow(config, f"flow-{attempt}"))
                console.print(f"    {flows[-1]['seconds']:.1f}s")
            loop = min(loops, key=lambda run: run["seconds"])
            flow = min(flows, key=lambda run: run["seconds"])
            console.print("3/5 flow, Dask 2 workers")
            dask = timed_flow(config.model_copy(update={"task_runner": "dask", "workers": 2}), "flow-dask")
            console.print(f"    {dask['seconds']:.1f}s")

            tracker = Tracker.from_settings(settings)
            tracker.client.set_registered_model_alias(settings.registered_model, "champion", flow["versions"][DEPLOYABLE])
            deliver_days(landing, sales, days[-args.new_days:])
            ingest_landing(store, landing, IngestOptions())
            console.print(f"4/5 next night ({args.new_days} new days), cold")
            cold = timed_flow(config, "next-cold")
            console.print(f"    {cold['seconds']:.1f}s\n5/5 next night, warm start from the champion")
            warm = timed_flow(config.model_copy(update={"warm_start": True}), "next-warm")
            console.print(f"    {warm['seconds']:.1f}s")
    finally:
        s3.stop()

    def train_seconds(run):
        return round(sum({v["metrics"].get("train_seconds", 0.0) for v in run["report"]["variants"]}), 2)

    doc = {
        "overhead_ratio": round(flow["seconds"] / loop["seconds"], 3),
        "fanout_speedup": round(flow["seconds"] / dask["seconds"], 3),
        "warm_seconds": round(warm["seconds"], 2),
        "cold_seconds": round(cold["seconds"], 2),
        "warm_mape": round(warm["mape_pct"][DEPLOYABLE], 3),
        "cold_mape": round(cold["mape_pct"][DEPLOYABLE], 3),
        "mape_variant": DEPLOYABLE,
        "loop_seconds": round(loop["seconds"], 2),
        "flow_seconds": round(flow["seconds"], 2),
        "loop_seconds_runs": [round(run["seconds"], 2) for run in loops],
        "flow_seconds_runs": [round(run["seconds"], 2) for run in flows],
        "flow_dask2_seconds": round(dask["seconds"], 2),
        "same_results_loop_vs_flow": all(abs(a["mape_pct"][k] - b["mape_pct"][k]) < 1e-6
                                         for a in loops for b in flows for k in a["mape_pct"]),
        "warm_train_seconds": train_seconds(warm),
        "cold_train_seconds": train_seconds(cold),
        "warm_note": warm["report"]["warm_note"],
        "mape_pct": {"loop": loop["mape_pct"], "flow": flow["mape_pct"], "flow_dask2": dask["mape_pct"],
                     "next_cold": cold["mape_pct"], "next_warm": warm["mape_pct"]},
        "naive_mape_pct_next_night": cold["report"]["naive_mape_pct"],
        "config": {**config.model_dump(), "stores": args.stores, "items": args.items, "days": len(days),
                   "new_days": args.new_days},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "note": "shared 2-core machine; other work may have run at the same time"},
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "command": "python bench/pipeline_overhead.py --out bench/results/pipeline.json",
    }
    write_result(Path(args.out), doc)

    table = Table(title="nightly retrain: orchestration overhead, fan-out, warm start")
    for column in ("arm", "seconds", f"{DEPLOYABLE} MAPE %", "note"):
        table.add_column(column)
    table.add_row("plain loop", f"{loop['seconds']:.1f}", f"{loop['mape_pct'][DEPLOYABLE]:.2f}", "run_night with plain steps, no Prefect")
    table.add_row("flow (thread)", f"{flow['seconds']:.1f}", f"{flow['mape_pct'][DEPLOYABLE]:.2f}",
                  f"overhead ratio {doc['overhead_ratio']:.3f} (target <= 1.10)")
    table.add_row("flow (Dask x2)", f"{dask['seconds']:.1f}", f"{dask['mape_pct'][DEPLOYABLE]:.2f}",
                  f"fan-out speed-up {doc['fanout_speedup']:.2f}x")
    table.add_row("next night, cold", f"{cold['seconds']:.1f}", f"{cold['mape_pct'][DEPLOYABLE]:.2f}",
                  f"parents trained {doc['cold_train_seconds']:.1f}s")
    table.add_row("next night, warm", f"{warm['seconds']:.1f}", f"{warm['mape_pct'][DEPLOYABLE]:.2f}",
                  f"parents fine-tuned {doc['warm_train_seconds']:.1f}s")
    console.print(table)
    console.print(f"wrote {args.out} ({doc['wall_seconds']:.0f}s)")
    return doc


if __name__ == "__main__":
    main()
