"""Notifications: Slack-compatible webhook messages, sent from the outbox with retries.

A message is built when the alert log queues it (`notification_payload`), so the outbox row holds exactly
what will be sent even if the alert changes later. `deliver_pending` claims due rows, posts each one, and marks
it delivered, retried later (network errors, HTTP 429 and 5xx, with exponential backoff) or dead (other 4xx,
or `max_attempts` reached; kept and listed by `shelfcast alerts outbox`). Delivery is at least once: a process
that dies after the POST and before marking the row resends it, with the same `Idempotency-Key` header
(`shelfcast-<outbox id>`) so a receiver can drop the duplicate.

The body is plain Slack incoming-webhook JSON (`text` plus `blocks`); Mattermost, Rocket.Chat and Teams'
Slack-compatible endpoints accept it too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shelfcast.contract import clock
from shelfcast.contract.clock import parse
from shelfcast.contract.errors import ShelfcastError
from shelfcast.monitor.findings import response_text
from shelfcast.monitor.thresholds import AlertPolicy

ICON = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
HEADLINE = {"fired": "FIRING", "reopened": "FIRING AGAIN", "reminder": "STILL FIRING", "resolved": "RESOLVED"}


def _fmt(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.3g}"


def notification_payload(alert, kind: str) -> dict:
    """Slack-compatible JSON for one alert event (`fired`, `reopened`, `reminder`, `resolved`)."""
    headline = HEADLINE[kind]
    icon = ":white_check_mark:" if kind == "resolved" else ICON.get(alert.severity, "")
    title = f"{icon} [{headline}] {alert.severity} {alert.rule}: {alert.scope_label}"
    links = []
    if alert.mlflow_url or alert.mlflow_run_id:
        links.append(f"<{alert.mlflow_url}|MLflow run>" if alert.mlflow_url else f"MLflow run `{alert.mlflow_run_id}`")
    if alert.prefect_url or alert.prefect_flow_run_id:
        links.append(
            f"<{alert.prefect_url}|Prefect flow run>" if alert.prefect_url else f"Prefect flow run `{alert.prefect_flow_run_id}`"
        )
    facts = [
        f"*Observed:* {_fmt(alert.observed)} {alert.unit}",
        f"*Threshold:* {_fmt(alert.threshold)} {alert.unit}",
        f"*Since:* {alert.first_seen}",
        f"*Seen:* {alert.count} time(s), last {alert.last_seen}",
    ]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:2900]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Response:* " + (
            "the condition cleared" if kind == "resolved"
            else response_text(alert.rule, alert.subject, alert.severity, alert.scope_label))}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in facts]},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"alert {alert.id} · {alert.subject} · fingerprint `{alert.fingerprint}` · "
                    + (" · ".join(links) if links else "no run links")
                    + f" · `shelfcast alerts ack {alert.id}`",
                }
            ],
        },
    ]
    return {"text": f"{title}: {alert.message}"[:3000], "blocks": blocks}


class DeliveryFailed(ShelfcastError, RuntimeError):
    """A webhook POST failed; `permanent` when retrying cannot help (e.g. HTTP 404 for a revoked webhook)."""

    def __init__(self, message: str, attempts: int, permanent: bool):
        super().__init__(message)
        self.attempts = attempts
        self.permanent = permanent


class DeliveryUnconfirmed(ShelfcastError, RuntimeError):
    """The POST was sent but no answer came in time: the receiver may have it. Sending it again could post the
    alert twice (most chat webhooks ignore `Idempotency-Key`), so it is not resent."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


class WebhookSender:
    """POST JSON to one webhook URL with retries when the receiver did not take it (no connection, 429, 5xx).
    A POST whose answer does not come within `timeout_s` is not retried (`DeliveryUnconfirmed`)."""

    def __init__(self, url: str, timeout_s: float = 10.0, attempts: int = 4, backoff_s: float = 0.5, sleep=time.sleep):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r} must start with http:// or https://")
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep

    def send(self, payload: dict, key: str) -> tuple[int, str]:
        """Returns (attempts used, status text); raises DeliveryFailed after the last attempt."""
        body = json.dumps(payload).encode()
        error = "not attempted"
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "shelfcast-alerts"},
            )
            wait = self.backoff_s * 2 ** (attempt - 1)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return attempt, f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} from {self.url}: {exc.read()[:200].decode(errors='replace')}"
                if exc.code != 429 and exc.code < 500:
                    raise DeliveryFailed(error + "; check the webhook URL and payload", attempt, permanent=True) from None
                retry_after = exc.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), 30.0)
            except TimeoutError:  # sent, then no answer in time (a connect timeout arrives as URLError)
                raise DeliveryUnconfirmed(
                    f"no answer from {self.url} within {self.timeout_s:g} s after sending; not resent, so the alert "
                    "is not posted twice", attempt) from None
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                error = f"{type(exc).__name__} posting to {self.url}: {getattr(exc, 'reason', exc)}"
            if attempt < self.attempts:
                self.sleep(wait)
        raise DeliveryFailed(error, self.attempts, permanent=False)


@dataclass
class DeliveryReport:
    delivered: list[int] = field(default_factory=list)  # outbox ids
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # their alert resolved before they could be sent
    held: list[int] = field(default_factory=list)  # no webhook configured yet: sent once one is
    unconfirmed: list[int] = field(default_factory=list)  # sent, no answer in time: not resent
    errors: list[str] = field(default_factory=list)


def deliver_pending(alert_log, sender: WebhookSender | None, policy: AlertPolicy, now=None) -> DeliveryReport:
    """Send every due outbox message once. Without a sender (no webhook configured) messages are held, and a
    webhook configured later receives those whose alert is still open; one whose alert resolved meanwhile is
    skipped, so a new webhook is not flooded with old news."""
    report = DeliveryReport()
    if sender is None:
        report.held = [row["id"] for row in alert_log.outbox() if row["dead_at"] is None]
        return report
    for message in alert_log.claim_outbox(now):
        if alert_log.get(message.alert_id).status == "resolved":
            alert_log.mark_delivered(message, 0, "not sent: the alert resolved before it could be sent",
                                     event="notify_skipped", now=now)
            report.skipped.append(message.id)
            continue
        try:
            attempts, status = sender.send(message.payload, key=f"shelfcast-{message.id}")
        except DeliveryUnconfirmed as exc:
            alert_log.mark_delivered(message, exc.attempts, f"unconfirmed: {exc}", event="notify_unconfirmed", now=now)
            report.unconfirmed.append(message.id)
            report.errors.append(f"outbox {message.id}: {exc}")
            continue
        except DeliveryFailed as exc:
            total = message.attempts + exc.attempts
            dead = exc.permanent or total >= policy.max_attempts
            retry_at = _moment(now) + timedelta(seconds=min(policy.backoff_s * 2**total, 3600.0))
            alert_log.mark_failed(message, exc.attempts, str(exc), retry_at, dead, now=now)
            (report.dead if dead else report.retrying).append(message.id)
            report.errors.append(f"outbox {message.id}: {exc}")
            continue
        alert_log.mark_delivered(message, attempts, status, now=now)
        report.delivered.append(message.id)
    return report


def _moment(now) -> datetime:

    return parse(now) if now is not None else clock.now()
