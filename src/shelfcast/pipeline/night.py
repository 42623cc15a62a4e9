"""One nightly retrain from start to finish, written once.

    load window -> windows -> start night (MLflow parent run) -> champion on tonight's holdout
        -> fan out: one parent per size, then every variant from its parent
        -> log each variant (nested run + registered version) -> plot -> tag candidates -> finish night
        -> alert rules on the candidates

`run_night` is that sequence. How each step runs belongs to the caller, through `NightSteps`: the retrain flow
(`flows/retrain.py`) passes Prefect tasks (I/O retries, the fan-out on its task runner), the pipeline benchmark
the plain functions below, so the benchmark measures the flow against exactly the same work.

Candidates are tagged only after every variant is logged, so a night that dies half way leaves no candidate;
a night that raises is marked failed in MLflow. The night's work folder (its variants' files and plot) is
removed once everything worth keeping is in MLflow, or when it fails. The inputs the fan-out reads wait in the
bucket (`nights/`), so task-runner workers on other hosts need the bucket alone; the variants' files come back
inside their results. A night killed outright (SIGKILL) is
found by the next one through its lease (`shelfcast.pipeline.leases`): marked crashed, its folder removed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shelfcast.pipeline import leases, nightly
from shelfcast.pipeline.config import RetrainConfig


_listeners: list[Callable[[str, str], None]] = []


@contextlib.contextmanager
def watch(listener: Callable[[str, str], None]):
    """Within the block, `listener(kind, name)` hears each parent trained and each variant built in this
    process (`kind` is `parent` or `variant`): the progress a terminal shows during the night."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _tell(kind: str, name: str) -> None:
    for listener in list(_listeners):
        listener(kind, name)


def bundle_key(workdir: Path) -> str:
    """Where a night's inputs wait in the bucket while it fans out (`nights/` is the trainer's to delete)."""
    return f"nights/{workdir.name}/inputs.pkl"


@functools.lru_cache(maxsize=4)
def read_bundle(key: str) -> dict:
    """The night's inputs (windows, training config, seed, warm weights), fetched from the bucket once per worker
    process with the trainer identity of its `SHELFCAST_*` settings: a worker on another host needs the bucket,
    not the night's disk."""
    from shelfcast.config import load_settings
    from shelfcast.contract.objects import ObjectStore

    return pickle.loads(ObjectStore.from_settings(load_settings()).get(key).body)


def write_bundle(objects, key: str, windows, model, config: RetrainConfig, warm: dict) -> str:
    """Everything a worker needs to train a parent or build a variant, in one object of the bucket: task
    arguments stay small and each worker process reads it once. Returns its key, the tasks' argument."""
    objects.put(key, pickle.dumps({"windows": windows, "train": model.train, "seed": config.seed, "warm": warm,
                                   "warm_epochs": config.warm_epochs}))
    return key


def train_from_bundle(bundle: str, units: int) -> nightly.ParentWeights:
    inputs = read_bundle(bundle)
    parent = nightly.train_parent(inputs["windows"], units, inputs["seed"], inputs["train"],
                                  inputs["warm"].get(units), inputs["warm_epochs"])
    _tell("parent", f"LSTM-{units}")
    return parent


def build_from_bundle(bundle: str, spec, parent: nightly.ParentWeights):
    """One variant, built in a scratch folder of the worker; its files come back inside the result
    (`VariantFiles`), so nothing of it stays on the worker's disk."""
    from shelfcast.compress import variants

    inputs = read_bundle(bundle)
    with tempfile.TemporaryDirectory(prefix="shelfcast-variant-") as scratch:
        result = variants.build_variant(spec, parent.rebuild(), inputs["windows"], inputs["train"], inputs["seed"],
                                        scratch)
        packed = VariantFiles.pack(result)
    _tell("variant", spec.name)
    return packed


