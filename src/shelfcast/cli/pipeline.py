"""Commands of the nightly pipeline: `stack`, `ingest`, `retrain`, `serve` and `run` (the main job)."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Optional

import typer

from shelfcast import wiring
from shelfcast.cli._console import USAGE_EXIT, fail, get_console, stderr_to
from shelfcast.pipeline.config import INGEST_CRON, RETRAIN_CRON

from shelfcast.config import load_settings

stack_app = typer.Typer(help="The local stack: SeaweedFS S3, Prefect server, MLflow server on 127.0.0.1.",
                        no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest new sales files from landing/ into the sales store (runs the ingest flow).",
                         invoke_without_command=True)


def _quiet_logs() -> None:
    # Prefect's task states are the progress of a run and stay at INFO; MLflow's registry waits are noise.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")



# ---- stack ---------------------------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up(postgres: bool = typer.Option(
        False, "--postgres", help="run Prefect, MLflow and the alert log on a local PostgreSQL server (kept for "
        "this home from then on)")) -> None:
    """Start whatever is not running, wait until healthy, print the addresses."""
    from shelfcast.stack.local import LocalStack, ui_addresses

    console, settings = get_console(), load_settings()
    LocalStack(settings, postgres=postgres).up(on_step=lambda m: console.print(f"[dim]{m}[/dim]"))
    _print_addresses(console, ui_addresses(settings))
    console.print("Stop it with [bold]shelfcast stack down[/bold].")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services this stack started (and nothing else)."""
    from shelfcast.stack.local import LocalStack

    console = get_console()
    stopped = LocalStack(load_settings()).down(on_step=lambda m: console.print(f"[dim]{m}[/dim]"))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Which services run, their pids, health and addresses."""
    from rich.table import Table

    from shelfcast.stack.local import LocalStack

    report = LocalStack(load_settings()).status()
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    table = Table(title="shelfcast local stack")
    for column in ("service", "started here", "pid", "running", "healthy", "port", "addresses"):
        table.add_column(column)
    for name, s in report.items():
        note = "" if s["started"] or not s["port_in_use"] else " (port used by another process)"
        table.add_row(name, "yes" if s["started"] else "no", str(s["pid"] or ""), str(s["running"]),
                      str(s["healthy"]), f"{s['port']}{note}", " ".join(s["urls"].values()))
    get_console().print(table)
    if not all(s["healthy"] for s in report.values()):
        raise typer.Exit(1)


def _print_addresses(console, addresses: dict[str, str]) -> None:
    for name, url in addresses.items():
        console.print(f"  {name:12s} [link={url}]{url}[/link]")


# ---- ingest --------------------------------------------------------------------------------------------------
@ingest_app.callback()
def ingest(
    ctx: typer.Context,
    landing: str = typer.Option("landing/", help="bucket prefix, s3://BUCKET/PREFIX/, or a folder (./path)"),
    today: Optional[str] = typer.Option(None, help="YYYY-MM-DD: rows after it are 'in the future' (default: today UTC)"),
    max_file_bytes: int = typer.Option(256 * 1024**2, help="larger files are quarantined without being parsed"),
    corrections: bool = typer.Option(True, help="accept a corrected file under an ingested name"),
    max_sales: int = typer.Option(1_000_000, help="largest plausible sales of one item in one store on one day"),
    max_withdrawn_share: float = typer.Option(
        0.2, help="a correction withdrawing more of its earlier rows than this is held for `ingest approve`"),
    max_new_series: int = typer.Option(50_000, help="a file adding more new series than this is held"),
) -> None:
    """Run the ingest flow once over the landing location."""
    if ctx.invoked_subcommand is None:
        _run_ingest(landing, date.fromisoformat(today) if today else None, max_file_bytes, corrections,
                    max_sales=max_sales, max_withdrawn_share=max_withdrawn_share, max_new_series=max_new_series)


def _run_ingest(landing: str, today: date | None, max_file_bytes: int, corrections: bool, **limits) -> None:
    _quiet_logs()
    from shelfcast.flows.ingest import ingest_flow
    from shelfcast.flows.serve import use_api

    from prefect import tags

    settings = load_settings()
    with use_api(settings.prefect_api_url), tags("shelfcast", "manual"):
        reports = ingest_flow(landing=landing, today=today, max_file_bytes=max_file_bytes,
                              allow_corrections=corrections, **limits)
    _print_ingest(reports)


def _print_ingest(reports: list[dict]) -> None:
    from rich.table import Table

    table = Table(title=f"ingest: {len(reports)} file(s)")
    for column in ("file", "action", "read", "accepted", "duplicate", "rejected", "note"):
        table.add_column(column, overflow="fold")
    for r in reports:
        note = r["error"] or "; ".join(r["warnings"])
        table.add_row(r["name"], r["action"], str(r["rows_read"]), str(r["rows_accepted"]), str(r["rows_duplicate"]),
                      str(r["rows_rejected"]), note[:300])
    get_console().print(table)


def _sales_table():
    from shelfcast.data.sales import SalesTable

    return SalesTable(wiring.bucket(load_settings()))


@ingest_app.command("catalog")
def ingest_catalog(
    add_stores: Optional[str] = typer.Option(None, help="store ids to add, e.g. 11 or 11-12"),
    add_items: Optional[str] = typer.Option(None, help="item ids to add, e.g. 51"),
) -> None:
    """Show the catalogue of known stores and items, or add new ones before their first delivery."""
    from shelfcast.data.schema import parse_range
    from shelfcast.data.sales import Catalog
    from shelfcast.data.ingest import format_ids

    store = _sales_table()
    catalog, etag = store.catalog()
    if add_stores or add_items:
        base = catalog or Catalog(frozenset(), frozenset())
        catalog = base.with_ids(parse_range(add_stores) or [], parse_range(add_items) or [])
        store.save_catalog(catalog, etag)
    if catalog is None:
        typer.echo("no catalogue yet: the first ingested file creates it")
        return
    typer.echo(f"stores {format_ids(catalog.stores)}; items {format_ids(catalog.items)}; "
               f"{len(store.known_series()):,} series")


@ingest_app.command("ledger")
def ingest_ledger(source: Optional[str] = typer.Argument(None, help="one file's history"),
                  last: int = typer.Option(20, help="how many entries")) -> None:
    """The ingest ledger: every processed file version, newest last."""
    from rich.table import Table

    entries = _sales_table().ledger_history(source)[-last:]
    table = Table(title="ingest ledger")
    for column in ("finished", "file", "seq", "action", "sha256", "read", "accepted", "dup", "rejected",
                   "table version", "note"):
        table.add_column(column, overflow="fold")
    for e in entries:
        note = e.error or (f"approved by {e.approved_by}: {e.approval_reason}" if e.approved_by else "")
        table.add_row(e.finished_at, e.name, str(e.seq), e.action, e.sha256[:12], str(e.rows_read),
                      str(e.rows_accepted), str(e.rows_duplicate), str(e.rows_rejected), str(e.table_version),
                      note[:120])
    get_console().print(table)


@ingest_app.command("verify")
def ingest_verify() -> None:
    """Check the sales table: every (date, store, item) key exactly once."""
    store = _sales_table()
    rows, doubled = store.verify()
    typer.echo(f"{rows:,} committed rows in version {store.version()} of {store.describe()}; "
               f"{len(doubled)} doubled key(s)")
    for key in doubled:
        typer.echo(f"  doubled: {key}")
    if doubled:
        raise typer.Exit(1)


@ingest_app.command("approve")
def ingest_approve(
    name: str = typer.Argument(..., help="the landing file name of the held file"),
    by: str = typer.Option(..., help="who approves (recorded in the ledger)"),
    reason: str = typer.Option(..., help="why (recorded in the ledger)"),
) -> None:
    """Ingest a held file (a correction withdrawing many rows, or many new series) as it is."""
    from shelfcast.data.ingest import IngestOptions, approve

    report = approve(_sales_table(), name, by, reason, IngestOptions())
    _print_ingest([report.to_dict()])


@ingest_app.command("restore")
def ingest_restore(
    name: str = typer.Argument(..., help="the landing file name"),
    seq: int = typer.Option(..., help="the ledger entry (seq, see `ingest ledger NAME`) whose rows come back"),
    by: str = typer.Option(..., help="who restores (recorded in the ledger)"),
    reason: str = typer.Option(..., help="why (recorded in the ledger)"),
) -> None:
    """Bring back the rows of a superseded version of a file, read from the sales table's history."""
    from shelfcast.data.ingest import IngestOptions, restore

    report = restore(_sales_table(), name, seq, by, reason, IngestOptions())
    _print_ingest([report.to_dict()])


