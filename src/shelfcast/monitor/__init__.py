"""Accuracy alerts and drift monitoring for on-call engineers, and the gate that blocks bad promotions.

Pure core: `thresholds` (the validated configuration), `evaluation` (frames of actuals and forecasts, expected
error), `rules` (accuracy rules on candidates and on the live champion), `data_rules` (freshness, input drift).
Adapters: `alert_log` (the SQLite alert log and outbox), `notify` (Slack-compatible webhook), `render` (Markdown,
report PNG). `service` runs a check end to end (the live champion comes from `Tracker.load_champion`); `gate.alert_gate` is the promotion gate (the on-call CLI is `shelfcast.cli.alerts`).
Only `flows/monitor.py` knows about Prefect.
"""
