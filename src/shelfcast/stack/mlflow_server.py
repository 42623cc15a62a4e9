"""The MLflow tracking server as a local child process: SQLite or PostgreSQL backend, artifacts proxied to S3.

Clients talk HTTP only (`mlflow-artifacts:/` URIs); the server alone holds the S3 credentials and writes the
artifacts under `s3://BUCKET/mlflow/`, and the backend's credentials.
"""

from __future__ import annotations

import sys
from pathlib import Path

from shelfcast.stack.process import Service, http_ok, start_service


def start_mlflow_server(
    data_dir: Path,
    port: int,
    artifacts_destination: str,
    s3_endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = 120.0,
    backend_store_uri: str | None = None,
) -> Service:
    """Start `mlflow server` on 127.0.0.1:`port` and wait until `/health` answers.

    `artifacts_destination` is `s3://BUCKET/PREFIX` (with the S3 endpoint and keys) or a local folder;
    `backend_store_uri` a `postgresql+psycopg://` database, by default `<data_dir>/mlflow.db`.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        *(() if backend_store_uri else ("--backend-store-uri", f"sqlite:///{data_dir / 'mlflow.db'}")),
        "--artifacts-destination", artifacts_destination,
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
    ]
    # The job runner (about 1.8 GB resident) executes MLflow's GenAI jobs, which shelfcast never submits.
    env = {"MLFLOW_S3_ENDPOINT_URL": s3_endpoint_url or "", "AWS_DEFAULT_REGION": "us-east-1",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if backend_store_uri:
        env["MLFLOW_BACKEND_STORE_URI"] = backend_store_uri  # by environment: its password stays off the command line
    if access_key and secret_key:
        env.update({"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key})
    if not s3_endpoint_url:
        env.pop("MLFLOW_S3_ENDPOINT_URL")
    base = f"http://127.0.0.1:{port}"
    return start_service(
        "mlflow",
        argv,
        data_dir / "mlflow-server.log",
        healthy=lambda: http_ok(f"{base}/health", timeout=2.0),
        env=env,
        timeout=timeout,
        urls={"ui": base, "tracking": base},
    )