@ingest_app.command("migrate")
def ingest_migrate(
    delete_old: bool = typer.Option(False, help="delete the old Parquet parts and catalogue after moving them"),
) -> None:
    """Move a sales store of Parquet parts by date (`sales/date=...`) into the sales table, keeping the ledger."""
    from shelfcast.data.migrate import migrate

    report = migrate(_sales_table(), delete_old=delete_old)
    typer.echo(f"moved {report.rows:,} rows of {report.sources} file(s) into version {report.table_version}; "
               f"{report.series:,} series, {report.parts_deleted} old part(s) deleted")


@ingest_app.command("maintain")
def ingest_maintain(retention_days: int = typer.Option(14, help="keep every version of the last N days")) -> None:
    """Compact, checkpoint and vacuum the sales table (the nightly retrain does this before it reads)."""
    typer.echo(json.dumps(_sales_table().maintain(retention_days), indent=1))


@ingest_app.command("backfill")
def ingest_backfill(
    data: Path = typer.Option(..., help="sales in Kaggle format (CSV or the zip holding train.csv)"),
    start: str = typer.Option(..., "--from", help="first day, YYYY-MM-DD"),
    end: str = typer.Option(..., "--to", help="last day, YYYY-MM-DD"),
    stores: Optional[str] = typer.Option(None), items: Optional[str] = typer.Option(None),
    landing: str = typer.Option("landing/"),
) -> None:
    """Deliver the days FROM..TO of a history file to landing as one file and ingest it (idempotent)."""
    from shelfcast.data.schema import load_sales, parse_range
    from shelfcast.data.ingest import deliver_range, open_landing

    frame = load_sales(data, parse_range(stores), parse_range(items))
    location = open_landing(landing, wiring.bucket(load_settings()))
    key = deliver_range(location, frame, start, end)
    size = location.objects.head(key).size
    typer.echo(f"delivered {key} ({size:,} bytes)")
    _run_ingest(landing, None, max(256 * 1024**2, size), True)  # a backfill may exceed a daily file's limit


