"""Flow runs whose process was killed, marked CRASHED by the next run (Prefect leaves them RUNNING forever).

A flow run started in-process (`shelfcast ingest`, `shelfcast run`, a served deployment) has no worker watching
it: killed with SIGKILL, it never reports again. Each ingest and night holds a run lease
(`shelfcast.pipeline.leases`) keyed by its flow run id; the next run finds the leases of dead runs and moves
their flow runs from RUNNING to CRASHED with the reason.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from shelfcast.pipeline import leases


def mark_flow_run_crashed(flow_run_id: str, reason: str) -> bool:
    """CRASHED with `reason` if the flow run is still RUNNING (or PENDING); returns whether it was moved."""
    if not flow_run_id:
        return False
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except (ObjectNotFound, ValueError):  # ran without a Prefect run of its own (or on another API)
            return False
        if run.state is None or run.state.is_final():
            return False
        client.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)
    return True


def night_crashed(facts: dict) -> None:
    """`NightSteps.crashed`: the killed night's retrain flow run, CRASHED."""
    mark_flow_run_crashed(facts.get("run_id", ""), facts.get("reason", "crashed"))


def reap_crashed(home: Path, kind: str) -> list[dict]:
    """The flow runs of `kind` (`ingest`) on this home whose process died: CRASHED, leases released."""
    found = []
    for lease in leases.abandoned(Path(home).resolve(), kind):
        facts = lease.describe()
        reason = (f"crashed: process {facts.get('pid')} on {facts.get('host')} ended without finishing "
                  f"(started {facts.get('started')}); marked by the next {kind} run")
        mark_flow_run_crashed(lease.run_id, reason)
        lease.release()
        found.append({**facts, "reason": reason})
    if found:
        get_run_logger().warning("%d earlier %s run(s) had crashed and are marked so: %s", len(found), kind,
                                 ", ".join(f["run_id"] for f in found))
    return found
