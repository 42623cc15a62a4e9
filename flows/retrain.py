"""The nightly retrain flow: sales store -> windows -> parents -> variants (fanned out) -> MLflow -> candidates.

    load window -> windows -> start night (MLflow parent run) -> champion on tonight's holdout
        -> [fan-out subflow, task runner from the configuration]
              train one parent per size (mapped) -> build every variant from its parent (mapped)
        -> log each variant (nested run + registered version) -> plot -> tag candidates -> finish night

Candidates are tagged only after every variant is logged, so a night that dies half way leaves no candidate.
Logging retries on I/O errors; training never retries. With `promote=True` the candidates go on to the gate
and promotion (`flows/promote.py`).
"""

from __future__ import annotations

import functools
import json
import pickle
import shutil
import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from shelfcast.config import load_settings
from shelfcast.data.sales import SalesStore
from shelfcast.data.ingest import store_objects
from shelfcast.pipeline import nightly
from shelfcast.pipeline.config import RetrainConfig
from shelfcast.flows.runners import make_task_runner
from shelfcast.pipeline.transient import retry_on_io
from shelfcast.tracking import Tracker

IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
COMPUTE = dict(cache_policy=NO_CACHE)  # training is deterministic work: a failure is a failure, never retried


@functools.lru_cache(maxsize=4)
def _bundle(path: str) -> dict:
    """The night's inputs (windows, training config, seed, warm weights), read once per worker process."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


@task(name="load-training-window", **IO_RETRIES)
def load_data(store: SalesStore, config: RetrainConfig) -> nightly.TrainingData:
    return nightly.load_training_data(store, config)


@task(name="make-windows", **COMPUTE)
def make_windows(data: nightly.TrainingData, input_spec, holdout_days: int):
    return nightly.night_windows(data, input_spec, holdout_days)


@task(name="start-night", **IO_RETRIES)
def start_night(tracker: Tracker, night: str, params: dict, tags: dict) -> str:
    return tracker.start_night(night, params, tags)


@task(name="score-champion", **IO_RETRIES)
def score_champion(tracker: Tracker, windows, workdir: Path) -> nightly.ChampionContext:
    return nightly.champion_context(tracker, windows, workdir)


@task(name="warm-start-weights", **IO_RETRIES)
def warm_weights(tracker: Tracker, model: str, sizes: list[int], champion, workdir: Path):
    return nightly.warm_start_weights(tracker, model, sizes, champion, workdir)


@task(name="train-parent", task_run_name="train LSTM-{units}", **COMPUTE)
def train_parent(bundle: str, units: int) -> nightly.ParentWeights:
    inputs = _bundle(bundle)
    return nightly.train_parent(inputs["windows"], units, inputs["seed"], inputs["train"],
                                inputs["warm"].get(units), inputs["warm_epochs"])


@task(name="build-variant", task_run_name="build {spec.name}", **COMPUTE)
def build_variant(bundle: str, spec, parent: nightly.ParentWeights):
    from shelfcast.compress.variants import build_variant as build

    inputs = _bundle(bundle)
    return build(spec, parent.rebuild(), inputs["windows"], inputs["train"], inputs["seed"], inputs["workdir"])


@flow(name="retrain-fan-out")
def fan_out(bundle: str, specs: list, sizes: list[int]) -> list:
    """One parent per size, then every variant from its parent, as mapped tasks on the configured runner."""
    parents = dict(zip(sizes, train_parent.map(unmapped(bundle), sizes)))
    variants = build_variant.map(unmapped(bundle), specs, [parents[spec.units] for spec in specs])
    return [future.result() for future in variants]


@task(name="log-variant", task_run_name="log {result.name}", **IO_RETRIES)
def log_variant(tracker: Tracker, parent_run_id: str, night: str, result, params: dict, extra: dict):
    return tracker.log_variant(parent_run_id, night, result, params, extra)


@task(name="log-night", **IO_RETRIES)
def log_night(tracker: Tracker, parent_run_id: str, metrics: dict, plot: Path, summary: str) -> None:
    tracker.log_metrics(parent_run_id, metrics)
    tracker.log_artifact(parent_run_id, plot, "plots")
    tracker.log_text(parent_run_id, summary, "summary.md")


@task(name="tag-candidates", **IO_RETRIES)
def tag_candidates(tracker: Tracker, logged: list, night: str, parent_run_id: str):
    candidates = tracker.mark_candidates(logged, night)
    tracker.finish_night(parent_run_id, "complete")
    return candidates


def check_candidates(candidates, windows, results, settings, tracker) -> dict:
    """The alert rules on tonight's candidates (flows/monitor.py); critical alerts block them at the gate."""
    from shelfcast.monitor.evaluation import variant_frames
    from shelfcast.flows.monitor import check_after_retrain

    return check_after_retrain(candidates, frames=variant_frames(windows, results), settings=settings,
                               experiment_id=tracker.experiment_id())