# ---- retrain, serve, run -------------------------------------------------------------------------------------
def _retrain_config(config, variants, window_days, epochs, warm_start, task_runner, workers, seed):
    from shelfcast.pipeline.config import RetrainConfig

    return RetrainConfig.load(
        config, variants=[v.strip() for v in variants.split(",")] if variants else None, window_days=window_days,
        epochs=epochs, warm_start=warm_start, task_runner=task_runner, workers=workers, seed=seed,
    )


def retrain(
    config: Optional[str] = typer.Option(None, help="preset (nightly, quick) or a JSON file of RetrainConfig"),
    variants: Optional[str] = typer.Option(None, help="comma-separated, e.g. lstm16,lstm16+int8"),
    window_days: Optional[int] = typer.Option(None), epochs: Optional[int] = typer.Option(None),
    warm_start: Optional[bool] = typer.Option(None, "--warm-start/--cold-start"),
    task_runner: Optional[str] = typer.Option(None, help="thread, dask or ray"),
    workers: Optional[int] = typer.Option(None), seed: Optional[int] = typer.Option(None),
    night: Optional[str] = typer.Option(None, help="label of the night (default: newest sales day)"),
    promote: bool = typer.Option(False, help="hand the candidates over to promotion"),
) -> None:
    """Run the nightly retrain once: every variant trained, evaluated, logged to MLflow and registered."""
    _quiet_logs()
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.flows.serve import use_api

    settings = load_settings()
    cfg = _retrain_config(config, variants, window_days, epochs, warm_start, task_runner, workers, seed)
    from prefect import tags

    with use_api(settings.prefect_api_url), tags("shelfcast", "manual"):
        report = retrain_flow(cfg, night=night, promote=promote)
    get_console().print(night_table(report))


