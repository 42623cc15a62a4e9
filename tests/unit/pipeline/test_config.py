"""Pure pieces of the nightly pipeline around ingest and retrain: configuration, retry classification, landing
locations, the retrain report."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from shelfcast.contract.objects import LocalObjects
from shelfcast.data.sales import source_id
from shelfcast.contract.errors import ConfigError
from shelfcast.data.ingest import open_landing
from shelfcast.pipeline.config import PRESETS, RetrainConfig
from shelfcast.pipeline.nightly import NightReport, night_markdown
from shelfcast.pipeline.transient import is_transient

pytestmark = pytest.mark.unit


def test_presets_and_overrides():
    quick = RetrainConfig.load("quick", epochs=2, variants=None)
    assert quick.epochs == 2 and quick.variants == PRESETS["quick"]["variants"]
    model = quick.model_config_obj()
    assert model.train.epochs == 2 and [v.name for v in model.variants] == ["LSTM-16", "LSTM-16+INT8", "LSTM-8+INT8"]
    assert RetrainConfig.load(None) == RetrainConfig()


def test_config_file_and_errors_name_the_key(tmp_path):
    path = tmp_path / "night.json"
    path.write_text(json.dumps({"variants": ["pruned50+int8"], "task_runner": "dask", "workers": 2}))
    config = RetrainConfig.load(str(path))
    assert config.model_config_obj().variants[0].sparsity == 0.5 and config.task_runner == "dask"
    with pytest.raises(ConfigError, match="window_days"):
        RetrainConfig.load("quick", window_days=10)
    with pytest.raises(ConfigError, match="unknown variant 'lstmx'"):
        RetrainConfig.load(str(path), variants=["lstmx"])
    with pytest.raises(ConfigError, match="neither a preset"):
        RetrainConfig.load(str(tmp_path / "missing.json"))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        RetrainConfig.load(str(path))


def test_only_io_failures_are_transient():
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ConnectionResetError())
    assert is_transient(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
    assert not is_transient(ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject"))
    assert not is_transient(ValueError("bad data"))
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    assert is_transient(MlflowException("API request failed: Max retries exceeded with url"))
    assert not is_transient(MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST))


def test_landing_locations(tmp_path):
    bucket = LocalObjects(tmp_path / "bucket")
    bucket.bucket = "shelfcast"
    assert open_landing("landing", bucket).prefix == "landing/"
    assert open_landing("s3://shelfcast/drop/", bucket).prefix == "drop/"
    with pytest.raises(ConfigError, match="bucket 'other'"):
        open_landing("s3://other/landing/", bucket)
    folder = open_landing(str(tmp_path / "drop"), None)
    assert isinstance(folder.objects, LocalObjects) and folder.prefix == ""
    with pytest.raises(ConfigError, match="no S3 store"):
        open_landing("landing/", None)
    assert source_id("sales-2017-06-02.csv") == "sales-2017-06-02.csv"
    assert source_id("eu/sales 2017.csv") != source_id("eu_sales_2017.csv")


def test_night_markdown_lists_every_variant_and_the_candidates():
    report = NightReport(
        "2017-06-02", "abc123", {"rows": 100, "series": 4, "start": "2016-06-02", "end": "2017-06-02",
                                 "holdout_days": 28},
        variants=[{"name": "LSTM-16+INT8", "status": "ok", "version": "7",
                   "metrics": {"mape_pct": 14.5, "tflite_bytes": 5768, "gzip_bytes": 3082, "params": 1425,
                               "nonzero_params": 1425, "train_seconds": 18.6}},
                  {"name": "Pruned-70%+INT8", "status": "failed", "version": None, "metrics": {},
                   "reason": "int8 conversion crashed"}],
        candidates=[{"version": "7", "variant": "LSTM-16+INT8"}], naive_mape_pct=17.0,
        champion={"version": "3", "mape_pct": 15.1},
    )
    text = night_markdown(report, "http://127.0.0.1:5000")
    assert "| LSTM-16+INT8 | ok | 14.50 | 5,768 | 3,082 | 1,425 | 1,425 | 18.6 | 7 |" in text
    assert "| Pruned-70%+INT8 | failed |" in text and "int8 conversion crashed" in text
    assert "Champion v3: 15.10%" in text and "Candidates: v7 LSTM-16+INT8." in text


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_a_profile_model_on_every_month_of_the_year(preset):
    """The profile's month factors come from the training days: a window that leaves fewer than a year after
    the holdout has a month with no training day, whose factor stays neutral (1.0), and a night whose holdout
    falls in that month judges its candidates on forecasts about 30 % off (the February of a 365-day window
    with a 28-day holdout ending on 28 February)."""
    from datetime import date, timedelta

    from shelfcast.data.synthetic import generate_sales
    from shelfcast.pipeline.nightly import TrainingData, night_windows

    config = RetrainConfig.load(preset)
    model = config.model_config_obj()
    end = date(2017, 2, 28)
    start = end - timedelta(days=config.window_days - 1)
    frame = generate_sales(stores=1, items=2, start=str(start), end=str(end), seed=3)
    windows = night_windows(TrainingData(frame, start, end, 2), model.input_spec, config.holdout_days)
    assert model.input_spec.scaling == "profile"
    assert 1.0 not in windows.spec.month_factors, windows.spec.month_factors
    assert config.window_days - config.holdout_days >= 365
