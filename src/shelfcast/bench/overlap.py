"""Ingests started together in separate processes (a barrier, then each ingests its own landing folder), for the
tests and the fault matrix that try to make two ingests commit the same key twice."""

from __future__ import annotations

import multiprocessing
import os
from datetime import date


def ingest_after_barrier(env: dict, landing_dir: str, today: date, barrier, results) -> None:
    """One ingest process: take the settings from `env`, wait for the others, ingest every file of its folder."""
    os.environ.update(env)
    from shelfcast import wiring
    from shelfcast.config import Settings
    from shelfcast.data.ingest import IngestOptions, Landing, ingest_landing
    from shelfcast.contract.objects import LocalObjects
    from shelfcast.data.sales import SalesTable

    store = SalesTable(wiring.bucket(Settings()))
    landing = Landing(LocalObjects(landing_dir))
    barrier.wait(timeout=60)
    reports = ingest_landing(store, landing, IngestOptions(today=today))
    results.put([r.to_dict() for r in reports])


def run_together(env: dict, folders: list[str], today: date = date(2020, 1, 1), timeout_s: float = 180) -> list[dict]:
    """Ingest each folder in its own process, all released at once; returns every file report."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(folders)), context.Queue()
    workers = [context.Process(target=ingest_after_barrier, args=(env, folder, today, barrier, results))
               for folder in folders]
    for worker in workers:
        worker.start()
    reports = [report for _ in workers for report in results.get(timeout=timeout_s)]
    for worker in workers:
        worker.join(timeout=60)
        if worker.exitcode != 0:
            raise RuntimeError(f"an ingest process exited with {worker.exitcode}")
    return reports


def settings_env() -> dict:
    """The `SHELFCAST_*` variables of this process, what the ingest processes are started with."""
    return {k: v for k, v in os.environ.items() if k.startswith("SHELFCAST_")}