def serve(
    timezone: str = typer.Option(os.environ.get("SHELFCAST_TIMEZONE", "UTC"), help="IANA timezone of the schedules"),
    landing: str = typer.Option("landing/"),
    config: Optional[str] = typer.Option(None, help="retrain preset or JSON file"),
    ingest_cron: str = typer.Option(INGEST_CRON), retrain_cron: str = typer.Option(RETRAIN_CRON),
    replace: bool = typer.Option(False, help="take over deployments of the same name made for a work pool "
                                 "(`prefect deploy`): they are deleted and made again here"),
) -> None:
    """Serve ingest (hourly) and retrain (02:00) from this process until interrupted."""
    from shelfcast.flows.serve import serve as serve_flows, use_api

    from shelfcast.contract.errors import ConfigError
    from shelfcast.pipeline.config import RetrainConfig

    settings = load_settings()
    with use_api(settings.prefect_api_url) as on_server:
        if not on_server:
            raise typer.BadParameter(f"no Prefect server at {settings.prefect_api_url}; run `shelfcast stack up` first")
        try:
            serve_flows(replace=replace, timezone=timezone, landing=landing, ingest_cron=ingest_cron,
                        retrain_cron=retrain_cron, retrain_config=RetrainConfig.load(config).model_dump())
        except ConfigError as exc:
            fail(exc, USAGE_EXIT)


def run(
    data: Optional[Path] = typer.Option(None, help="Kaggle train.csv or its zip (default: synthetic history)"),
    stores: str = typer.Option("1-5"), items: str = typer.Option("1-10"),
    days: int = typer.Option(7, help="days delivered one file per day at the end"),
    history_days: int = typer.Option(730, help="days of synthetic history"),
    config: str = typer.Option("quick", help="retrain preset or JSON file"),
    variants: Optional[str] = typer.Option(None, help="comma-separated variants (default: the preset's)"),
    promote: bool = typer.Option(True, help="hand the candidates over to promotion"),
    seed: int = typer.Option(0),
) -> None:
    """The main job: stack up, history, one nightly retrain and promotion, then the last days replayed: deliveries,
    ingest, stores syncing and forecasting, scored; summary."""
    _quiet_logs()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shelfcast.loop.job import JobOptions, run_job

    console, settings = get_console(), load_settings()
    cfg = _retrain_config(config, variants, None, None, None, None, None, seed)
    options = JobOptions(data=data, stores=stores, items=items, history_days=history_days, deliver_days=days,
                         seed=seed, config=cfg, promote=promote)
    log_path = Path(settings.home) / "logs" / "run.log"
    console.print(f"[dim]the servers' and libraries' own output goes to {log_path}[/dim]")
    with stderr_to(log_path), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                       TimeElapsedColumn(), console=console, transient=True) as progress:
        summary = run_job(settings, options, say=lambda m: progress.console.print(f"[cyan]>[/cyan] {m}"),
                          progress=progress)
    summary["log"] = str(log_path)
    print_summary(console, summary)


def night_table(report: dict):
    from rich.table import Table

    candidates = {c["version"] for c in report.get("candidates", [])}
    table = Table(title=f"night {report['night']}: MLflow run {report['parent_run_id']}")
    for column in ("variant", "status", "MAPE %", "vs naive", ".tflite B", "gzip B", "params", "non-zero",
                   "train s", "version", "candidate"):
        table.add_column(column, justify="right" if column not in ("variant", "status") else "left")
    naive = report.get("naive_mape_pct")
    for v in report["variants"]:
        m = v["metrics"]
        mape = m.get("mape_pct")
        table.add_row(
            v["name"], v["status"], f"{mape:.2f}" if mape is not None else "-",
            f"{mape - naive:+.2f}" if mape is not None and naive is not None else "-",
            f"{int(m.get('tflite_bytes', 0)):,}", f"{int(m.get('gzip_bytes', 0)):,}", f"{int(m.get('params', 0)):,}",
            f"{int(m.get('nonzero_params', 0)):,}", f"{m.get('train_seconds', 0):.1f}", v.get("version") or "-",
            "yes" if v.get("version") in candidates else "no",
        )
    return table


