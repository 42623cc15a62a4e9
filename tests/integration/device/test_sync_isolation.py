"""A real sync and a real forecast by `shelfcast store` in an interpreter where every trainer package (TensorFlow,
Prefect, MLflow, pandas, Typer, Rich, pydantic, ...) refuses to import: what a `shelfcast[store]` device runs."""

import numpy as np
import pytest

from tests.conftest import BUCKET, STORE, signed_channel
from tests.unit.device.test_imports import run_store_command

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scaling", ["window_mean", "profile"])
def test_sync_and_predict_with_the_trainer_stack_refused(seaweedfs, trainer_store, tiny_tflite, tmp_path, signing,
                                                         scaling):
    """`profile`: the edge configuration's scaling, its pooled factors read from the manifest, numpy only. The
    forecast printed is the one the same `.tflite` gives in this process, with the full stack loaded."""
    from dataclasses import replace

    from shelfcast.contract.runtime import TFLiteForecaster
    from shelfcast.device.forecast import forecast_series, read_recent_sales

    spec = replace(tiny_tflite["spec"], scaling=scaling, weekday_factors=(0.8, 0.9, 1.0, 1.0, 1.0, 1.1, 1.2),
                   month_factors=(1.1,) * 6 + (0.9,) * 6)
    name, channel = signed_channel(trainer_store, signing, tiny_tflite, model="v2", version="7", input_spec=spec)
    (tmp_path / "root.json").write_bytes(signing.trusted_root)
    env = {"SHELFCAST_S3_ENDPOINT_URL": seaweedfs.urls["s3"], "SHELFCAST_BUCKET": BUCKET,
           "SHELFCAST_STORE_ACCESS_KEY": STORE[0], "SHELFCAST_STORE_SECRET_KEY": STORE[1]}
    folder = str(tmp_path / "store")

    sync = run_store_command(["store", "sync", "--store-id", "3", "--channel", channel, "--dir", folder,
                             "--trusted-root", str(tmp_path / "root.json")], env)
    assert sync.returncode == 0, sync.stderr[-3000:]
    assert "status=updated serving=7" in sync.stdout

    days = np.arange(np.datetime64("2018-03-01"), np.datetime64("2018-03-15"))
    rows = ["date,store,item,sales"] + [f"{d},3,{item},{10 * item + i % 7}" for item in (1, 2) for i, d in enumerate(days)]
    (tmp_path / "recent.csv").write_text("\n".join(rows) + "\n")
    predict = run_store_command(["store", "predict", "--dir", folder, "--sales", str(tmp_path / "recent.csv")], env)
    assert predict.returncode == 0, predict.stderr[-3000:]
    lines = predict.stdout.strip().splitlines()
    assert lines[0] == "date,store,item,forecast,model_version" and len(lines) == 3
    assert all(line.startswith("2018-03-15,3,") and line.endswith(",7") for line in lines[1:])
    known = forecast_series(read_recent_sales(tmp_path / "recent.csv"), TFLiteForecaster(tiny_tflite["v2"]), spec, "7")
    assert [f.sales > 0 for f in known.forecasts] == [True, True]  # real numbers, not the clip at zero
    assert predict.stdout.strip() == known.to_csv().strip()
