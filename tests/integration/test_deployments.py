"""`deployments/prefect.yaml` and `shelfcast serve`: entrypoints import, parameters validate, schedules parse,
and `prefect deploy` registers both deployments on a real Prefect API."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"


@pytest.fixture(scope="module")
def project():
    return yaml.safe_load(PREFECT_YAML.read_text())


def next_runs(cron: str, tz: str, count: int = 3) -> list[datetime]:
    """The run times the Prefect server's scheduler would create (its own schedule model)."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule

    start = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)  # spans the European DST change of 29 March
    return asyncio.run(CronSchedule(cron=cron, timezone=tz).get_dates(n=count, start=start))


def test_every_entrypoint_imports_and_accepts_its_parameters(project):
    from prefect.flows import load_flow_from_entrypoint

    names = {d["name"]: d for d in project["deployments"]}
    assert set(names) == {"ingest-hourly", "retrain-nightly"}
    for deployment in project["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        flow.validate_parameters(deployment.get("parameters", {}))
        assert deployment["work_pool"]["name"] == "shelfcast-process"
    from shelfcast.pipeline.config import RetrainConfig

    config = RetrainConfig(**names["retrain-nightly"]["parameters"]["config"])
    assert config.task_runner == "thread" and config.model_config_obj().variants


def test_schedules_parse_hourly_ingest_and_retrain_at_two(project):
    names = {d["name"]: d for d in project["deployments"]}
    (ingest,) = names["ingest-hourly"]["schedules"]
    (retrain,) = names["retrain-nightly"]["schedules"]
    runs = next_runs(ingest["cron"], ingest["timezone"])
    assert [(b - a).total_seconds() for a, b in zip(runs, runs[1:])] == [3600, 3600]
    for run in next_runs(retrain["cron"], retrain["timezone"]):
        local = run.astimezone(ZoneInfo(retrain["timezone"]))
        assert (local.hour, local.minute) == (2, 0)
    # Another timezone fires at 02:00 local time; on the night clocks skip 02:00, the run comes at 03:00.
    paris = [r.astimezone(ZoneInfo("Europe/Paris")) for r in next_runs(retrain["cron"], "Europe/Paris")]
    assert [(r.day, r.hour) for r in paris] == [(28, 2), (29, 3), (30, 2)]


def test_prefect_deploy_registers_both_deployments(prefect_api, project):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="shelfcast-process", type="process"))
        except Exception:  # noqa: BLE001 - already created by an earlier run of this module
            pass
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with get_client(sync_client=True) as client:
        ingest = client.read_deployment_by_name("ingest/ingest-hourly")
        retrain = client.read_deployment_by_name("retrain/retrain-nightly")
    assert ingest.work_pool_name == retrain.work_pool_name == "shelfcast-process"
    assert ingest.schedules[0].schedule.cron == "0 * * * *"
    assert retrain.schedules[0].schedule.cron == "0 2 * * *"
    assert retrain.schedules[0].schedule.timezone == project["definitions"]["timezone"]
    assert retrain.parameters["promote"] is True and retrain.parameters["config"]["window_days"] == 730


def test_serve_builds_the_same_schedules_in_the_chosen_timezone():
    from flows.serve import build_deployments

    ingest, retrain = build_deployments(timezone="America/New_York")
    assert ingest.name == "ingest-hourly" and retrain.name == "retrain-nightly"
    assert [s.schedule.cron for s in ingest.schedules + retrain.schedules] == ["0 * * * *", "0 2 * * *"]
    assert {s.schedule.timezone for s in retrain.schedules} == {"America/New_York"}
    assert retrain.parameters["promote"] is True
