"""`shelfcast alerts list|show|ack|resolve|outbox|deliver` and `shelfcast report`: the on-call front door."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Optional

import typer

from shelfcast.cli._console import fail, get_console

STATUS_CHOICES = {"live": ("open", "acknowledged"), "open": ("open",), "acknowledged": ("acknowledged",),
                  "resolved": ("resolved",), "all": ("open", "acknowledged", "resolved")}
COLOUR = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
DB_HELP = "an alert log file (SQLite); default: the settings' alert log (on SHELFCAST_POSTGRES_URL's server when set)"


def _alert_log(db: Optional[Path]):
    from shelfcast import wiring
    from shelfcast.config import load_settings
    from shelfcast.monitor.alert_log import AlertLog

    return AlertLog(db) if db else wiring.alert_log(load_settings())


def _alerts_table(alerts, title: str):
    from rich.table import Table

    from shelfcast.monitor.render import alert_rows

    table = Table(title=title, show_lines=False)
    for column in ("id", "severity", "rule", "scope", "observed", "threshold", "since (UTC)", "count", "status", "what"):
        table.add_column(column, overflow="fold", justify="right" if column in ("id", "count", "observed", "threshold") else "left")
    for alert, row in zip(alerts, alert_rows(alerts, markdown_links=False)):
        style = COLOUR.get(alert.severity, "")
        table.add_row(row[0], f"[{style}]{row[1]}[/{style}]" if style else row[1], *row[2:10])
    return table


def register(app: typer.Typer) -> None:
    from shelfcast.contract.errors import ShelfcastError

    alerts = typer.Typer(help="Accuracy and data alerts: list, inspect, acknowledge, resolve.", no_args_is_help=True)
    app.add_typer(alerts, name="alerts")

    @alerts.command("list")
    def list_(
        status: str = typer.Option("live", help="live (open + acknowledged), open, acknowledged, resolved or all"),
        severity: str = typer.Option("info", help="lowest severity shown: info, warning or critical"),
        rule: Optional[str] = typer.Option(None, help="only this rule, e.g. live_accuracy"),
        limit: int = typer.Option(50, min=1, help="at most this many rows"),
        db: Optional[Path] = typer.Option(None, help=DB_HELP),
    ) -> None:
        """Alerts, most severe first, then most recently seen."""

        from shelfcast.monitor.thresholds import SEVERITIES

        if status not in STATUS_CHOICES:
            fail(f"--status {status!r}; choose one of {', '.join(STATUS_CHOICES)}")
        if severity not in SEVERITIES:
            fail(f"--severity {severity!r}; choose one of {', '.join(SEVERITIES)}")
        found = _alert_log(db).list(STATUS_CHOICES[status], severity, rule, limit)
        console = get_console(width=160)
        if not found:
            console.print(f"No {status} alerts at or above {severity}.")
            return
        console.print(_alerts_table(found, f"{len(found)} {status} alert(s)"))

    @alerts.command("show")
    def show(alert_id: int = typer.Argument(..., help="alert id"), db: Optional[Path] = typer.Option(None, help=DB_HELP)) -> None:
        """One alert in full: what, where, since when, its links and its history."""
        from rich.table import Table

        store = _alert_log(db)
        try:
            alert = store.get(alert_id)
        except ShelfcastError as exc:
            fail(exc)
        console = get_console(width=140)
        facts = Table(title=f"alert {alert.id}: {alert.severity} {alert.rule} on {alert.scope_label}", show_header=False)
        facts.add_column("field", style="bold")
        facts.add_column("value", overflow="fold")
        for name in ("status", "message", "subject", "scope_label", "model", "model_version", "observed", "threshold",
                     "unit", "first_seen", "last_seen", "count", "acknowledged_by", "acknowledged_at", "resolved_by",
                     "resolved_at", "note", "last_notified_at", "mlflow_run_id", "mlflow_url", "prefect_flow_run_id",
                     "prefect_url", "fingerprint"):
            value = getattr(alert, name)
            if value is not None:
                facts.add_row(name, str(value))
        if alert.context:
            facts.add_row("context", json.dumps(alert.context, default=str))
        console.print(facts)
        history = Table(title="history")
        for column in ("at (UTC)", "event", "by", "detail"):
            history.add_column(column, overflow="fold")
        for event in store.events(alert_id):
            history.add_row(event["at"], event["kind"], event["actor"], event["detail"])
        console.print(history)

    def _transition(action: str, alert_id: int, by: Optional[str], note: str, db: Optional[Path]) -> None:

        store = _alert_log(db)
        try:
            alert = getattr(store, action)(alert_id, by or getpass.getuser(), note)
        except ShelfcastError as exc:
            fail(exc)
        get_console().print(f"alert {alert.id} ({alert.rule} on {alert.scope_label}) is now [bold]{alert.status}[/bold]")

    @alerts.command("ack")
    def ack(
        alert_id: int = typer.Argument(..., help="alert id"),
        by: Optional[str] = typer.Option(None, help="who (default: the login name)"),
        note: str = typer.Option("", help="what you are doing about it"),
        db: Optional[Path] = typer.Option(None, help=DB_HELP),
    ) -> None:
        """Acknowledge: someone is on it; no more reminders. An alert of a blocking rule still blocks promotion."""
        _transition("acknowledge", alert_id, by, note, db)

    @alerts.command("resolve")
    def resolve(
        alert_id: int = typer.Argument(..., help="alert id"),
        by: Optional[str] = typer.Option(None, help="who (default: the login name)"),
        note: str = typer.Option("", help="why it is resolved"),
        db: Optional[Path] = typer.Option(None, help=DB_HELP),
    ) -> None:
        """Resolve by hand. If the condition still holds, the next check opens it again."""
        _transition("resolve", alert_id, by, note, db)

    @alerts.command("outbox")
    def outbox(
        all_: bool = typer.Option(False, "--all", help="also delivered messages"),
        db: Optional[Path] = typer.Option(None, help=DB_HELP),
    ) -> None:
        """Notifications waiting for delivery, retrying, or given up on (dead)."""
        from rich.table import Table

        rows = _alert_log(db).outbox(pending_only=not all_)
        table = Table(title=f"{len(rows)} notification(s)")
        for column in ("id", "alert", "kind", "created", "attempts", "next attempt", "delivered", "dead", "last error"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(str(r["id"]), str(r["alert_id"]), r["kind"], r["created_at"], str(r["attempts"]),
                          r["next_attempt_at"], r["delivered_at"] or "", r["dead_at"] or "", r["last_error"] or "")
        get_console(width=160).print(table)

    @alerts.command("deliver")
    def deliver_(
        webhook: Optional[str] = typer.Option(None, help="webhook URL; default $SHELFCAST_ALERT_WEBHOOK_URL"),
        thresholds: Optional[Path] = typer.Option(None, help="thresholds TOML; default $SHELFCAST_THRESHOLDS_FILE"),
        db: Optional[Path] = typer.Option(None, help=DB_HELP),
    ) -> None:
        """Send the queued notifications now (the flows do this after every check)."""

        from shelfcast.config import Settings
        from shelfcast.monitor.service import deliver
        from shelfcast.monitor.thresholds import load_thresholds

        settings = Settings()
        try:
            report = deliver(_alert_log(db), load_thresholds(thresholds or settings.thresholds_file),
                             webhook or settings.alert_webhook_url)
        except ShelfcastError as exc:
            fail(exc)
        get_console().print(f"delivered {len(report.delivered)}, unconfirmed {len(report.unconfirmed)}, retrying "
                            f"{len(report.retrying)}, dead {len(report.dead)}, skipped {len(report.skipped)} "
                            "(alert resolved first)")
        if report.held:
            get_console().print(f"held {len(report.held)}: no webhook is configured; set SHELFCAST_ALERT_WEBHOOK_URL "
                                "(or --webhook) and they are sent while their alert is open")
        for error in report.errors:
            get_console(stderr=True).print(f"[yellow]{error}[/yellow]")

    @app.command("report")
    def report(
        out: Path = typer.Option(Path("reports/alerts"), help="folder for mape_by_store.png and the summary"),
        format: str = typer.Option("md", "--format", help="summary format: md or html"),
        since: Optional[str] = typer.Option(None, help="first day plotted, YYYY-MM-DD"),
        db: Optional[Path] = typer.Option(None, help=DB_HELP),
    ) -> None:
        """A PNG of the live champion's MAPE over time per store against its threshold, and a summary."""

        from shelfcast.monitor.render import write_report

        try:
            paths = write_report(_alert_log(db), out, format, since)
        except (ShelfcastError, ValueError) as exc:
            fail(exc)
        for path in paths:
            get_console().print(f"wrote {path}")
        if len(paths) == 1:
            get_console().print("no accuracy measured yet: the PNG appears after the first live check")
