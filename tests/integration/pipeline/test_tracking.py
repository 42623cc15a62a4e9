"""`Tracker` against a real MLflow tracking server (SQLite backend, artifacts proxied to SeaweedFS S3)."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest

from shelfcast.compress.variants import VariantResult
from shelfcast.contract.errors import ServiceError
from shelfcast.stack.process import free_port
from shelfcast.tracking import SIZE_FIELDS, Tracker

pytestmark = pytest.mark.integration


def variant(tmp_path, tiny_tflite, name="LSTM-16+INT8", status="ok", **overrides) -> VariantResult:
    """A built variant around a real (untrained) INT8 `.tflite` and five input windows as its example."""
    tflite = tmp_path / f"{name}.tflite"
    tflite.write_bytes(tiny_tflite["v2"])
    spec = tiny_tflite["spec"]
    example = np.random.default_rng(3).uniform(0.0, 2.0, (5, spec.lookback, spec.n_features)).astype(np.float32)
    keras = tmp_path / f"{name}.keras"
    keras.write_bytes(b"PK-keras")
    values = dict(
        name=name, technique="sizing+int8", units=16, sparsity=0.0, quantization="int8", seed=3, status=status,
        params=1425, nonzero_params=1400, article_bytes=5700, tflite_bytes=5768, gzip_bytes=3082, mape_pct=14.6,
        smape_pct=14.1, wape_pct=13.9, latency_us_median=40.0, train_seconds=18.6, float_parent="LSTM-16",
        tflite_path=tflite, keras_path=keras, input_example=example,
    )
    values.update(overrides)
    return VariantResult(**values)


@pytest.fixture
def tracker(mlflow_server):
    return Tracker(mlflow_server.urls["tracking"], f"demand-{uuid.uuid4().hex[:8]}")


def test_night_with_nested_variant_runs_and_registered_versions(tracker, trainer_store, tiny_tflite, tmp_path):
    parent = tracker.start_night("2017-06-02", {"window_days": 365, "input_spec": json.dumps({"lookback": 14})})
    ok = tracker.log_variant(parent, "2017-06-02", variant(tmp_path, tiny_tflite), {"model": "edge"},
                             {"naive_mape_pct": 17.0})
    failed = tracker.log_variant(parent, "2017-06-02",
                                 variant(tmp_path, tiny_tflite, "Pruned-70%+INT8", "failed", reason="int8 conversion crashed",
                                         tflite_path=None, keras_path=None, mape_pct=float("nan")),
                                 {"model": "edge"})
    client = tracker.client

    child = client.get_run(ok.run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.params["seed"] == "3" and child.data.params["technique"] == "sizing+int8"
    assert all(child.data.metrics[name] > 0 for name in SIZE_FIELDS)
    assert child.data.metrics["train_seconds"] == pytest.approx(18.6)
    assert child.data.metrics["naive_mape_pct"] == 17.0
    # The run lasts as long as the variant's training, is named for what and when, and says which code made it.
    assert (child.info.end_time - child.info.start_time) / 1000 >= 18.6
    assert child.info.run_name == "LSTM-16+INT8 · night 2017-06-02"
    assert len(child.data.tags["mlflow.source.git.commit"]) == 40 and child.data.tags["mlflow.source.type"] == "JOB"
    assert client.get_run(parent).data.tags["mlflow.source.git.commit"] == child.data.tags["mlflow.source.git.commit"]
    assert {a.path for a in client.list_artifacts(ok.run_id)} == {"tflite", "keras"}
    # The server proxies artifacts to S3: they are objects in the bucket.
    keys = [info.key for info in trainer_store.list("mlflow/") if ok.run_id in info.key]
    assert any(key.endswith("LSTM-16+INT8.tflite") for key in keys)

    version = client.get_model_version(tracker.registered_model, ok.version)
    assert version.tags["technique"] == "sizing+int8" and version.tags["tflite_bytes"] == "5768"
    assert version.tags["gzip_bytes"] == "3082" and "candidate" not in version.tags
    assert tracker.candidates() == []  # registered, not yet a candidate

    assert failed.version is None and failed.status == "failed"
    failed_run = client.get_run(failed.run_id)
    assert failed_run.info.status == "FAILED" and "conversion crashed" in failed_run.data.tags["reason"]

    (candidate,) = tracker.mark_candidates([ok, failed], "2017-06-02")
    tracker.finish_night(parent)
    assert (candidate.version, candidate.variant, candidate.run_id) == (ok.version, "LSTM-16+INT8", ok.run_id)
    assert candidate.metrics["mape_pct"] == pytest.approx(14.6) and candidate.input_spec == {}
    assert candidate.tflite_uri.endswith("/tflite/LSTM-16+INT8.tflite")
    assert client.get_run(parent).data.tags["night_status"] == "complete"
    assert tracker.latest_complete_night().info.run_id == parent

    client.set_registered_model_alias(tracker.registered_model, "champion", ok.version)
    assert str(tracker.champion().version) == ok.version
    downloaded = tracker.download(ok.run_id, "tflite", tmp_path / "dl")
    assert (downloaded / "LSTM-16+INT8.tflite").read_bytes() == tiny_tflite["v2"]


def test_a_version_is_a_pyfunc_around_its_tflite_and_runs_record_their_sales(tracker, tiny_tflite, tmp_path):
    import mlflow.pyfunc

    from shelfcast.contract.runtime import TFLiteForecaster

    data = {"start": "2016-06-03", "end": "2017-06-02", "series": 6, "rows": 2190, "sales_table_version": 41}
    parent = tracker.start_night("2017-06-02", {"window_days": 365, **data})
    built = variant(tmp_path, tiny_tflite)
    logged = tracker.log_variant(parent, "2017-06-02", built, {"model": "edge", **data})
    version = tracker.client.get_model_version(tracker.registered_model, logged.version)
    model_id = tracker.client.get_run(logged.run_id).outputs.model_outputs[0].model_id
    assert (version.source, version.run_id) == (f"models:/{model_id}", logged.run_id)

    with _tracking_uri(tracker.tracking_uri):
        model = mlflow.pyfunc.load_model(f"models:/{tracker.registered_model}/{logged.version}")
    (window,) = model.metadata.get_input_schema().inputs
    spec = tiny_tflite["spec"]
    assert (window.name, window.shape, window.type) == ("window", (-1, spec.lookback, spec.n_features),
                                                         np.dtype(np.float32))
    assert model.metadata.get_output_schema().inputs[0].name == "forecast_scaled"
    example = model.input_example
    example = example["window"] if isinstance(example, dict) else example
    np.testing.assert_allclose(example, built.input_example, rtol=1e-6)
    predicted = model.predict({"window": example})
    np.testing.assert_array_equal(model.predict(example), predicted)  # a bare array is the one input too
    expected = TFLiteForecaster(built.tflite_path).predict(built.input_example)
    assert predicted.shape == (5,) and len(set(np.round(expected, 5))) > 1  # real, distinct forecasts
    np.testing.assert_array_equal(predicted, expected)

    for run_id in (parent, logged.run_id):
        (given,) = tracker.client.get_run(run_id).inputs.dataset_inputs
        tags = {tag.key: tag.value for tag in given.tags}
        assert tags["mlflow.data.context"] == "training"
        assert (tags["first_day"], tags["last_day"], tags["series"], tags["sales_table_version"]) == (
            "2016-06-03", "2017-06-02", "6", "41")
        assert given.dataset.name == "sales 2016-06-03..2017-06-02" and given.dataset.source_type == "delta_table"
        assert json.loads(given.dataset.source)["delta_table_version"] == 41
        assert json.loads(given.dataset.profile)["rows"] == 2190


def _tracking_uri(uri: str):
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    return _use_tracking_uri(uri)


def test_a_dead_tracking_server_fails_fast_with_the_fix():
    tracker = Tracker(f"http://127.0.0.1:{free_port()}", "demand")
    start = time.perf_counter()
    with pytest.raises(ServiceError, match="shelfcast stack up"):
        tracker.check()
    assert time.perf_counter() - start < 30
