"""Every adapter shelfcast runs on, built from `Settings` in one place.

Flows, the CLI and the main job ask here for what they need, so a deployment changes its servers through
`SHELFCAST_*` settings alone and a test can see every adapter the code can build:

- `bucket(settings, role)`: the S3 bucket as one identity sees it (the trainer's by default; `store` is what
  a store device holds).
- `sales(settings)`: the sales table, in that bucket.
- `alert_log(settings)`: the on-call alert log.
- `signer(settings, objects)`: what signs channel moves (`shelfcast.delivery.signing`), None when the bucket
  has no signing keys yet.
- `tracker(settings)`: MLflow runs and registry for the nightly pipeline; `mlflow_client(settings)` the bare client.
"""

from __future__ import annotations

from shelfcast.config import Settings


def bucket(settings: Settings, role: str = "trainer"):
    from shelfcast.contract.objects import ObjectStore

    return ObjectStore.from_settings(settings, role)


def signer(settings: Settings, objects=None):
    from shelfcast.delivery.signing import signer_for

    return signer_for(settings, objects if objects is not None else bucket(settings))


def sales(settings: Settings):
    from shelfcast.data.sales import SalesTable

    return SalesTable(bucket(settings))


def alert_log(settings: Settings):
    from shelfcast.monitor.alert_log import AlertLog

    return AlertLog(settings.alerts_db)


def tracker(settings: Settings):
    from shelfcast.tracking import Tracker

    return Tracker.from_settings(settings)


def mlflow_client(settings: Settings):
    from shelfcast.tracking import mlflow_client

    return mlflow_client(settings.mlflow_tracking_uri)
