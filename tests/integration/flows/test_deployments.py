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

from shelfcast import wiring
from shelfcast.pipeline.config import INGEST_CRON, RETRAIN_CRON

ROOT = Path(__file__).resolve().parents[3]
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


@pytest.mark.unit  # the files and the schedule model, no server
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


@pytest.mark.unit  # the files and the schedule model, no server
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


def prefect_deploy(prefect_api: str) -> None:
    """`prefect deploy --all` of the committed YAML (work pool made first), as the README tells an operator."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="shelfcast-process", type="process"))
        except Exception:  # noqa: BLE001 - already created by an earlier test of the session
            pass
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.integration
def test_prefect_deploy_registers_both_deployments(prefect_api, project):
    from prefect.client.orchestration import get_client

    prefect_deploy(prefect_api)
    with get_client(sync_client=True) as client:
        ingest = client.read_deployment_by_name("ingest/ingest-hourly")
        retrain = client.read_deployment_by_name("retrain/retrain-nightly")
    assert ingest.work_pool_name == retrain.work_pool_name == "shelfcast-process"
    assert ingest.schedules[0].schedule.cron == INGEST_CRON == "0 * * * *"
    assert retrain.schedules[0].schedule.cron == RETRAIN_CRON == "0 2 * * *"
    assert retrain.schedules[0].schedule.timezone == project["definitions"]["timezone"]
    assert retrain.parameters["promote"] is True and retrain.parameters["config"]["window_days"] == 730


@pytest.mark.unit  # the files and the schedule model, no server
def test_serve_builds_the_same_schedules_in_the_chosen_timezone():
    from shelfcast.flows.serve import build_deployments

    ingest, retrain = build_deployments(timezone="America/New_York")
    assert ingest.name == "ingest-hourly" and retrain.name == "retrain-nightly"
    assert [s.schedule.cron for s in ingest.schedules + retrain.schedules] == ["0 * * * *", "0 2 * * *"]
    assert {s.schedule.timezone for s in retrain.schedules} == {"America/New_York"}
    assert retrain.parameters["promote"] is True


@pytest.mark.integration
def test_shelfcast_serve_runs_a_flow_run_of_its_deployment_then_stops_on_sigterm(pipeline_env, prefect_api):
    """`shelfcast serve` as an operator starts it: it refuses to serve deployments a worker already has, takes
    them over with --replace, picks up a run of its ingest deployment (created the way the scheduler or the UI
    creates one), ingests the landing files, and stops on SIGTERM."""
    import queue
    import signal
    import threading
    import time

    from prefect.client.orchestration import get_client

    from shelfcast.data.sales import SalesTable
    from shelfcast.data.synthetic import generate_sales
    from shelfcast.data.ingest import deliver_days, open_landing

    sales = generate_sales(stores=1, items=2, start="2017-05-01", end="2017-05-03", seed=3)
    objects = wiring.bucket(pipeline_env)
    deliver_days(open_landing("landing/", objects), sales, sorted(sales["date"].unique()))

    env = {**os.environ, "SHELFCAST_PREFECT_API_URL": prefect_api, "PREFECT_API_URL": prefect_api,
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [str(Path(sys.executable).parent / "shelfcast"), "serve", "--timezone", "Europe/Paris"]
    prefect_deploy(prefect_api)
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert "ingest/ingest-hourly (work pool shelfcast-process)" in refused.stderr
    assert "pass --replace" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1  # one line, the fix in it

    command.append("--replace")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []

    def wait_for(predicate, what: str, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while not lines.empty():
                seen.append(lines.get())
            if (answer := predicate()):
                return answer
            assert process.poll() is None, f"serve exited ({process.returncode}):\n" + "".join(seen)[-3000:]
            time.sleep(0.5)
        raise AssertionError(f"{what} within {timeout_s} s; serve printed:\n" + "".join(seen)[-3000:])

    try:
        wait_for(lambda: any("being served" in line for line in seen), "serve never said it was serving", 120)
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("ingest/ingest-hourly")
            assert deployment.schedules[0].schedule.timezone == "Europe/Paris"
            run = client.create_flow_run_from_deployment(deployment.id)

            def finished():
                state = client.read_flow_run(run.id).state
                return state if state and state.is_final() else None

            state = wait_for(finished, "the flow run did not finish", 240)
        assert state.is_completed(), f"{state.type}: {state.message}\n" + "".join(seen)[-3000:]
        assert len(SalesTable(objects).load()) == len(sales) == 6

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)  # raises TimeoutExpired when SIGTERM did not stop it
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
