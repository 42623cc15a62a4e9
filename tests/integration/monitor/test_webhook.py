"""Webhook delivery against a real HTTP receiver on 127.0.0.1, retries, and a process that dies between detection
and delivery (a real child process killed with `os._exit`, nothing mocked). The alert log is the session's
engine's (`alert_db`: SQLite, or PostgreSQL under `SHELFCAST_TEST_DATABASE=postgres`)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from shelfcast.monitor import service
from shelfcast.monitor.notify import WebhookSender, deliver_pending
from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.thresholds import load_thresholds
from shelfcast.stack.process import free_port

pytestmark = pytest.mark.integration

THRESHOLDS = load_thresholds()
POLICY = THRESHOLDS.alerts
NOW = datetime(2017, 3, 2, 3, 0, 0)


class Receiver:
    """A Slack-like webhook endpoint: records every POST and answers from a script of status codes (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict]] = []
        self.delay_s = 0.0  # answer this late (after reading the request), as a slow receiver does
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                time.sleep(receiver.delay_s)
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def store(alert_db):
    return AlertLog(alert_db)


def bad_candidate(version=7, name="lstm16-int8"):
    return SimpleNamespace(name=name, version=version, run_id=f"run-{version}",
                           metrics={"mape_pct": 18.0, "parent_mape_pct": 16.0, "naive_mape_pct": 16.7})


def no_sleep(_seconds):
    pass


def test_a_new_alert_reaches_the_webhook_as_slack_json(store, receiver):
    service.check_candidates(store, THRESHOLDS, [bad_candidate()], now=NOW)
    report = deliver_pending(store, WebhookSender(receiver.url, sleep=no_sleep), POLICY, now=NOW)
    assert report.delivered == [1] and report.errors == []
    [request] = receiver.requests
    assert request["path"] == "/hooks/T000/B000"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Idempotency-Key"] == "shelfcast-1"
    body = request["json"]
    assert set(body) == {"text", "blocks"}
    assert "[FIRING] critical int8_drop: lstm16-int8 v7" in body["text"]
    assert "promotion of lstm16-int8 v7 is blocked" in json.dumps(body["blocks"])
    assert store.events(1)[-1]["kind"] == "notified"
    assert deliver_pending(store, WebhookSender(receiver.url), POLICY, now=NOW).delivered == []
    assert len(receiver.requests) == 1


def test_server_errors_and_rate_limits_are_retried(store, receiver):
    receiver.script = [(500, {}), (429, {"Retry-After": "0"}), (503, {})]
    waits = []
    service.check_candidates(store, THRESHOLDS, [bad_candidate()], now=NOW)
    report = deliver_pending(store, WebhookSender(receiver.url, attempts=4, backoff_s=0.01, sleep=waits.append),
                             POLICY, now=NOW)
    assert report.delivered == [1]
    assert len(receiver.requests) == 4 and waits == [0.01, 0.0, 0.04]
    assert store.outbox(pending_only=False)[0]["attempts"] == 4


def test_a_refused_webhook_is_not_retried_and_is_kept(store, receiver):
    receiver.script = [(404, {})]
    service.check_candidates(store, THRESHOLDS, [bad_candidate()], now=NOW)
    report = deliver_pending(store, WebhookSender(receiver.url, sleep=no_sleep), POLICY, now=NOW)
    assert report.dead == [1] and "HTTP 404" in report.errors[0]
    assert len(receiver.requests) == 1
    row = store.outbox()[0]
    assert row["dead_at"] and "check the webhook URL" in row["last_error"]


def test_a_receiver_that_is_down_gets_the_message_when_it_is_back(store, receiver):
    service.check_candidates(store, THRESHOLDS, [bad_candidate()], now=NOW)
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    first = deliver_pending(store, WebhookSender(down, attempts=2, timeout_s=1, sleep=no_sleep), POLICY, now=NOW)
    assert first.retrying == [1] and "Connection refused" in first.errors[0]
    row = store.outbox()[0]
    assert row["attempts"] == 2 and row["next_attempt_at"] > row["created_at"]
    sender = WebhookSender(receiver.url, sleep=no_sleep)
    assert deliver_pending(store, sender, POLICY, now=NOW).delivered == []  # not due yet: backoff
    assert deliver_pending(store, sender, POLICY, now=NOW + timedelta(hours=1)).delivered == [1]
    assert len(receiver.requests) == 1


CHILD = textwrap.dedent(
    """
    import os, sys
    from types import SimpleNamespace
    from shelfcast.monitor import service
    from shelfcast.monitor.alert_log import AlertLog
    from shelfcast.monitor.thresholds import load_thresholds

    store = AlertLog(sys.argv[1])
    bad = SimpleNamespace(name="lstm16-int8", version=7, run_id="run-7",
                          metrics={"mape_pct": 18.0, "parent_mape_pct": 16.0})
    service.check_candidates(store, load_thresholds(), [bad], now="2017-03-02T03:00:00")
    if sys.argv[2] == "after-post":
        from shelfcast.monitor.notify import WebhookSender
        [message] = store.claim_outbox(now="2017-03-02T03:00:00")
        WebhookSender(sys.argv[3]).send(message.payload, key=f"shelfcast-{message.id}")
    os._exit(9)  # dies here: no delivery bookkeeping, no cleanup
    """
)


