"""Serving the flows: the one-process scheduler (`shelfcast serve`) and the Prefect API the CLI talks to.

`build_deployments` makes the same two deployments as `deployments/prefect.yaml` (ingest hourly, retrain at
02:00 in a configurable timezone); `serve` runs them in this process until SIGINT/SIGTERM. `use_api` points
flow runs at the configured Prefect server. A server that does not answer is an error: falling back to
Prefect's temporary local API would run the flows where nobody can see them and keep nothing. An empty
`SHELFCAST_PREFECT_API_URL` asks for that temporary API on purpose.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from typing import Iterator

from shelfcast.pipeline.config import INGEST_CRON, RETRAIN_CRON


def api_healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=2) as response:
            return response.status == 200 and json.loads(response.read() or b"true") is not False
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def use_api(api_url: str | None) -> Iterator[bool]:
    """Within the block, flows report to `api_url`; yields whether a server is used (False only for an empty
    `api_url`: Prefect's temporary local API, on purpose). Raises `ServiceError` when the server does not answer."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from shelfcast.contract.errors import ServiceError

    if not api_url:
        yield False
        return
    if not api_healthy(api_url):
        raise ServiceError(
            f"no Prefect API answers at {api_url}: start the local stack with `shelfcast stack up`, or set "
            "SHELFCAST_PREFECT_API_URL to your Prefect server (an empty value runs on a temporary local API that "
            "keeps nothing)")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield True


def build_deployments(timezone: str = "UTC", landing: str = "landing/", retrain_config: dict | None = None,
                      ingest_cron: str = INGEST_CRON, retrain_cron: str = RETRAIN_CRON) -> list:
    from prefect.schedules import Cron

    from shelfcast.flows.ingest import ingest_flow
    from shelfcast.flows.retrain import retrain_flow

    return [
        ingest_flow.to_deployment(
            name="ingest-hourly", schedules=[Cron(ingest_cron, timezone=timezone)], parameters={"landing": landing},
            description="ingest new sales files from landing/ every hour", tags=["shelfcast", "ingest"],
        ),
        retrain_flow.to_deployment(
            name="retrain-nightly", schedules=[Cron(retrain_cron, timezone=timezone)],
            parameters={"config": retrain_config or {}, "promote": True},
            description="retrain every variant on the rolling window and register candidates",
            tags=["shelfcast", "retrain"],
        ),
    ]


def worker_deployments(deployments: list) -> list[tuple[str, str, object]]:
    """(flow/name, work pool, id) of those of `deployments` already registered on the API for a work pool (by
    `prefect deploy`)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    taken = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                taken.append((name, existing.work_pool_name, existing.id))
    return taken


def serve(replace: bool = False, **kwargs) -> None:
    """Serve both deployments from this process (the one-process alternative to a work pool and a worker).

    A deployment of the same name registered for a work pool (`prefect deploy`) would be run twice, by its
    worker and by this process, and Prefect keeps its pull steps' code location when `serve` updates it, so
    its runs here would crash: such deployments are refused, or deleted first with `replace`."""
    from prefect import serve as prefect_serve
    from prefect.client.orchestration import get_client

    from shelfcast.contract.errors import ConfigError

    deployments = build_deployments(**kwargs)
    taken = worker_deployments(deployments)
    if taken and not replace:
        names = ", ".join(f"{name} (work pool {pool})" for name, pool, _ in taken)
        raise ConfigError(
            f"already deployed for a work pool: {names}. Serve from this process or run a worker, not both: "
            "stop the worker and pass --replace to take the schedules over here (the deployments are deleted "
            "and made again; past runs are kept)"
        )
    if taken:
        with get_client(sync_client=True) as client:
            for _, _, deployment_id in taken:
                client.delete_deployment(deployment_id)
    prefect_serve(*deployments)