def print_summary(console, summary: dict) -> None:
    from rich.table import Table

    night = summary["night"]
    ingest = summary["ingest"]
    count = lambda action: sum(r["action"] == action for r in ingest)  # noqa: E731
    console.print(f"ingest: {count('ingested')} file(s) ingested, {count('corrected')} corrected, "
                  f"{count('quarantined')} quarantined whole, {count('unchanged')} unchanged; "
                  f"{sum(r['rows_accepted'] for r in ingest):,} rows accepted, "
                  f"{sum(r['rows_rejected'] for r in ingest):,} rejected, "
                  f"{sum(r['rows_duplicate'] for r in ingest):,} already there")
    console.print(night_table(night))
    naive = night.get("naive_mape_pct")
    champion = night.get("champion", {})
    console.print(f"same-weekday two-week rule on the holdout: {naive:.2f}% MAPE; champion: "
                  + (f"v{champion['version']} {champion['mape_pct']:.2f}%" if champion.get("mape_pct") is not None
                     else champion.get("note", "none")))
    console.print(f"promotion: {promotion_sentence(night.get('promotion'))}")
    alerts = summary.get("alerts", [])
    console.print(f"alerts: {len(alerts)} live" + "".join(f"\n  {a['severity']} {a['rule']} on {a['scope']}: {a['message']}"
                                                           for a in alerts[:5])
                  + (" (`shelfcast alerts list`)" if alerts else ""))
    store = summary.get("store") or {}
    if store:
        console.print(f"store {store['store']} ({store['channel']}) on {store['day']}: {store['status']}, serving "
                      f"{'v' + store['serving'] if store.get('serving') else 'nothing yet'} "
                      f"({store['model_bytes']:,} bytes downloaded); {len(store.get('forecasts', []))} forecasts "
                      f"in {store['folder']}")
    served = summary.get("served") or {}
    if served.get("mape_pct") is not None:
        console.print(f"served: {served['stores']} stores over {served['days']} days, MAPE {served['mape_pct']:.2f} % "
                      f"against the actual sales (seasonal-naive rule {served['seasonal_naive_mape_pct']:.2f} %); "
                      f"{served['model_bytes_to_stores']:,} model bytes moved to stores")
    where = Table(title="where to look")
    where.add_column("what")
    where.add_column("address")
    for name, url in summary["where"].items():
        where.add_row(name, url)
    for prefix, count in summary["s3_keys"].items():
        where.add_row(f"s3 {prefix}", f"s3://{summary['where']['bucket'].split('//')[1]}{prefix} ({count} objects)")
    where.add_row("summary", summary["summary_path"])
    console.print(where)
    t = summary["timings"]
    console.print(f"done in {t['total_seconds']:.0f}s (stack {t.get('stack_seconds', 0):.0f}s, ingest "
                  f"{t['ingest_seconds']:.0f}s, retrain {t['retrain_seconds']:.0f}s, stores "
                  f"{t.get('store_seconds', 0):.0f}s). The stack keeps running: "
                  "`shelfcast stack status`, `shelfcast stack down`.")


def promotion_sentence(promotion: dict | None) -> str:
    """The night's decision in one sentence: what was chosen, its MAPE and bytes, and what moved."""
    if not promotion:
        return "not requested"
    decision = promotion.get("decision") or {}
    chosen = decision.get("chosen")
    if not chosen:
        return f"{promotion.get('status', 'nothing promoted')}: {decision.get('reason', 'no candidate passed')}"
    metric = decision.get("metric", "mape_pct")
    value = (chosen.get("metrics") or {}).get(metric)
    moved = [f"{label} -> v{move['version']}" for label in ("canary", "stable")
             if (move := promotion.get(label)) and move.get("moved")]
    return (f"{chosen.get('variant') or chosen['name']} v{chosen['version']} chosen"
            + (f" at {value:.2f}% MAPE" if isinstance(value, (int, float)) else "")
            + (f", {chosen['tflite_bytes']:,} bytes" if chosen.get("tflite_bytes") else "")
            + (f"; {', '.join(moved)}" if moved else "; no channel moved")
            + (f" ({len(decision.get('rejections', []))} rejected)" if decision.get("rejections") else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
    app.add_typer(ingest_app, name="ingest")
    app.command("retrain")(retrain)
    app.command("serve")(serve)
    app.command("run")(run)