def run_child(db, mode: str, url: str = "") -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(db), mode, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr


def test_a_crash_between_detection_and_delivery_loses_nothing(alert_db, receiver):
    db = alert_db
    run_child(db, "before-delivery")
    assert receiver.requests == []
    store = AlertLog(db)
    assert store.get(1).status == "open" and len(store.outbox()) == 1
    report = deliver_pending(store, WebhookSender(receiver.url, sleep=no_sleep), POLICY, now=NOW)
    assert report.delivered == [1]
    assert len(receiver.requests) == 1 and "int8_drop" in receiver.requests[0]["json"]["text"]
    assert deliver_pending(store, WebhookSender(receiver.url), POLICY, now=NOW + timedelta(hours=1)).delivered == []


def test_a_crash_after_the_post_resends_with_the_same_idempotency_key(alert_db, receiver):
    db = alert_db
    run_child(db, "after-post", receiver.url)
    assert len(receiver.requests) == 1
    store = AlertLog(db)
    sender = WebhookSender(receiver.url, sleep=no_sleep)
    assert deliver_pending(store, sender, POLICY, now=NOW).delivered == []  # the dead run's claim still holds
    assert deliver_pending(store, sender, POLICY, now=NOW + timedelta(minutes=5)).delivered == [1]
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert keys == ["shelfcast-1", "shelfcast-1"]


def test_a_slow_webhook_that_answers_after_the_timeout_gets_the_alert_once(store, receiver):
    """The receiver takes the POST and answers 200 after the client gave up: resending would post it twice."""
    service.check_candidates(store, THRESHOLDS, [bad_candidate()], now=NOW)
    receiver.delay_s = 1.5
    sender = WebhookSender(receiver.url, timeout_s=0.5, attempts=4, sleep=no_sleep)
    first = deliver_pending(store, sender, POLICY, now=NOW)
    assert (first.delivered, first.unconfirmed, first.retrying) == ([], [1], [])
    later = deliver_pending(store, sender, POLICY, now=NOW + timedelta(hours=2))
    assert later.delivered == later.unconfirmed == later.retrying == []
    time.sleep(1.2)  # let the slow handler finish
    assert len(receiver.requests) == 1
    assert any(e["kind"] == "notify_unconfirmed" for e in store.events(1))


def test_alerts_raised_without_a_webhook_are_held_and_sent_once_one_is_configured(store, receiver):
    service.check_candidates(store, THRESHOLDS, [bad_candidate(7), bad_candidate(8, "lstm8-int8")], now=NOW)
    held = deliver_pending(store, None, POLICY, now=NOW)
    assert held.held == [1, 2] and held.delivered == [] and len(store.outbox()) == 2
    store.resolve(2, "ana", "fixed before anyone was told", now=NOW + timedelta(minutes=5))
    report = deliver_pending(store, WebhookSender(receiver.url, sleep=no_sleep), POLICY, now=NOW + timedelta(minutes=10))
    assert (report.delivered, report.skipped) == ([1], [2])
    assert len(receiver.requests) == 1 and "alert 1 \u00b7" in json.dumps(receiver.requests[0]["json"], ensure_ascii=False)
    assert store.outbox() == []


def test_two_delivery_runs_at_once_send_each_message_once(alert_db, tmp_path, receiver):
    """Two processes claim the same outbox at the same moment (a barrier file releases both), three rounds."""
    db = alert_db
    log = AlertLog(db)
    for round_number in range(3):
        version = 10 + round_number
        service.check_candidates(log, THRESHOLDS, [bad_candidate(version, f"model-{round_number}")],
                                 now=NOW + timedelta(hours=round_number))
        go = tmp_path / f"go-{round_number}"
        children = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(db), receiver.url, str(go), NOW.isoformat()])
                    for _ in range(2)]
        time.sleep(1.0)
        go.touch()
        assert [child.wait(timeout=120) for child in children] == [0, 0]
    assert len(receiver.requests) == 3 and len(set(r["headers"]["Idempotency-Key"] for r in receiver.requests)) == 3
    assert log.outbox() == []


CLAIMER = textwrap.dedent("""
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from shelfcast.monitor.alert_log import AlertLog
    from shelfcast.monitor.notify import WebhookSender, deliver_pending
    from shelfcast.monitor.thresholds import load_thresholds

    db, url, go, now = sys.argv[1], sys.argv[2], Path(sys.argv[3]), datetime.fromisoformat(sys.argv[4])
    log = AlertLog(db)
    while not go.exists():
        time.sleep(0.005)
    deliver_pending(log, WebhookSender(url), load_thresholds().alerts, now=now.replace(hour=23))
""")
