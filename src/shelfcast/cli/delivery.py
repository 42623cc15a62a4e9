"""Trainer-side commands: `shelfcast promote`, `shelfcast rollback`, `shelfcast channels`.

They act with the trainer's S3 identity and move the MLflow alias of the channel with the pointer (`--no-mlflow`
when MLflow is down: the pointer is the truth, the next promotion or `channels --reconcile` repairs the alias).
Who acts is `SHELFCAST_ACTOR` or user@host, unless `--actor` says otherwise; it is written to the promotion log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from shelfcast import wiring
from shelfcast.cli._console import fail, get_console
from shelfcast.config import load_settings
from shelfcast.delivery.publish import CANARY

ALIASES_HELP = "move the channel's MLflow alias too (stable -> champion, canary -> canary)"


def _objects(settings):
    return wiring.bucket(settings)


def _report(result) -> None:
    console = get_console()
    colour = "green" if result.moved else "yellow"
    console.print(f"[{colour}]{result.message}[/{colour}]")
    if result.alias:
        console.print(f"MLflow alias {result.alias!r}: " + (f"[red]{result.alias_error}[/red]" if result.alias_error
                                                             else f"now version {result.version}"))
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]")


def promote(
    version: str = typer.Option(..., "--version", help="the published version to promote"),
    channel: str = typer.Option(CANARY, help="channel to move (stable needs time served on canary)"),
    name: Optional[str] = typer.Option(None, help="registered model name (default SHELFCAST_REGISTERED_MODEL)"),
    force: bool = typer.Option(False, "--force", help="skip the selection rules (never the integrity checks)"),
    reason: str = typer.Option("", help="why; required with --force, written to the promotion log"),
    actor: Optional[str] = typer.Option(None, help="who promotes (default SHELFCAST_ACTOR or user@host)"),
    policy_file: Optional[Path] = typer.Option(None, "--policy", help="JSON/TOML selection policy "
                                               "(default SHELFCAST_PROMOTION_POLICY_FILE)"),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help=ALIASES_HELP),
) -> None:
    """Move a channel to a published version: it must exist, match its checksum and load; without --force it
    must also fit the edge budget, pass the gates, and (for stable) have served on canary."""
    from shelfcast.delivery.channels import PromotionRefused
    from shelfcast.delivery.publish import actor_name, promote_version
    from shelfcast.delivery.selection import load_policy
    from shelfcast.contract.errors import ConfigError, PromotionConflict, ShelfcastError

    settings = load_settings()
    who = actor or actor_name()
    try:
        gates = _gates(settings, force, reason, who)
        objects = _objects(settings)
        result = promote_version(
            objects, channel, name or settings.registered_model, version, actor=who, reason=reason,
            force=force, policy=load_policy(policy_file or settings.promotion_policy_file), gates=gates,
            registry=_mlflow_registry(settings, mlflow, name), signer=_signer(settings, objects),
        )
    except (PromotionRefused, PromotionConflict, ConfigError, ValueError, ShelfcastError) as exc:
        fail(exc)
    _report(result)


def rollback(
    channel: str = typer.Option(..., help="channel to roll back"),
    to: Optional[str] = typer.Option(None, "--to", help="version to return to (default: the previous good one)"),
    reason: str = typer.Option("", help="why, written to the promotion log"),
    actor: Optional[str] = typer.Option(None, help="who rolls back (default SHELFCAST_ACTOR or user@host)"),
    name: Optional[str] = typer.Option(None, help="registered model name (default SHELFCAST_REGISTERED_MODEL)"),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help=ALIASES_HELP),
) -> None:
    """Move a channel back to an earlier version after checking it exists, matches its checksum and loads."""
    from shelfcast.delivery.channels import PromotionRefused
    from shelfcast.delivery.rollback import rollback as roll_back
    from shelfcast.contract.errors import PromotionConflict, ShelfcastError

    settings = load_settings()
    try:
        objects = _objects(settings)
        result = roll_back(objects, channel, to, actor=actor, reason=reason,
                           registry=_mlflow_registry(settings, mlflow, name), signer=_signer(settings, objects))
    except (PromotionRefused, PromotionConflict, ShelfcastError) as exc:
        fail(exc)
    _report(result)


def channels(
    channel: list[str] = typer.Option(["canary", "stable"], "--channel", help="channels to show"),
    history: int = typer.Option(5, help="log entries to show per channel"),
    reconcile: bool = typer.Option(False, "--reconcile", help="set every MLflow alias to its channel's pointer"),
) -> None:
    """What each channel serves, its latest moves (who, why), whether stores can follow it (its pointer signed,
    the signed metadata still fresh: an expired timestamp is a frozen channel), and whether the MLflow aliases
    agree. Exits 1 when a channel is frozen or unsigned."""
    from rich.table import Table

    from shelfcast.delivery.publish import channel_status, reconcile_aliases
    from shelfcast.delivery.signing import signature_status

    settings = load_settings()
    objects, console = _objects(settings), get_console()
    if reconcile:
        for line in reconcile_aliases(objects, _mlflow_registry(settings, True)) or ["aliases already agree"]:
            console.print(line)
    alarms = 0
    for name in channel:
        status = channel_status(objects, name, history)
        signed = signature_status(objects, name)
        colour = "green" if signed.ok else "red"
        console.print(f"[{colour}]{signed.line()}[/{colour}]")
        alarms += 0 if signed.ok else 1
        table = Table(title=f"channel {name}: {status.version or 'no version yet'}")
        for column in ("#", "version", "action", "at (UTC)", "by", "reason"):
            table.add_column(column)
        for entry in reversed(status.history):
            table.add_row(str(entry.seq), entry.version, entry.action, entry.moved_at, entry.actor, entry.reason)
        console.print(table)
    if alarms:
        raise typer.Exit(1)


def _signer(settings, objects):
    signer = wiring.signer(settings, objects)
    if signer is None:
        get_console().print(f"[yellow]warning:[/yellow] s3://{settings.bucket}/metadata/ has no signing keys: stores "
                         "follow no move until `shelfcast keys init`")
    return signer


def _mlflow_registry(settings, use_mlflow: bool, name: str | None = None):
    if not use_mlflow:
        return None
    from shelfcast.delivery.registry import MlflowRegistry

    return MlflowRegistry(wiring.mlflow_client(settings), name or settings.registered_model)


def _gates(settings, force: bool, reason: str, actor: str) -> list:
    """The alert gate; with --force it records the override on each blocking alert instead of blocking."""
    from shelfcast.monitor.gate import alert_gate
    from shelfcast.monitor.thresholds import load_thresholds

    return [alert_gate(wiring.alert_log(settings), load_thresholds(settings.thresholds_file),
                       force_reason=reason if force else None, actor=actor)]


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    app.command("channels")(channels)
