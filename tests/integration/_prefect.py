"""Reading what one flow run left on the Prefect API.

Artifact keys (`promotion`, `ingest-summary`, ...) are shared by every run of the session, so a check that reads
the key alone may find another test's artifact and pass or fail by test order. These read the flow run's own."""

from __future__ import annotations


def run_artifacts(flow_run_id, key: str) -> list[str]:
    """The markdown of every artifact `key` that flow run `flow_run_id` (or one of its tasks) created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    assert flow_run_id is not None, "the state has no flow run: call the flow with return_state=True"
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [a.data or "" for a in found]


def run_and_artifacts(flow, key: str, *args, **kwargs):
    """Runs `flow(*args, **kwargs)`; returns (its result, the artifacts `key` of that run). A failed run raises."""
    state = flow(*args, return_state=True, **kwargs)
    return state.result(), run_artifacts(state.state_details.flow_run_id, key)
