"""The whole loop as `make run` runs it: `shelfcast run` on a tiny synthetic panel, in a fresh home, with its own
stack (SeaweedFS, Prefect server, MLflow server) on free ports; from files in `landing/` to MLflow runs and
registered versions; then `shelfcast stack down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shelfcast.config import Settings
from shelfcast.stack.local import LocalStack
from shelfcast.stack.process import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TINY = {"variants": ["lstm8", "lstm8+int8"], "epochs": 1, "window_days": 240, "holdout_days": 28}


def test_shelfcast_run_goes_from_landing_files_to_registered_versions(tmp_path):
    env = {
        **os.environ,
        "SHELFCAST_HOME": str(tmp_path / "home"),
        "SHELFCAST_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "SHELFCAST_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "SHELFCAST_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # the job must find its own server, not a test harness
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    shelfcast = [sys.executable, "-m", "shelfcast.cli"]
    settings = Settings(**{k.removeprefix("SHELFCAST_").lower(): v for k, v in env.items() if k.startswith("SHELFCAST_")})
    try:
        result = subprocess.run(
            shelfcast + ["run", "--stores", "1-2", "--items", "1-2", "--history-days", "300", "--days", "3",
                         "--config", str(config)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "where to look" in result.stdout and "Prefect UI" in result.stdout

        summary = json.loads((tmp_path / "home" / "last-run.json").read_text())
        night = summary["night"]
        assert [v["status"] for v in night["variants"]] == ["ok", "ok"]
        assert len(night["candidates"]) == 2
        assert [r["action"] for r in summary["ingest"]] == ["ingested"] * 4  # history + 3 daily files
        assert summary["s3_keys"]["landing/"] == 4 and summary["s3_keys"]["ledger/"] == 4
        assert summary["s3_keys"]["sales/"] == 301  # 300 daily parts + the catalogue
        assert summary["s3_keys"]["mlflow/"] >= 5  # two .tflite, one .keras, the plot, the summary
        assert night["promotion"] is not None  # handed over to promotion

        from mlflow import MlflowClient

        client = MlflowClient(settings.mlflow_tracking_uri)
        versions = client.search_model_versions(f"name='{settings.registered_model}'")
        assert {v.tags["variant"] for v in versions} == {"LSTM-8", "LSTM-8+INT8"}
        assert all(v.tags.get("candidate") == "true" for v in versions)
        parent = client.get_run(night["parent_run_id"])
        assert parent.data.tags["night_status"] == "complete"

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}):
            with get_client(sync_client=True) as prefect:
                names = [prefect.read_flow(run.flow_id).name for run in prefect.read_flow_runs()]
        assert names.count("ingest") == 4 and names.count("retrain") == 1
    finally:
        subprocess.run(shelfcast + ["stack", "down"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert not any(s["running"] for s in LocalStack(settings).status().values())
