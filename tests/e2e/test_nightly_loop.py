"""The whole loop as `make run` runs it: `shelfcast run` on a tiny synthetic panel, in a fresh home, with its own
stack (SeaweedFS, Prefect server, MLflow server) on free ports; from files in `landing/` to MLflow runs and
registered versions; then `shelfcast stack down`."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
import subprocess
from pathlib import Path

import pytest

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.stack.local import LocalStack
from shelfcast.stack.process import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# The main job as `make run` runs it (its default panel, history and the quick preset: a first model that beats
# the seasonal-naive rule, as the bootstrap requires), with two variants instead of three.
TINY = {"variants": ["lstm8", "lstm8+int8"]}
HISTORY_DAYS = 730


def _trainer_keys(settings) -> tuple[str, str]:
    return settings.credentials("trainer")


def test_shelfcast_run_goes_from_landing_files_to_registered_versions(installed_shelfcast, tmp_path):
    """Run as a user runs it: shelfcast installed from its wheel (not this checkout), from another folder."""
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
    env.pop("PYTHONPATH", None)
    shelfcast = [str(installed_shelfcast[0]), "-m", "shelfcast.cli"]
    settings = Settings(**{k.removeprefix("SHELFCAST_").lower(): v for k, v in env.items() if k.startswith("SHELFCAST_")})
    try:
        result = subprocess.run(
            shelfcast + ["run", "--history-days", str(HISTORY_DAYS), "--days", "3", "--config", str(config)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "where to look" in result.stdout and "Prefect UI" in result.stdout

        summary = json.loads((tmp_path / "home" / "last-run.json").read_text())
        night = summary["night"]
        assert [v["status"] for v in night["variants"]] == ["ok", "ok"]
        assert len(night["candidates"]) == 2
        assert [r["action"] for r in summary["ingest"]] == ["ingested"] * 4  # history + 3 daily files
        assert summary["s3_keys"]["landing/"] == 0 and summary["s3_keys"]["ledger/files/"] == 4
        assert summary["s3_keys"]["archive/"] == 4  # every ingested file moved out of landing/
        assert summary["s3_keys"]["tables/sales/"] > 0  # the Delta table's data files and log
        from shelfcast.data.sales import SalesTable

        assert SalesTable(wiring.bucket(settings)).verify()[1] == []  # every key once
        assert summary["s3_keys"]["mlflow/"] >= 5  # two .tflite, one .keras, the plot, the summary

        # Promotion ran to its end: the chosen candidate is on canary, the pointer names a published version whose
        # manifest matches the file, and a store with the store identity serves it and forecasts tomorrow.
        promotion = night["promotion"]
        chosen = promotion["decision"]["chosen"]
        assert promotion["status"] == "promoted", promotion
        assert promotion["canary"]["moved"] and promotion["canary"]["version"] == chosen["version"]
        store = summary["store"]
        assert (store["status"], store["serving"]) == ("updated", chosen["version"])
        assert store["model_bytes"] == chosen["tflite_bytes"]
        assert [f["item"] for f in store["forecasts"]] == list(range(1, 11)) and all(f["sales"] > 0 for f in store["forecasts"])
        # What the stores were served: five stores, three days, scored against what they sold; the model crossed
        # the wire once per store, on the day the stable channel followed canary.
        served = summary["served"]
        assert served["days"] == 3 and served["stores"] == 5
        assert [d["n"] for d in served["daily"]] == [50, 50, 50]
        assert summary["served"]["noise_floor_pct"] < served["mape_pct"] < 30
        assert served["model_bytes_to_stores"] == 5 * chosen["tflite_bytes"]
        # The replay's own clock: ingesting past days raises no freshness alert, nor any other.
        assert summary["alerts"] == []

        # What a user sees: a short console, none of the libraries' start-up noise (that is in the log file).
        lines = result.stdout.splitlines()
        assert len(lines) < 60, result.stdout
        noise = ("cuInit", "oneDNN", "XNNPACK", "absl", "tensorflow", "it/s]", "Traceback")
        assert not [line for line in lines + result.stderr.splitlines() if any(n in line for n in noise)]
        assert "promotion: LSTM-8" in result.stdout and "serving v" + chosen["version"] in result.stdout
        assert "Beginning flow run" in (tmp_path / "home" / "logs" / "run.log").read_text()  # kept, out of the way

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
                runs = prefect.read_flow_runs()
                names = [prefect.read_flow(run.flow_id).name for run in runs]
        assert names.count("ingest") == 4 and names.count("retrain") == 1
        # Runs say what and when, on the loop's clock, and carry the main job's tags.
        run_names = sorted(run.name for run in runs)
        retrain_day = (date.fromisoformat(night["night"]) + timedelta(days=1)).isoformat()  # the morning after
        assert f"retrain-{retrain_day}" in run_names and "fan-out-[8]" in run_names
        assert sum(name.startswith("ingest-") and name.endswith("T01:00:00Z") for name in run_names) == 4
        assert all({"shelfcast", "main-job"} <= set(run.tags) for run in runs if run.parent_task_run_id is None)

        from shelfcast.contract.manifest import Manifest, Pointer, manifest_key, pointer_key, sha256_hex
        from shelfcast.contract.objects import ObjectStore, make_s3_client

        bucket = ObjectStore(make_s3_client(settings.s3_endpoint_url, *_trainer_keys(settings)), settings.bucket)
        pointer = Pointer.from_json(bucket.get(pointer_key("canary")).body)
        manifest = Manifest.from_json(bucket.get(manifest_key(pointer.name, pointer.version)).body)
        registered = next(v for v in versions if str(v.version) == pointer.version)
        tflite = client.download_artifacts(registered.run_id, "tflite", str(tmp_path / "registered"))
        (registered_file,) = Path(tflite).glob("*.tflite")
        assert pointer.matches(manifest) and manifest.sha256 == sha256_hex(registered_file.read_bytes())
        assert manifest.mlflow_run_id == registered.run_id
        summary_decisions = {o.key for o in bucket.list("promotions/canary/decisions/")}

        # A second night whose thresholds make every candidate critical: the alert gate rejects each one, with the
        # alert as its reason, and no channel moves.
        thresholds = tmp_path / "strict.toml"
        thresholds.write_text("[mape_ceiling]\nmax_mape_pct = 1.0\nseverity = \"critical\"\n")
        gated = subprocess.run(shelfcast + ["retrain", "--config", str(config), "--night", "gated", "--promote"],
                               cwd=tmp_path, env={**env, "SHELFCAST_THRESHOLDS_FILE": str(thresholds)},
                               capture_output=True, text=True, timeout=600)
        assert gated.returncode == 0, gated.stdout[-3000:] + gated.stderr[-3000:]
        canary_after = Pointer.from_json(bucket.get(pointer_key("canary")).body)
        assert canary_after == pointer  # nothing moved
        (record_key,) = [o.key for o in bucket.list("promotions/canary/decisions/")
                         if o.key not in summary_decisions]
        record = json.loads(bucket.get(record_key).body)
        rejections = record["rejections"]
        assert record["chosen"] is None and len(rejections) == 2
        assert all("gate:alert_gate" in r["rules"] and "critical alert" in r["reason"] and "mape_ceiling" in r["reason"]
                   for r in rejections), rejections
    finally:
        subprocess.run(shelfcast + ["stack", "down"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert not any(s["running"] for s in LocalStack(settings).status().values())
