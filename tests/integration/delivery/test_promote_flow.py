"""The promotion the nightly retrain calls, inside a real Prefect flow run (test harness API), with candidates
registered in a real MLflow (SQLite backend) the way the pipeline's `Tracker` registers them."""

import json

import pytest
from prefect import flow
from tests.integration._prefect import run_and_artifacts

from shelfcast.flows.promote import promote_candidates
from shelfcast.delivery.channels import read_head
from shelfcast.delivery.registry import MlflowRegistry
from shelfcast.contract.objects import ObjectStore
from shelfcast.tracking import Candidate as TrackedCandidate

pytestmark = pytest.mark.integration


def _register(client, settings, tiny_tflite, tmp_path, night):
    """Two variants logged and registered as the retrain does: a run with the `.tflite` under `tflite/` and the
    input spec as a parameter, a model version tagged with its file, then the pipeline's candidate objects."""
    experiment = client.create_experiment("nightly", artifact_location=(tmp_path / "mlartifacts").as_uri())
    client.create_registered_model(settings.registered_model)
    spec = tiny_tflite["spec"]
    tracked = []
    for variant, key, mape in (("lstm4", "v1", 14.0), ("lstm4+int8", "v2", 13.2)):
        run = client.create_run(experiment, run_name=variant)
        client.log_param(run.info.run_id, "input_spec", json.dumps(spec.to_dict()))  # as the retrain logs it
        path = tmp_path / f"{variant}.tflite"
        path.write_bytes(tiny_tflite[key])
        client.log_artifact(run.info.run_id, str(path), "tflite")
        metrics = {"mape_pct": mape, "naive_mape_pct": 16.7, "latency_us_median": 35.0}
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        tags = {"tflite_file": f"tflite/{path.name}", "variant": variant, "candidate": "true", "night": night}
        version = client.create_model_version(settings.registered_model, source=f"{run.info.artifact_uri}/tflite",
                                              run_id=run.info.run_id, tags=tags)
        tracked.append(TrackedCandidate(
            name=settings.registered_model, version=str(version.version), run_id=run.info.run_id, variant=variant,
            technique="int8" if "int8" in variant else "baseline", night=night, tags=tags, metrics=metrics,
        ))
    return tracked


def test_nightly_flow_promotes_registered_candidates(prefect_api, pipeline_env, tiny_tflite, tmp_path):
    from mlflow import MlflowClient

    settings = pipeline_env
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    tracked = _register(client, settings, tiny_tflite, tmp_path, "2026-01-05")

    @flow(name="retrain-handover-test")
    def nightly():
        return promote_candidates(tracked, night="2026-01-05", settings=settings)

    report, artifacts = run_and_artifacts(nightly, "promotion")
    assert report["status"] == "promoted" and report["decision"]["action"] == "bootstrap", report
    chosen = tracked[1].version
    assert report["canary"]["version"] == chosen and report["canary"]["alias"] == "canary"
    objects = ObjectStore.from_settings(settings, "trainer")
    assert read_head(objects, "canary").version == chosen
    assert report["published"] == {tracked[0].version: "published", chosen: "published"}
    assert MlflowRegistry(client, settings.registered_model).get_alias("canary") == chosen
    loser = client.get_model_version(settings.registered_model, tracked[0].version).tags
    assert loser["shelfcast.selection"] == "rejected" and "13.20 vs 14.00" in loser["shelfcast.selection_reason"]

    (artifact,) = artifacts  # this run's own, whichever promotions ran before it
    assert "**chosen**" in artifact and "rejected (outranked)" in artifact

    again = promote_candidates(tracked, night="2026-01-05", settings=settings)  # a rerun outside any flow
    assert again["status"] == "already serving" and read_head(objects, "canary").seq == 1


def test_a_candidate_whose_file_cannot_be_fetched_is_rejected_with_the_reason(pipeline_env, tiny_tflite, tmp_path):
    from dataclasses import replace

    from mlflow import MlflowClient

    settings = pipeline_env
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    tracked = _register(client, settings, tiny_tflite, tmp_path, "2026-01-06")
    broken = replace(tracked[1], tags={**tracked[1].tags, "tflite_file": "tflite/missing.tflite"})
    report = promote_candidates([tracked[0], broken], night="2026-01-06", settings=settings, gates=[])
    assert report["canary"]["version"] == tracked[0].version
    (rejection,) = report["decision"]["rejections"]
    assert rejection["version"] == broken.version and rejection["rules"][0] == "failed"
    assert "its .tflite could not be fetched" in rejection["reason"] and "missing.tflite" in rejection["reason"]


def test_the_deployable_promote_flow_reads_the_nights_candidates_from_mlflow(prefect_api, pipeline_env, tiny_tflite,
                                                                           tmp_path):
    from mlflow import MlflowClient

    from shelfcast.flows.promote import promote_night_flow

    settings = pipeline_env
    tracked = _register(MlflowClient(tracking_uri=settings.mlflow_tracking_uri), settings, tiny_tflite, tmp_path,
                        "2026-01-07")
    report = promote_night_flow(night="2026-01-07")
    assert report["status"] == "promoted" and report["canary"]["version"] == tracked[1].version
    assert sorted(report["published"]) == sorted(c.version for c in tracked)
