"""The ingest flow (hourly): new files in landing/ -> validated rows in the sales table, the rest quarantined.

One task lists what waits in the landing, one task per file ingests it and moves it to archive/ (in name order,
so a day's correction follows the day). I/O failures are retried; a file's data problems never fail the run,
they end in the quarantine and in the run's markdown artifact.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from shelfcast import wiring
from shelfcast.config import load_settings
from shelfcast.contract import clock
from shelfcast.data.sales import SalesTable
from shelfcast.data.ingest import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_NEW_SERIES, DEFAULT_MAX_SALES, DEFAULT_MAX_WITHDRAWN_SHARE, FileReport, IngestOptions, Landing, ingest_file, open_landing, pending, render_markdown
from shelfcast.flows.crashed import reap_crashed
from shelfcast.pipeline import leases
from shelfcast.pipeline.transient import retry_on_io

IO_RETRIES = dict(retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)


@task(name="list-pending", **IO_RETRIES)
def list_pending(landing: Landing):
    return pending(landing)


@task(name="ingest-file", task_run_name="ingest {info.key}", **IO_RETRIES)
def ingest_one(store: SalesTable, landing: Landing, info, options: IngestOptions) -> FileReport:
    report = ingest_file(store, landing, info, options)
    logger = get_run_logger()
    if report.action in ("quarantined", "held"):
        logger.warning("%s quarantined: %s", report.name, report.error)
    else:
        logger.info("%s %s: %d read, %d accepted, %d duplicate, %d rejected", report.name, report.action,
                    report.rows_read, report.rows_accepted, report.rows_duplicate, report.rows_rejected)
    for warning in report.warnings:
        logger.warning("%s: %s", report.name, warning)
    return report


def ingest_run_name() -> str:
    """`ingest-2017-03-02T01:00:00Z`: when, on the loop's clock, this ingest looked at landing/."""
    return f"ingest-{clock.stamp()}"


@flow(name="ingest", flow_run_name=ingest_run_name)
def ingest_flow(
    landing: str = "landing/",
    today: date | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    allow_corrections: bool = True,
    max_sales: int = DEFAULT_MAX_SALES,
    max_withdrawn_share: float = DEFAULT_MAX_WITHDRAWN_SHARE,
    max_new_series: int = DEFAULT_MAX_NEW_SERIES,
) -> list[dict]:
    """Ingest every new or changed file of `landing` (a bucket prefix, `s3://...`, or a folder)."""
    settings = load_settings()
    run_id = str(flow_run.get_id() or "")
    reap_crashed(settings.home, "ingest")  # an earlier ingest killed mid-run stays RUNNING otherwise
    with leases.hold(Path(settings.home).resolve(), "ingest", run_id or uuid.uuid4().hex):
        return _ingest(settings, landing, IngestOptions(
            today=today, max_file_bytes=max_file_bytes, allow_corrections=allow_corrections, max_sales=max_sales,
            max_withdrawn_share=max_withdrawn_share, max_new_series=max_new_series, flow_run_id=run_id))


def _ingest(settings, landing: str, options: IngestOptions) -> list[dict]:
    objects = wiring.bucket(settings)
    store = SalesTable(objects)
    location = open_landing(landing, objects)
    reports = [ingest_one(store, location, info, options) for info in list_pending(location)]
    create_markdown_artifact(render_markdown(reports, location.describe(), objects.describe()),
                             key="ingest-summary", description="files ingested, corrected and quarantined")
    check_actuals(store, settings, sorted({day for r in reports if r.rows_accepted for day in r.dates}))
    from shelfcast.flows.promote import keep_signatures_fresh

    get_run_logger().info("delivery signatures: %s", keep_signatures_fresh(settings))
    return [report.to_dict() for report in reports]


def check_actuals(store: SalesTable, settings, new_dates: list[str]) -> dict:
    """The alert rules after an ingest (flows/monitor.py): freshness every run; input drift and the live
    champion's accuracy when new actuals arrived."""
    from shelfcast.flows.monitor import check_store_after_ingest

    return check_store_after_ingest(store, settings=settings, new_dates=new_dates)
