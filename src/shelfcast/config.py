"""One typed settings object, read from the environment (prefix `SHELFCAST_`) and built once at the entry point.

Nothing here touches the disk or the network at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shelfcast.contract.objects import S3_MAX_ATTEMPTS


class Settings(BaseSettings):
    """Where shelfcast keeps things and how it reaches its services. Every field reads `SHELFCAST_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="SHELFCAST_", extra="ignore")

    home: Path = Field(Path(".shelfcast"), description="local state: stack data, sales store, ledgers, models")

    # S3 (SeaweedFS locally, AWS S3 in production)
    s3_endpoint_url: str | None = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    s3_max_attempts: int = Field(S3_MAX_ATTEMPTS, ge=1, le=10,
                                 description="tries per S3 request in all: the one S3 retry layer (botocore)")
    bucket: str = "shelfcast"
    # Secret keys left unset are generated once per installation into <home>/secrets.json (0600; see
    # `local_secret`): the local stack's identities get them, and so does every client built from these settings.
    trainer_access_key: str = "shelfcast-trainer"
    trainer_secret_key: str | None = None
    store_access_key: str = "shelfcast-store"
    store_secret_key: str | None = None
    uploader_access_key: str = "shelfcast-uploader"
    uploader_secret_key: str | None = None

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

    # The databases of the Prefect server, MLflow's backend and the alert log: SQLite files under `home` unless
    # a PostgreSQL server is named here or `shelfcast stack up --postgres` made one for this home (`database_server`).
    postgres_url: str | None = Field(None, description="PostgreSQL server as postgresql://USER:PASSWORD@HOST:PORT "
                                     "(no database): the three databases below live there")
    prefect_database: str = "prefect"
    mlflow_database: str = "mlflow"
    alerts_database: str = "shelfcast_alerts"

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

    def credentials(self, role: str) -> tuple[str, str]:
        """(access key, secret key) of `trainer`, `store` or `uploader`: the settings when given, else this
        installation's generated secret."""
        if role not in ("trainer", "store", "uploader"):
            raise ValueError(f"no S3 identity {role!r}; choose trainer, store or uploader")
        secret = getattr(self, f"{role}_secret_key") or local_secret(self.home, role)
        return getattr(self, f"{role}_access_key"), secret

    @property
    def signing_keys_dir(self) -> Path:
        return self.keys_dir or self.home / "keys"

    @property
    def local_postgres_file(self) -> Path:
        """Where `stack up --postgres` records the URL of the server it made for this home (0600)."""
        return self.stack_dir / "postgres" / "server.url"

    @property
    def database_server(self) -> str | None:
        """The PostgreSQL server of this installation: `postgres_url`, else the one the local stack made for this
        home (from then on the home's state lives there), else None (SQLite)."""
        if self.postgres_url:
            return self.postgres_url.rstrip("/")
        path = self.local_postgres_file
        return path.read_text().strip() if path.exists() else None

    def database_url(self, name: str, driver: str = "") -> str | None:
        """The URL of database `name` on `database_server` (None without one), with a SQLAlchemy driver
        (`psycopg` for MLflow, `asyncpg` for Prefect) when given."""
        server = self.database_server
        return postgres_database_url(server, name, driver) if server else None

    @property
    def alerts_db(self) -> Path | str:
        """The alert log: its PostgreSQL URL, or the SQLite file `<home>/alerts.db`."""
        return self.database_url(self.alerts_database) or self.home / "alerts.db"


SECRETS_FILE = "secrets.json"


def local_secret(home: Path, role: str) -> str:
    """The secret key of `role` for this installation: read from `<home>/secrets.json`, which is created on
    first use with a fresh random secret per identity, readable by its owner only. Concurrent first uses agree
    (the file is created exclusively, the loser reads the winner's)."""
    import json
    import os
    import secrets

    path = Path(home) / SECRETS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {name: secrets.token_urlsafe(32) for name in ("trainer", "store", "uploader")}
        tmp = path.with_name(f".{SECRETS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
        try:
            os.link(tmp, path)  # fails when another process created it first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return json.loads(path.read_text())[role]


def postgres_database_url(server_url: str, name: str, driver: str = "") -> str:
    """`postgresql://USER:PASSWORD@HOST:PORT` and a database name as one URL, `postgresql+DRIVER://` with a
    driver."""
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{server_url.split('://', 1)[1].rstrip('/')}/{name}"


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
