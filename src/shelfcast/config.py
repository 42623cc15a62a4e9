"""One typed settings object, read from the environment (prefix `SHELFCAST_`) and built once at the entry point.

Nothing here touches the disk or the network at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where shelfcast keeps things and how it reaches its services. Every field reads `SHELFCAST_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="SHELFCAST_", extra="ignore")

    home: Path = Field(Path(".shelfcast"), description="local state: stack data, sales store, ledgers, models")

    # S3 (SeaweedFS locally, AWS S3 in production)
    s3_endpoint_url: str | None = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    bucket: str = "shelfcast"
    trainer_access_key: str = "shelfcast-trainer"
    trainer_secret_key: str = "shelfcast-trainer-secret"
    store_access_key: str = "shelfcast-store"
    store_secret_key: str = "shelfcast-store-secret"

    # Signed delivery metadata (shelfcast.delivery.signing)
    keys_dir: Path | None = Field(None, description="online signing keys (targets, snapshot, timestamp); default "
                                  "<home>/keys")
    root_key_file: Path | None = Field(None, description="the offline root key, only for `keys init|rotate`; "
                                       "default <keys_dir>/root.key")
    timestamp_lifetime_s: int = Field(86400, gt=0, description="how long a signed timestamp stays valid: a store "
                                      "calls the channel frozen when nothing re-signed it for this long")

    # MLflow and Prefect
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    prefect_api_url: str = "http://127.0.0.1:4200/api"

    # The model
    registered_model: str = "shelfcast-demand"

    # Alerts (shelfcast.monitor)
    thresholds_file: Path | None = Field(None, description="TOML overriding the packaged alert thresholds")
    alert_webhook_url: str | None = Field(None, description="Slack-compatible webhook for alert notifications")

    # Promotion (shelfcast.device)
    promotion_policy_file: Path | None = Field(
        None, description="JSON or TOML with SelectionPolicy keys (edge budget, bootstrap ceiling, canary time)")

    @property
    def stack_dir(self) -> Path:
        return self.home / "stack"

    @property
    def signing_keys_dir(self) -> Path:
        return self.keys_dir or self.home / "keys"

    @property
    def alerts_db(self) -> Path:
        return self.home / "alerts.db"


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
