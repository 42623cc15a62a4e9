"""Serving the flows: the one-process scheduler (`shelfcast serve`) and the Prefect API the CLI talks to.

`build_deployments` makes the same two deployments as `deployments/prefect.yaml` (ingest hourly, retrain at
02:00 in a configurable timezone); `serve` runs them in this process until SIGINT/SIGTERM. `use_api` points
flow runs at the configured Prefect server when it answers, and otherwise lets Prefect start its temporary
local API (slower, and the runs are not kept).
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from typing import Iterator

INGEST_CRON = "0 * * * *"
RETRAIN_CRON = "0 2 * * *"


def api_healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=2) as response:
            return response.status == 200 and json.loads(response.read() or b"true") is not False
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def use_api(api_url: str | None) -> Iterator[bool]:
    """Within the block, flows report to `api_url` if it is healthy; yields whether it is used."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if api_url and api_healthy(api_url):
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield True
    else:
        yield False


def build_deployments(timezone: str = "UTC", landing: str = "landing/", retrain_config: dict | None = None,
                      ingest_cron: str = INGEST_CRON, retrain_cron: str = RETRAIN_CRON) -> list:
    from prefect.schedules import Cron

    from flows.ingest import ingest_flow
    from flows.retrain import retrain_flow

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


def serve(**kwargs) -> None:
    """Serve both deployments from this process (the one-process alternative to a work pool and a worker)."""
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(**kwargs))
