"""The Prefect automation that tells on-call when the nightly retrain fails, crashes or is late.

`shelfcast automation create` calls `ensure_nightly_automation`: a Webhook block `shelfcast-on-call` holding
the alert webhook (`Settings.alert_webhook_url`), and an automation whose trigger is a flow run of the
`retrain` flow's `retrain-nightly` deployment entering Failed, Crashed or Late, and whose action posts a
Slack-compatible message through that block. Both are found by name and changed in place, so running the
command again updates them and never adds a second. The trigger matches the deployment by name, not by id:
`prefect deploy` after a delete, or `shelfcast serve --replace`, makes the deployment again under a new id,
and the automation must keep matching it.

The Prefect server evaluates the trigger and calls the webhook itself, so this works whoever runs the night
(a worker, `shelfcast serve`) and also when the run never starts (Late: no worker took it).
"""

from __future__ import annotations

from prefect.automations import AutomationCore, CallWebhook, EventTrigger, Posture
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client

AUTOMATION_NAME = "shelfcast: retrain-nightly failed or late"
WEBHOOK_BLOCK = "shelfcast-on-call"
FLOW = "retrain"
DEPLOYMENT = "retrain-nightly"
STATES = ("Failed", "Crashed", "Late")

# Rendered by the server with the triggering event (Jinja); `tojson` keeps quotes in a state message valid JSON.
MESSAGE = (
    '{"text": {{ ("shelfcast ' + DEPLOYMENT + ': flow run " ~ event.resource.name ~ " is "'
    ' ~ (event.event | replace("prefect.flow-run.", ""))'
    ' ~ (": " ~ event.payload.validated_state.message if event.payload.validated_state.message else "")'
    ' ~ (" (no worker started it: is `prefect worker start --pool shelfcast-process` running?)"'
    ' if event.event == "prefect.flow-run.Late" else "")'
    ' ~ " [" ~ event.resource.id ~ "]") | tojson }}}'
)


def nightly_automation(webhook_block_id) -> AutomationCore:
    """The automation (not yet saved): any one matching state change fires it, once per flow run."""
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=f"Posts to the on-call webhook (block {WEBHOOK_BLOCK}) when a {FLOW}/{DEPLOYMENT} flow run "
                    f"enters {', '.join(STATES)}; made by `shelfcast automation create`.",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{state}" for state in STATES},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[
                {"prefect.resource.role": "flow", "prefect.resource.name": FLOW},
                {"prefect.resource.role": "deployment", "prefect.resource.name": DEPLOYMENT},
            ],
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[CallWebhook(block_document_id=webhook_block_id, payload=MESSAGE)],
    )


def ensure_nightly_automation(webhook_url: str) -> tuple[str, bool]:
    """Save the webhook block and create or update the automation; returns (its id, whether it was created).
    Copies of the same name (made by hand in the UI) are deleted, so one is left."""
    block_id = Webhook(url=webhook_url, headers={"Content-Type": "application/json"}).save(
        WEBHOOK_BLOCK, overwrite=True)
    wanted = nightly_automation(block_id)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
        if not existing:
            return str(client.create_automation(wanted)), True
        first, *copies = existing
        client.update_automation(first.id, wanted)
        for copy in copies:
            client.delete_automation(copy.id)
    return str(first.id), False