@flow(name="retrain")
def retrain_flow(config: RetrainConfig = RetrainConfig(), night: str | None = None, promote: bool = False) -> dict:
    """Retrain every configured variant on the rolling window and register each as a candidate."""
    started = time.perf_counter()
    logger = get_run_logger()
    settings = load_settings()
    tracker = Tracker.from_settings(settings)
    tracker.check()  # fail loudly before any training when MLflow is down
    store = SalesStore(store_objects(settings))
    model = config.model_config_obj()
    specs, sizes = list(model.variants), nightly.parent_sizes(model.variants)

    data = load_data(store, config)
    night = night or data.end.isoformat()
    windows = make_windows(data, model.input_spec, config.holdout_days)
    run_id = str(flow_run.get_id() or uuid.uuid4())
    workdir = Path(settings.home).resolve() / "nights" / f"{night}-{run_id[:8]}"
    data_info = {"rows": data.rows, "series": data.series, "start": str(data.start), "end": str(data.end),
                 "holdout_days": config.holdout_days, "train_windows": windows.n_train, "test_windows": windows.n_test}
    input_spec = json.dumps(windows.spec.to_dict())  # JSON, so promotion and warm start can read it back
    params = {"model": model.name, "input_spec": input_spec, **model.train.to_dict(),
              **config.model_dump(exclude={"variants"}), "variants": [s.name for s in specs], **data_info}
    parent_run_id = start_night(tracker, night, params, {"prefect_flow_run_id": run_id})
    logger.info("night %s: MLflow run %s, %d variants from %d parent size(s), %s", night, parent_run_id,
                len(specs), len(sizes), data_info)
    try:
        naive = nightly.naive_mape(windows)
        champion = score_champion(tracker, windows, workdir)
        warm, warm_note = (warm_weights(tracker, model.name, sizes, champion, workdir) if config.warm_start
                           else ({}, "cold start"))
        bundle = workdir / "inputs.pkl"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_bytes(pickle.dumps({"windows": windows, "train": model.train, "seed": config.seed,
                                         "warm": warm, "warm_epochs": config.warm_epochs, "workdir": workdir}))
        results = fan_out.with_options(task_runner=make_task_runner(config, workdir))(str(bundle), specs, sizes)

        extra = nightly.context_metrics(results, naive, champion)
        variant_params = {"model": model.name, "input_spec": input_spec, "night": night,
                          "warm_start": bool(warm), **model.train.to_dict(), **data_info}
        logged = [log_variant(tracker, parent_run_id, night, r, variant_params, extra[r.name]) for r in results]
        report = nightly.NightReport(
            night, parent_run_id, data_info,
            variants=[{"name": v.name, "status": v.status, "run_id": v.run_id, "version": v.version,
                       "metrics": v.metrics, "reason": v.reason} for v in logged],
            naive_mape_pct=naive, champion=champion.__dict__, warm_note=warm_note,
        )
        plot = nightly.plot_mape_vs_bytes(results, workdir / "mape_vs_bytes.png", naive, champion,
                                          f"night {night}: MAPE against deployable size")
        ok = [r for r in results if r.status == "ok"]
        night_metrics = {"naive_mape_pct": naive, "variants_ok": len(ok), "variants_failed": len(results) - len(ok),
                         "best_mape_pct": min((r.mape_pct for r in ok), default=float("nan")),
                         "champion_mape_pct": champion.mape_pct, "seconds": time.perf_counter() - started}
        log_night(tracker, parent_run_id, night_metrics, plot, nightly.night_markdown(report, tracker.tracking_uri))
        candidates = tag_candidates(tracker, logged, night, parent_run_id)
    except BaseException as exc:
        tracker.fail_night(parent_run_id, f"{type(exc).__name__}: {exc}")
        raise
    report.candidates = [c.to_dict() for c in candidates]
    alerts = check_candidates(candidates, windows, results, settings, tracker)  # before the gate reads the alert log
    logger.info("alerts on tonight's candidates: %s", "; ".join(alerts["findings"]) or "none")
    report.seconds = time.perf_counter() - started
    create_markdown_artifact(nightly.night_markdown(report, tracker.tracking_uri), key="retrain-summary",
                             description=f"night {night}: variants, sizes, MAPE and candidates")
    shutil.rmtree(workdir, ignore_errors=True)  # everything worth keeping is in MLflow now
    if promote:
        from shelfcast.flows.promote import promote_candidates

        report.promotion = promote_candidates(candidates, night=night, settings=settings)
    logger.info("night %s done in %.0fs: %d candidate(s)", night, report.seconds, len(candidates))
    return report.to_dict()