@dataclass
class VariantFiles:
    """A built variant with its `.tflite` and `.keras` files as bytes: what travels back from a worker process
    on any host. `unpack(workdir)` writes them into the night's folder and returns the `VariantResult`."""

    result: object
    files: dict[str, bytes]

    @classmethod
    def pack(cls, result) -> "VariantFiles":
        files = {}
        for attr in ("tflite_path", "keras_path"):
            path = getattr(result, attr)
            if path is not None:
                files[attr] = Path(path).read_bytes()
                setattr(result, attr, Path(path).name)
        return cls(result, files)

    def unpack(self, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        for attr, body in self.files.items():
            path = workdir / getattr(self.result, attr)
            path.write_bytes(body)
            setattr(self.result, attr, path)
        return self.result


def fan_out(bundle: str, specs: list, sizes: list[int], workdir: Path) -> list[VariantFiles]:
    """Parents, then variants, one after another in this process."""
    parents = {units: train_from_bundle(bundle, units) for units in sizes}
    return [build_from_bundle(bundle, spec, parents[spec.units]) for spec in specs]


def start_night(tracker, night: str, params: dict, tags: dict) -> str:
    return tracker.start_night(night, params, tags)


def log_variant(tracker, parent_run_id: str, night: str, result, params: dict, extra: dict):
    return tracker.log_variant(parent_run_id, night, result, params, extra)


def log_night(tracker, parent_run_id: str, metrics: dict, plot: Path, summary: str) -> None:
    tracker.log_metrics(parent_run_id, metrics)
    tracker.log_artifact(parent_run_id, plot, "plots")
    tracker.log_text(parent_run_id, summary, "summary.md")


def tag_candidates(tracker, logged: list, night: str, parent_run_id: str):
    candidates = tracker.mark_candidates(logged, night)
    tracker.finish_night(parent_run_id, "complete")
    return candidates


@dataclass
class NightSteps:
    """How each step of the night runs; the defaults are the plain functions. `check_candidates(candidates,
    windows, results, settings, tracker) -> dict` runs the alert rules; `publish(markdown, night)` shows the
    night's summary (a Prefect artifact in the flow)."""

    maintain_sales: Callable = nightly.maintain_sales
    load_data: Callable = nightly.load_training_data
    make_windows: Callable = nightly.night_windows
    start_night: Callable = start_night
    score_champion: Callable = nightly.champion_context
    warm_weights: Callable = nightly.warm_start_weights
    fan_out: Callable = fan_out
    log_variant: Callable = log_variant
    log_night: Callable = log_night
    tag_candidates: Callable = tag_candidates
    check_candidates: Callable | None = None
    crashed: Callable = lambda facts: None  # an earlier night found killed (its lease): the flow marks its run
    publish: Callable = lambda markdown, night: None


def run_night(config: RetrainConfig, sales, tracker, settings, steps: NightSteps = NightSteps(), *,
              night: str | None = None, run_id: str | None = None, log: Callable = lambda *args: None
              ) -> tuple[nightly.NightReport, list]:
    """Retrain every configured variant on the rolling window of `sales` and register each as a candidate;
    returns the night's report and its candidates."""
    started = time.perf_counter()
    tracker.check()  # fail loudly before any training when MLflow is down
    model = config.model_config_obj()
    specs, sizes = list(model.variants), nightly.parent_sizes(model.variants)

    log("sales table upkeep: %s", steps.maintain_sales(sales, config.sales_retention_days))
    data = steps.load_data(sales, config)
    night = night or data.end.isoformat()
    windows = steps.make_windows(data, model.input_spec, config.holdout_days)
    if config.drill == "int8-miscalibrated":
        windows.calibration_scale = 0.02
    run_id = run_id or str(uuid.uuid4())
    workdir = Path(settings.home).resolve() / "nights" / f"{night}-{run_id[:8]}"
    data_info = {"rows": data.rows, "series": data.series, "start": str(data.start), "end": str(data.end),
                 "sales_table_version": data.table_version, "holdout_days": config.holdout_days, "train_windows": windows.n_train, "test_windows": windows.n_test,
                 "series_too_short": len(windows.skipped_series)}
    for facts in nightly.clean_up_crashed_nights(Path(settings.home).resolve(), tracker, sales.objects):
        log("night %s (run %s) had crashed: marked failed, work folder removed", facts.get("night"), facts["run_id"])
        steps.crashed(facts)
    inputs_key = bundle_key(workdir)
    lease = leases.hold(Path(settings.home).resolve(), "night", run_id, night=night, work_folder=str(workdir),
                        inputs_key=inputs_key, tracking_uri=tracker.tracking_uri)
    input_spec = json.dumps(windows.spec.to_dict())  # JSON, so promotion and warm start can read it back
    params = {"model": model.name, "input_spec": input_spec, **model.train.to_dict(),
              **config.model_dump(exclude={"variants"}), "variants": [s.name for s in specs], **data_info}
    parent_run_id = steps.start_night(tracker, night, params, {"prefect_flow_run_id": run_id})
    lease.update(mlflow_run_id=parent_run_id)
    log("night %s: MLflow run %s, %d variants from %d parent size(s), %s", night, parent_run_id, len(specs),
        len(sizes), data_info)
    try:
        naive = nightly.naive_mape(windows)
        champion = steps.score_champion(tracker, windows, workdir)
        warm, warm_note = (steps.warm_weights(tracker, model.name, sizes, champion, workdir, windows.spec)
                           if config.warm_start else ({}, "cold start"))
        bundle = write_bundle(sales.objects, inputs_key, windows, model, config, warm)
        results = [packed.unpack(workdir) for packed in steps.fan_out(bundle, specs, sizes, workdir)]
        sales.objects.delete(inputs_key)

        extra = nightly.context_metrics(results, naive, champion, windows.y_test)
        variant_params = {"model": model.name, "input_spec": input_spec, "night": night,
                          "warm_start": bool(warm), **model.train.to_dict(), **data_info}
        logged = [steps.log_variant(tracker, parent_run_id, night, r, variant_params, extra[r.name]) for r in results]
        report = nightly.NightReport(
            night, parent_run_id, data_info,
            variants=[{"name": v.name, "status": v.status, "run_id": v.run_id, "version": v.version,
                       "metrics": v.metrics, "reason": v.reason} for v in logged],
            naive_mape_pct=naive, champion=champion.summary(), warm_note=warm_note,
        )
        plot = nightly.plot_mape_vs_bytes(results, workdir / "mape_vs_bytes.png", naive, champion,
                                          f"night {night}: MAPE against deployable size")
        ok = [r for r in results if r.status == "ok"]
        night_metrics = {"naive_mape_pct": naive, "variants_ok": len(ok), "variants_failed": len(results) - len(ok),
                         "best_mape_pct": min((r.mape_pct for r in ok), default=float("nan")),
                         "champion_mape_pct": champion.mape_pct, "seconds": time.perf_counter() - started}
        steps.log_night(tracker, parent_run_id, night_metrics, plot, nightly.night_markdown(report, tracker.tracking_uri))
        candidates = steps.tag_candidates(tracker, logged, night, parent_run_id)
    except BaseException as exc:
        recorded = tracker.fail_night(parent_run_id, f"{type(exc).__name__}: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(Exception):  # the bucket may be what failed; the next night retries the delete
            sales.objects.delete(inputs_key)
        lease.release() if recorded else lease.abandon()  # unrecorded: the next night marks it crashed
        raise
    report.candidates = [c.to_dict() for c in candidates]
    if steps.check_candidates is not None:  # before the promotion gate reads the alert log
        alerts = steps.check_candidates(candidates, windows, results, settings, tracker)
        log("alerts on tonight's candidates: %s", "; ".join(alerts["findings"]) or "none")
    report.seconds = time.perf_counter() - started
    steps.publish(nightly.night_markdown(report, tracker.tracking_uri), night)
    shutil.rmtree(workdir, ignore_errors=True)  # everything worth keeping is in MLflow now
    lease.release()
    return report, candidates
