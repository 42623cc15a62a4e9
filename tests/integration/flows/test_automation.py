"""`shelfcast automation create` against the session's real Prefect server: the automation it makes, that a second
run updates it instead of adding one, and that the server itself fires it, posting to a real HTTP receiver on
127.0.0.1, when a retrain-nightly flow run fails or is late, and for no other run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.monitor.test_webhook import Receiver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def automation_create(prefect_api: str, *args: str, webhook: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHELFCAST_PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("SHELFCAST_ALERT_WEBHOOK_URL", None)
    if webhook:
        env["SHELFCAST_ALERT_WEBHOOK_URL"] = webhook
    return subprocess.run([str(Path(sys.executable).parent / "shelfcast"), "automation", "create", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def deployment_id(client, flow: str, name: str):
    """A deployment `flow/name` on the API, made as `prefect deploy` or `shelfcast serve` would register it."""
    return client.create_deployment(flow_id=client.create_flow_from_name(flow), name=name)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_no_webhook_is_a_usage_error_that_says_how_to_fix_it(prefect_api):
    done = automation_create(prefect_api)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == ("error: no webhook to notify: set SHELFCAST_ALERT_WEBHOOK_URL (the on-call "
                                   "channel's incoming webhook) or pass --webhook-url")


def test_create_twice_leaves_one_automation_and_a_failed_or_late_nightly_run_reaches_on_call(prefect_api, receiver):
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Failed, Late, Pending, Running

    from shelfcast.flows.automation import AUTOMATION_NAME, MESSAGE, WEBHOOK_BLOCK

    first = automation_create(prefect_api, webhook=receiver.url + "/old")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith(f"created automation {AUTOMATION_NAME!r} (")
    again = automation_create(prefect_api, "--webhook-url", receiver.url, webhook=receiver.url + "/old")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith(f"updated automation {AUTOMATION_NAME!r} (")
    assert again.stdout.split("(")[1].split(")")[0] == first.stdout.split("(")[1].split(")")[0]  # the same id

    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(AUTOMATION_NAME)
        trigger = automation.trigger
        assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.Late"}
        assert trigger.posture == "Reactive" and trigger.threshold == 1
        assert [spec.root for spec in trigger.match_related] == [
            {"prefect.resource.role": "flow", "prefect.resource.name": "retrain"},
            {"prefect.resource.role": "deployment", "prefect.resource.name": "retrain-nightly"}]
        (action,) = automation.actions
        assert action.type == "call-webhook" and action.payload == MESSAGE
        block = client.read_block_document(action.block_document_id, include_secrets=True)
        assert block.name == WEBHOOK_BLOCK and block.data["url"] == receiver.url  # --webhook-url won, updated

        # State changes as the engine (Failed), the late-runs service (Late) or anyone else propose them through
        # the API; the server turns each into an event and evaluates the trigger on it.
        nightly = deployment_id(client, "retrain", "retrain-nightly")
        other = deployment_id(client, "retrain", "retrain-adhoc")
        runs = {}
        for key, deployment in (("other", other), ("completed", nightly), ("failed", nightly), ("late", nightly)):
            runs[key] = client.create_flow_run_from_deployment(deployment)
        for key, states in (("other", [Pending(), Running(), Failed(message="not the nightly one")]),
                            ("completed", [Pending(), Running(), Completed()]),
                            ("failed", [Pending(), Running(), Failed(message='training "lstm16" raised')]),
                            ("late", [Late()])):
            for state in states:
                client.set_flow_run_state(runs[key].id, state, force=True)

    expected = {
        f"shelfcast retrain-nightly: flow run {runs['failed'].name} is Failed: training \"lstm16\" raised "
        f"[prefect.flow-run.{runs['failed'].id}]",
        f"shelfcast retrain-nightly: flow run {runs['late'].name} is Late (no worker started it: is `prefect worker "
        f"start --pool shelfcast-process` running?) [prefect.flow-run.{runs['late'].id}]",
    }
    deadline = time.monotonic() + 90
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # anything the other two runs wrongly fired would have arrived by now
    assert {r["json"]["text"] for r in receiver.requests} == expected, receiver.requests
    assert [r["path"] for r in receiver.requests] == ["/hooks/T000/B000"] * 2
    assert all(r["headers"]["Content-Type"] == "application/json" for r in receiver.requests)
