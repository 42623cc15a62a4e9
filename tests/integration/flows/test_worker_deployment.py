"""`deployments/prefect.yaml` for a worker on another machine, against the session's real Prefect API: what
`prefect deploy` records (the pull step, the job variables), the pull step run as a worker runs it, and the
environment Prefect's process worker gives a run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml
from tests.integration.flows.test_deployments import prefect_deploy

from shelfcast.config import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"


@pytest.fixture(scope="module")
def deployed(prefect_api) -> dict:
    """The committed YAML deployed with `prefect deploy --all`; the `retrain-nightly` deployment as the API has it."""
    from prefect.client.orchestration import get_client

    prefect_deploy(prefect_api)
    with get_client(sync_client=True) as client:
        return {name: client.read_deployment_by_name(f"{name.split('-')[0]}/{name}")
                for name in ("ingest-hourly", "retrain-nightly")}


def test_the_pull_step_run_where_a_worker_runs_it_clones_the_repository_and_the_flows_load(deployed, tmp_path,
                                                                                          monkeypatch):
    """The steps as stored on the API (not as written in the file), run in an empty folder with the repository
    named by the Prefect variable: a worker on another machine gets the entrypoints from the clone."""
    from prefect.deployments.steps.core import run_steps
    from prefect.flows import load_flow_from_entrypoint
    from prefect.variables import Variable

    project = yaml.safe_load(PREFECT_YAML.read_text())
    for deployment in deployed.values():
        assert deployment.pull_steps == project["pull"]
    Variable.set("shelfcast_repository", str(ROOT), overwrite=True)  # a path here; a URL in production
    monkeypatch.chdir(tmp_path)
    output = asyncio.run(run_steps(deployed["retrain-nightly"].pull_steps))
    clone = Path(output["directory"])
    assert clone.resolve().parent == tmp_path.resolve() and (clone / ".git").exists()
    for deployment in deployed.values():
        flow = load_flow_from_entrypoint(str(clone / deployment.entrypoint))
        assert flow.name == deployment.entrypoint.split(":")[1].removesuffix("_flow")


def test_a_worker_passes_its_own_setting_to_the_run_where_the_job_variable_is_null(deployed, monkeypatch):
    """Prefect's process worker builds a run's environment from the pool's base job template, the deployment's
    job variables (as recorded by `prefect deploy`) and its own environment: a null job variable lets the
    worker's value through, and with no value anywhere the run gets config.py's default."""
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun
    from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

    retrain = deployed["retrain-nightly"]
    assert retrain.job_variables["env"]["SHELFCAST_BUCKET"] is None  # the null survives deploy and the API
    template = ProcessWorker.get_default_base_job_template()  # what `prefect work-pool create --type process` sets
    configuration = asyncio.run(ProcessJobConfiguration.from_template_and_values(template, retrain.job_variables))
    monkeypatch.setenv("SHELFCAST_BUCKET", "bucket-of-this-worker")
    monkeypatch.delenv("SHELFCAST_S3_REGION", raising=False)
    configuration.prepare_for_flow_run(FlowRun(id=uuid4(), flow_id=uuid4(), name="retrain-2017-03-02"))
    assert configuration.env["SHELFCAST_BUCKET"] == "bucket-of-this-worker"
    assert "SHELFCAST_S3_REGION" not in configuration.env and configuration.env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    for name in [n for n in os.environ if n.startswith("SHELFCAST_")]:
        monkeypatch.delenv(name)
    for name, value in configuration.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.bucket, settings.s3_region) == ("bucket-of-this-worker", "us-east-1")
