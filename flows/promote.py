"""The nightly promotion, as Prefect tasks: fetch the candidates' models -> select, publish, move canary,
advance stable (`shelfcast.delivery.promotion.promote_night`) -> a markdown artifact with every decision.

The retrain flow calls, after its candidates are registered:

    from shelfcast.flows.promote import promote_candidates
    report = promote_candidates(candidates, night=night, settings=settings)   # a dict (NightOutcome.to_dict())

`candidates` are the pipeline's registered candidates (`name`, `version`, `run_id`, `metrics` with `mape_pct`,
`naive_mape_pct`, `champion_mape_pct`, `latency_us_median`; `tags` with `tflite_file`) or ready
measured `shelfcast.tracking.Candidate`s. Inside a flow run the steps are tasks of that run; called outside one
(a script, a test) the same steps run as plain functions. Adapters can be passed in (`objects`, `registry`,
`client`, `gates`, `policy`); by default they are built from `settings`: the trainer's S3 identity, MLflow at
`settings.mlflow_tracking_uri`, the alert gate on `settings.alerts_db`, the policy in
`settings.promotion_policy_file`. `promote_night_flow(night)` is the same as a deployable flow that reads the
night's candidates from MLflow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from shelfcast.config import Settings, load_settings
from shelfcast.delivery.promotion import NightOutcome, fetch_candidate_models, outcome_markdown, promote_night
from shelfcast import wiring
from shelfcast.delivery.registry import MlflowRegistry
from shelfcast.delivery.selection import load_policy
from shelfcast.tracking import Candidate
from shelfcast.contract.objects import ObjectStore

ACTOR = "nightly-retrain"


def default_gates(settings: Settings) -> list:
    """The alert gate: an open alert of a blocking rule on a candidate blocks it (shelfcast.monitor)."""
    from shelfcast.monitor.gate import alert_gate
    from shelfcast.monitor.thresholds import load_thresholds

    return [alert_gate(wiring.alert_log(settings), load_thresholds(settings.thresholds_file))]


@task(name="fetch-candidate-models", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def fetch_candidates(candidates: list, client, folder: Path) -> list[Candidate]:
    return fetch_candidate_models(candidates, client, folder)


@task(name="select-publish-move", cache_policy=NO_CACHE)
def select_publish_move(objects: ObjectStore, candidates: list[Candidate], night: str | None, **options) -> NightOutcome:
    return promote_night(objects, candidates, night=night, **options)


def _step(step, *args, **kwargs):
    """A task inside a flow run; the plain function outside one."""
    return step(*args, **kwargs) if FlowRunContext.get() else step.fn(*args, **kwargs)


@task(name="keep-delivery-signatures-fresh", cache_policy=NO_CACHE)
def keep_signatures_fresh(settings: Settings) -> str:
    """Re-sign the delivery timestamp when half its lifetime is gone (`SignedRepository.refresh_if_due`); the
    hourly ingest runs it. Never fails its caller: a problem is returned for the log (stores raise the frozen
    alert if it persists)."""
    try:
        signer = wiring.signer(settings)
        if signer is None:
            return "delivery metadata not signed yet (`shelfcast keys init`)"
        return "timestamp re-signed" if signer.refresh_if_due() else "timestamp still fresh"
    except Exception as exc:  # noqa: BLE001 - reported; the next hourly run tries again
        return f"delivery timestamp not re-signed ({type(exc).__name__}: {str(exc)[:200]})"


def promote_candidates(candidates: list, night: str | None = None, settings: Settings | None = None, *,
                       objects: ObjectStore | None = None, registry=None, client=None, gates: list | None = None,
                       policy=None, actor: str = ACTOR, signer=None) -> dict:
    """Promote the night's candidates (see the module docstring); returns `NightOutcome.to_dict()`."""
    settings = settings or load_settings()
    objects = objects or wiring.bucket(settings)
    needs_mlflow = registry is None or any(not (isinstance(c, Candidate) and c.measured) for c in candidates)
    client = client or (wiring.mlflow_client(settings) if needs_mlflow else None)
    registry = registry or MlflowRegistry(client, settings.registered_model)
    gates = default_gates(settings) if gates is None else gates
    policy = policy or load_policy(settings.promotion_policy_file)
    signer = wiring.signer(settings, objects) if signer is None else signer
    with tempfile.TemporaryDirectory(prefix="shelfcast-promote-") as folder:
        measured = _step(fetch_candidates, list(candidates), client, Path(folder))
        outcome = _step(select_publish_move, objects, measured, night, actor=actor, policy=policy, gates=gates,
                        registry=registry, signer=signer)
    if FlowRunContext.get():
        create_markdown_artifact(outcome_markdown(outcome), key="promotion",
                                 description=f"promotion of night {night}: {outcome.status}")
        logger = get_run_logger()
        logger.info("promotion %s: %s", outcome.status, outcome.decision.reason)
        for problem in outcome.errors + outcome.notes:
            logger.warning("promotion: %s", problem)
    return outcome.to_dict()


@flow(name="promote", flow_run_name="promote-{night}")
def promote_night_flow(night: str | None = None) -> dict:
    """Promote the candidates MLflow holds for `night` (the latest complete night when None)."""
    settings = load_settings()
    tracker = wiring.tracker(settings)
    if night is None:
        latest = tracker.latest_complete_night()
        night = latest.data.tags.get("night") if latest else None
    return promote_candidates(tracker.candidates(night) if night else [], night=night, settings=settings,
                              client=tracker.client)
