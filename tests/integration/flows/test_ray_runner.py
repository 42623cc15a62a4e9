"""The Ray task runner (`task_runner: ray`, flows/runners.py) beside the Dask one: the night's variants on two Ray
worker processes give the thread runner's night, and a local Ray instance started by the runner keeps its own
output out of the console."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.integration.pipeline import test_retrain

from shelfcast.pipeline.config import RetrainConfig

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
# The Dask test's panel and thread night (module-scoped fixtures, so they are made again for this module).
TINY, night_env, first_night_run, first_night = (test_retrain.TINY, test_retrain.night_env,
                                                 test_retrain.first_night_run, test_retrain.first_night)


def test_ray_runner_fans_out_on_two_worker_processes_and_gives_the_thread_night(night_env, first_night):
    """The night on a Ray instance of two CPUs started by the test with the runner's own `ray.init` options (so
    that its timeline, read before shutdown, shows which worker ran which task): two sizes make two parents that
    start at once, and both worker processes run tasks of the night."""
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.flows.runners import make_task_runner

    variants = [*TINY["variants"], "lstm4"]
    config = RetrainConfig.load("quick", **{**TINY, "variants": variants}, task_runner="ray", workers=2)
    init_kwargs = make_task_runner(config).init_kwargs
    import ray  # after the runner set Ray's environment, as in the flow's process

    ray.init(**init_kwargs)
    try:
        report = retrain_flow(config, night="ray")
        events = ray.timeline()
    finally:
        ray.shutdown()
    assert [v["status"] for v in report["variants"]] == ["ok", "ok", "ok"]
    ran: dict[str, list[str]] = {}
    for event in events:
        if event["cat"].startswith("task::"):
            ran.setdefault(event["cat"].removeprefix("task::"), []).append(event["tid"])
    assert {name: len(workers) for name, workers in ran.items()} == {"train-parent": 2, "build-variant": 3}
    # Tasks ran in more than one worker process. Ray may start a further worker while both are busy (seen on a
    # loaded machine: 3 workers for 2 CPUs), so the count is at least two, not exactly two.
    assert len({worker for workers in ran.values() for worker in workers}) >= 2, ran
    sizes = {v["name"]: v["metrics"]["tflite_bytes"] for v in report["variants"] if v["name"] != "LSTM-4"}
    assert sizes == {v["name"]: v["metrics"]["tflite_bytes"] for v in first_night["variants"]}
    assert len(report["candidates"]) == 3


PREFECT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\| "
                              r"(Flow run '[\w-]+'|Task run '[\w-]+'|prefect[\w.-]*) - ")


def test_a_local_ray_instance_of_the_runner_uses_two_worker_processes_and_prints_nothing_of_its_own(prefect_api):
    """As a user runs it: a fresh process, nothing of Ray's in its environment, the runner starting (and
    stopping) its own local instance. Every line the process prints is Prefect's run log or its answer."""
    script = textwrap.dedent("""
        import json, os, time
        from prefect import flow, task
        from shelfcast.flows.runners import make_task_runner
        from shelfcast.pipeline.config import RetrainConfig

        @task
        def where(i):
            time.sleep(2)
            return os.getpid()

        @flow
        def fan_out():
            return [future.result() for future in where.map(range(4))]

        runner = make_task_runner(RetrainConfig(task_runner="ray", workers=2))
        print(json.dumps({"driver": os.getpid(), "workers": fan_out.with_options(task_runner=runner)()}))
    """)
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
    env.update(PREFECT_API_URL=prefect_api, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    *logs, answer = done.stdout.strip().splitlines()
    pids = json.loads(answer)
    assert len(set(pids["workers"])) == 2 and pids["driver"] not in pids["workers"], pids
    foreign = [line for line in logs + done.stderr.splitlines() if line.strip() and not PREFECT_LOG_LINE.match(line)]
    assert foreign == [], "\n".join(foreign)
