"""Fault cases of runs killed outright, against a real SeaweedFS, Prefect server and MLflow server started here.

What an operator meets after a `kill -9`, an OOM kill or a power cut: an ingest flow run and a night's flow run
that Prefect shows RUNNING for ever, a night's parent MLflow run RUNNING, the night's work folder on disk. Each
case kills a real process (SIGKILL) in the middle of its run, then runs the next run and reads what the servers
say. `run(workdir)` returns one {name, expected, observed, passed} per case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

TINY = dict(variants=["lstm8"], epochs=1, window_days=120, holdout_days=14, stores="1", items="1-2")

INGEST_DRIVER = textwrap.dedent('''
    import sys, time
    from pathlib import Path

    import shelfcast.flows.ingest as ingest
    from prefect.runtime import flow_run

    def ingest_then_hang(*args, **kwargs):
        Path(sys.argv[1]).write_text(str(flow_run.get_id()))
        time.sleep(600)

    ingest.ingest_file = ingest_then_hang
    ingest.ingest_flow()
''')

NIGHT_DRIVER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path

    from shelfcast.tracking import Tracker

    def log_and_hang(self, *args, **kwargs):  # killed while logging its variant: after the bundle, before the end
        Path(sys.argv[1]).write_text("logging")
        time.sleep(600)

    Tracker.log_variant = log_and_hang
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.pipeline.config import RetrainConfig

    retrain_flow(RetrainConfig.load("quick", **json.loads(sys.argv[2])), night="killed")
''')


def case(name: str, expected: str, observed: str, passed: bool) -> dict:
    return {"name": name, "expected": expected, "observed": observed, "passed": bool(passed)}


class Stack:
    """SeaweedFS, Prefect and MLflow on free ports, and the `SHELFCAST_*` settings pointing at them."""

    def __init__(self, workdir: Path):
        from shelfcast.config import Settings
        from shelfcast.stack.local import MLFLOW_ARTIFACT_PREFIX, ensure_bucket, identities
        from shelfcast.stack.mlflow_server import start_mlflow_server
        from shelfcast.stack.prefect_server import start_prefect_server
        from shelfcast.stack.process import free_port
        from shelfcast.stack.seaweedfs import start_seaweedfs

        s3_port = free_port()
        os.environ.update({"SHELFCAST_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                           "SHELFCAST_HOME": str(workdir / "home"), "SHELFCAST_BUCKET": f"faults-runs-{os.getpid()}"})
        settings = Settings()
        self.services = [start_seaweedfs(workdir / "weed", identities(settings), s3_port)]
        ensure_bucket(settings)
        self.services.append(start_prefect_server(workdir / "prefect", free_port()))
        trainer = settings.credentials("trainer")
        self.services.append(start_mlflow_server(workdir / "mlflow", free_port(),
                                                 f"s3://{settings.bucket}/{MLFLOW_ARTIFACT_PREFIX}",
                                                 settings.s3_endpoint_url, *trainer))
        os.environ["PREFECT_API_URL"] = self.services[1].urls["api"]
        os.environ["SHELFCAST_MLFLOW_TRACKING_URI"] = self.services[2].urls["tracking"]
        self.settings = Settings()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def kill_mid_run(workdir: Path, name: str, driver: str, *args: str, timeout_s: float = 600) -> str:
    """Run `driver`, wait until it writes its marker (it is inside its run), SIGKILL its process group; returns
    what it wrote."""
    script, marker = workdir / f"{name}.py", workdir / f"{name}.marker"
    script.write_text(driver)
    process = subprocess.Popen([sys.executable, str(script), str(marker), *args], env=dict(os.environ),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not (marker.exists() and marker.read_text()):
            if process.poll() is not None:
                raise RuntimeError(f"{name} ended before it was killed: {process.stderr.read().decode()[-800:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never reached the point where it is killed")
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return marker.read_text()


def flow_run_state(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def killed_ingest(stack: Stack, workdir: Path) -> list[dict]:
    from shelfcast import wiring
    from shelfcast.data.ingest import deliver_range, open_landing
    from shelfcast.data.sales import SalesTable
    from shelfcast.data.synthetic import generate_sales
    from shelfcast.flows.ingest import ingest_flow

    sales = generate_sales(stores=1, items=2, start="2016-01-01", end="2016-05-31", seed=3)
    objects = wiring.bucket(stack.settings)
    deliver_range(open_landing("landing/", objects), sales, "2016-01-01", "2016-05-31", kind="history")
    killed = kill_mid_run(workdir, "ingest", INGEST_DRIVER)
    before = flow_run_state(killed)
    reports = ingest_flow()
    after = flow_run_state(killed)
    rows = len(SalesTable(objects).load())
    return [case("ingest killed (SIGKILL) mid-file: its Prefect flow run",
                 "RUNNING until the next ingest, then CRASHED with the reason",
                 f"{before.type.value} after the kill, {after.type.value} after the next ingest: {after.message}",
                 before.is_running() and after.is_crashed()),
            case("ingest killed mid-file: the files it held",
                 "ingested once by the next ingest, nothing doubled",
                 f"{len(reports)} file(s), {rows} rows for {len(sales)} delivered", rows == len(sales))]


def killed_night(stack: Stack, workdir: Path) -> list[dict]:
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.pipeline.config import RetrainConfig
    from shelfcast.tracking import Tracker

    kill_mid_run(workdir, "night", NIGHT_DRIVER, json.dumps(TINY))
    tracker = Tracker.from_settings(stack.settings)
    (parent,) = tracker.client.search_runs([tracker.experiment_id()], "tags.night = 'killed' and tags.kind = 'night'")
    folders = sorted((Path(stack.settings.home) / "nights").glob("killed-*"))
    flow_run_id = parent.data.tags["prefect_flow_run_id"]
    before = (parent.info.status, flow_run_state(flow_run_id).type.value, len(folders))
    retrain_flow(RetrainConfig.load("quick", **TINY), night="next")
    parent = tracker.client.get_run(parent.info.run_id)
    state = flow_run_state(flow_run_id)
    left = [f for f in folders if f.exists()]
    return [case("night killed (SIGKILL) while logging: its MLflow parent run",
                 "RUNNING until the next night, then FAILED with night_status=crashed",
                 f"{before[0]} after the kill, {parent.info.status} / {parent.data.tags.get('night_status')} after",
                 before[0] == "RUNNING" and parent.info.status == "FAILED"
                 and parent.data.tags.get("night_status") == "crashed"),
            case("night killed while logging: its Prefect flow run", "CRASHED by the next night",
                 f"{before[1]} after the kill, {state.type.value} after", before[1] == "RUNNING" and state.is_crashed()),
            case("night killed while logging: its work folder (variant files)", "removed by the next night",
                 f"{before[2]} folder(s) after the kill, {len(left)} after the next night",
                 before[2] == 1 and not left)]


def live_run_left_alone(workdir: Path) -> list[dict]:
    """Two runs at once: the one reaping must never take the live one for crashed (3 rounds, real processes)."""
    from shelfcast.pipeline import leases

    home = workdir / "leases"
    code = ("import sys, time; from shelfcast.pipeline import leases; "
            "lease = leases.hold(sys.argv[1], 'night', sys.argv[2]); print('held', flush=True); time.sleep(600)")
    alive_reaped, dead_missed = 0, 0
    for round_ in range(3):
        holder = subprocess.Popen([sys.executable, "-c", code, str(home), f"live-{round_}"], stdout=subprocess.PIPE,
                                  text=True)
        try:
            holder.stdout.readline()
            alive_reaped += len(list(leases.abandoned(home, "night")))
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        found = list(leases.abandoned(home, "night"))
        dead_missed += len(found) != 1
        for lease in found:
            lease.release()
    return [case("a night running while another reaps (3 rounds)", "the live night is never marked crashed; "
                 "each one killed is found", f"{alive_reaped} live taken for crashed, {dead_missed} killed missed",
                 alive_reaped == 0 and dead_missed == 0)]


def run(workdir: Path) -> list[dict]:
    cases = live_run_left_alone(workdir)
    stack = Stack(workdir)
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        # Prefect may have read its settings before this module's server existed (another area ran first).
        with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
            cases += killed_ingest(stack, workdir)
            cases += killed_night(stack, workdir)
    finally:
        stack.stop()
    return cases
