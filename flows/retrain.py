"""The nightly retrain flow: `shelfcast.pipeline.night.run_night` with each step a Prefect task.

    load window -> windows -> start night (MLflow parent run) -> champion on tonight's holdout
        -> [fan-out subflow, task runner from the configuration]
              train one parent per size (mapped) -> build every variant from its parent (mapped)
        -> log each variant (nested run + registered version) -> plot -> tag candidates -> finish night
        -> alert rules on the candidates -> (with `promote=True`) the gate and promotion (`flows/promote.py`)

Logging retries on I/O errors; training never retries.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from shelfcast import wiring
from shelfcast.config import load_settings
from shelfcast.contract import clock
from shelfcast.flows.crashed import night_crashed
from shelfcast.flows.runners import make_task_runner
from shelfcast.pipeline import night as steps
from shelfcast.pipeline import nightly
from shelfcast.pipeline.config import RetrainConfig
from shelfcast.pipeline.transient import retry_on_io

IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
COMPUTE = dict(cache_policy=NO_CACHE)  # training is deterministic work: a failure is a failure, never retried

maintain_sales = task(nightly.maintain_sales, name="maintain-sales-table", **IO_RETRIES)
load_data = task(nightly.load_training_data, name="load-training-window", **IO_RETRIES)
make_windows = task(nightly.night_windows, name="make-windows", **COMPUTE)
start_night = task(steps.start_night, name="start-night", **IO_RETRIES)
score_champion = task(nightly.champion_context, name="score-champion", **IO_RETRIES)
warm_weights = task(nightly.warm_start_weights, name="warm-start-weights", **IO_RETRIES)
log_variant = task(steps.log_variant, name="log-variant", task_run_name="log {result.name}", **IO_RETRIES)
log_night = task(steps.log_night, name="log-night", **IO_RETRIES)
tag_candidates = task(steps.tag_candidates, name="tag-candidates", **IO_RETRIES)
train_parent = task(steps.train_from_bundle, name="train-parent", task_run_name="train LSTM-{units}", **COMPUTE)
build_variant = task(steps.build_from_bundle, name="build-variant", task_run_name="build {spec.name}", **COMPUTE)


@flow(name="retrain-fan-out", flow_run_name="fan-out-{sizes}")
def fan_out(bundle: str, specs: list, sizes: list[int]) -> list:
    """One parent per size, then every variant from its parent, as mapped tasks on the configured runner."""
    parents = dict(zip(sizes, train_parent.map(unmapped(bundle), sizes)))
    variants = build_variant.map(unmapped(bundle), specs, [parents[spec.units] for spec in specs])
    for parent in parents.values():  # a parent that failed raises its own error, not its variants' "not run"
        parent.result()
    return [future.result() for future in variants]


def check_candidates(candidates, windows, results, settings, tracker) -> dict:
    """The alert rules on tonight's candidates (flows/monitor.py); alerts of the blocking rules block them at the gate."""
    from shelfcast.flows.monitor import check_after_retrain
    from shelfcast.monitor.evaluation import variant_frames

    return check_after_retrain(candidates, frames=variant_frames(windows, results), settings=settings,
                               experiment_id=tracker.experiment_id())


def publish_summary(markdown: str, night: str) -> None:
    create_markdown_artifact(markdown, key="retrain-summary", description=f"night {night}: variants, sizes, MAPE and candidates")


def night_run_name() -> str:
    """`retrain-2017-03-02` (the day it runs on the loop's clock), or `retrain-<night>` for a night asked for."""
    return f"retrain-{flow_run.parameters.get('night') or clock.today().isoformat()}"


@flow(name="retrain", flow_run_name=night_run_name)
def retrain_flow(config: RetrainConfig = RetrainConfig(), night: str | None = None, promote: bool = False) -> dict:
    """Retrain every configured variant on the rolling window and register each as a candidate."""
    logger = get_run_logger()
    settings = load_settings()
    run_steps = steps.NightSteps(
        maintain_sales=maintain_sales, load_data=load_data, make_windows=make_windows, start_night=start_night,
        score_champion=score_champion,
        warm_weights=warm_weights, log_variant=log_variant, log_night=log_night, tag_candidates=tag_candidates,
        fan_out=lambda bundle, specs, sizes, workdir: fan_out.with_options(
            task_runner=make_task_runner(config, workdir))(bundle, specs, sizes),
        check_candidates=check_candidates, publish=publish_summary, crashed=night_crashed,
    )
    report, candidates = steps.run_night(config, wiring.sales(settings), wiring.tracker(settings), settings, run_steps,
                                         night=night, run_id=str(flow_run.get_id() or "") or None, log=logger.info)
    if promote:
        from shelfcast.flows.promote import promote_candidates

        report.promotion = promote_candidates(candidates, night=report.night, settings=settings)
    logger.info("night %s done in %.0fs: %d candidate(s)", report.night, report.seconds, len(candidates))
    return report.to_dict()
