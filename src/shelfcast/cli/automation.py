"""`shelfcast automation create`: the Prefect automation that tells on-call about a failed, crashed or late
nightly retrain (`flows/automation.py`), sent to the alert webhook (`SHELFCAST_ALERT_WEBHOOK_URL`).

Run it once per Prefect server, after `prefect deploy` or `shelfcast serve`; running it again updates the
automation in place (a changed webhook, a new version of its trigger) and leaves one.
"""

from __future__ import annotations

from typing import Optional

import typer

from shelfcast.cli._console import USAGE_EXIT, fail, get_console
from shelfcast.config import load_settings

automation_app = typer.Typer(help="Prefect automations on the pipeline's own runs (create).", no_args_is_help=True)


@automation_app.command("create")
def create(webhook_url: Optional[str] = typer.Option(
        None, help="Slack-compatible webhook to post to (default: SHELFCAST_ALERT_WEBHOOK_URL)")) -> None:
    """Create, or update, the automation that posts to on-call when a retrain-nightly run fails, crashes or is
    late."""
    from shelfcast.flows.automation import AUTOMATION_NAME, STATES, WEBHOOK_BLOCK, ensure_nightly_automation
    from shelfcast.flows.serve import use_api

    settings = load_settings()
    url = webhook_url or settings.alert_webhook_url
    if not url:
        fail("no webhook to notify: set SHELFCAST_ALERT_WEBHOOK_URL (the on-call channel's incoming webhook) or "
             "pass --webhook-url", USAGE_EXIT)
    with use_api(settings.prefect_api_url) as on_server:
        if not on_server:
            fail("an automation needs a Prefect server: set SHELFCAST_PREFECT_API_URL to it", USAGE_EXIT)
        automation_id, created = ensure_nightly_automation(url)
    get_console().print(f"{'created' if created else 'updated'} automation {AUTOMATION_NAME!r} ({automation_id}): "
                        f"a retrain-nightly flow run entering {', '.join(STATES)} posts to the webhook of block "
                        f"{WEBHOOK_BLOCK!r}")


def register(app: typer.Typer) -> None:
    app.add_typer(automation_app, name="automation")
