"""Brief training on a small panel: masks persist through fine-tuning (gradual and one-shot), the INT8 file
agrees with Keras, the device forecasts with a profile-scaled model exactly as the benchmark scores it, and a
failed conversion is an outcome with a reason while the other conversions still succeed."""

import numpy as np
import pytest

from shelfcast.compress.export import ExportJob, export_many
from shelfcast.compress.variants import VariantSpec, run_variants
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.windows import make_windows
from shelfcast.contract.runtime import TFLiteForecaster
from shelfcast.contract.errors import ConversionError
from shelfcast.contract.features import InputSpec
from shelfcast.model.lstm import TrainConfig, predict_scaled

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    windows = make_windows(generate_sales(stores=2, items=2, start="2015-01-01", end="2016-12-31", seed=11),
                           InputSpec(scaling="profile", calendar=True))
    config = TrainConfig(epochs=3, finetune_epochs=2, loss="mape_like")
    specs = [VariantSpec("LSTM-16", "baseline", 16), VariantSpec("Pruned-50%", "pruning", 16, 0.5),
             VariantSpec("Pruned-50%+INT8", "pruning+int8", 16, 0.5, "int8"), VariantSpec("LSTM-16+INT8", "sizing+int8", 16, 0.0, "int8")]
    out = run_variants(specs, windows, config, seed=0, workdir=tmp_path_factory.mktemp("variants"))
    one_shot = run_variants([VariantSpec("Pruned-70%", "pruning", 16, 0.7)], windows,
                            TrainConfig(epochs=3, finetune_epochs=2, loss="mape_like", pruning="one_shot"), seed=0,
                            workdir=tmp_path_factory.mktemp("one-shot"))
    return windows, {**{r.name: r for r in out}, "one-shot Pruned-70%": one_shot[0]}


def test_every_variant_is_built_and_measured(results):
    """Each MAPE is that of the variant's own test predictions (its `.tflite` file's) against the raw sales,
    computed here by hand over the days with sales."""
    windows, by_name = results
    assert all(r.status == "ok" for r in by_name.values()), [r.reason for r in by_name.values()]
    sold = windows.y_test != 0
    for r in by_name.values():
        assert r.tflite_bytes == r.tflite_path.stat().st_size
        assert r.predictions.shape == windows.y_test.shape
        by_hand = 100 * np.mean(np.abs(r.predictions[sold] - windows.y_test[sold]) / windows.y_test[sold])
        assert r.mape_pct == pytest.approx(by_hand, rel=1e-9), r.name
        assert r.latency_us_median > 0


@pytest.mark.parametrize("name, sparsity", [("Pruned-50%", 0.5), ("one-shot Pruned-70%", 0.7)])
def test_pruned_weights_stay_zero_after_fine_tuning(results, name, sparsity):
    import keras

    _, by_name = results
    pruned = by_name[name]
    weights = keras.models.load_model(pruned.keras_path, compile=False).get_weights()
    kernels = [w for w in weights if w.ndim == 2]
    total = sum(w.size for w in kernels)
    zeros = sum(w.size - np.count_nonzero(w) for w in kernels)
    assert zeros == sum(round(sparsity * w.size) for w in kernels)
    assert pruned.nonzero_params == pruned.params - zeros
    assert zeros / total == pytest.approx(sparsity, abs=0.01)


def test_gradual_pruning_reaches_the_final_sparsity_along_the_schedule(tmp_path):
    """The callback's masks follow the polynomial schedule during training and end at the final sparsity."""
    import keras

    from shelfcast.compress.pruning import gradual_pruning_callback, polynomial_sparsity
    from shelfcast.model.lstm import train_lstm

    windows = make_windows(generate_sales(stores=1, items=2, start="2015-01-01", end="2016-06-30", seed=3),
                           InputSpec(lookback=14))
    steps = -(-len(windows.x_train) // 256)
    schedule = gradual_pruning_callback(0.6, end_step=steps, frequency=5)
    seen = []
    probe = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(
        np.mean([1 - m.mean() for m in schedule.masks if m is not None])))
    tuned = train_lstm(windows, 8, 0, TrainConfig(epochs=2, min_epochs=1), callbacks=[schedule, probe])
    kernels = [w for w in tuned.get_weights() if w.ndim == 2]
    assert all(w.size - np.count_nonzero(w) == round(0.6 * w.size) for w in kernels)
    assert seen[4] == pytest.approx(polynomial_sparsity(5, 0.6, steps), abs=0.02)  # first update, step 5
    assert seen[0] == 0.0 and seen[-1] == pytest.approx(0.6, abs=0.02)


def test_int8_file_agrees_with_keras_within_tolerance(results):
    import keras

    windows, by_name = results
    int8 = TFLiteForecaster(by_name["LSTM-16+INT8"].tflite_path)
    assert int8.input_dtype == np.int8
    model = keras.models.load_model(by_name["LSTM-16"].keras_path, compile=False)
    keras_scaled = predict_scaled(model, windows.x_test)
    tflite_scaled = int8.predict(windows.x_test)
    # Scaled targets are around 1; full-integer rounding stays within a few hundredths.
    assert np.max(np.abs(keras_scaled - tflite_scaled)) < 0.08
    assert np.mean(np.abs(keras_scaled - tflite_scaled)) < 0.02
    # The README's target for an INT8 file: within 0.3 MAPE points of its float parent.
    assert abs(by_name["LSTM-16+INT8"].mape_pct - by_name["LSTM-16"].mape_pct) <= 0.3


def test_failed_conversion_is_an_outcome_and_the_others_still_convert(results, tmp_path):
    windows, by_name = results
    import keras

    good = keras.models.load_model(by_name["LSTM-16"].keras_path, compile=False).get_weights()
    bad = [w[..., :3] for w in good]  # wrong shapes: the child converter fails on this job
    jobs = [
        ExportJob(good, 16, windows.spec, "float32", tmp_path / "a.tflite"),
        ExportJob(bad, 16, windows.spec, "float32", tmp_path / "bad.tflite"),
        ExportJob(good, 16, windows.spec, "int8", tmp_path / "c.tflite", windows.calibration_inputs(64)),
        ExportJob(good, 16, windows.spec, "int8", tmp_path / "nocal.tflite", None),
    ]
    outcome = export_many(jobs)
    assert outcome[0] == tmp_path / "a.tflite" and outcome[2] == tmp_path / "c.tflite"
    assert isinstance(outcome[1], ConversionError) and "float32 conversion of LSTM-16 (bad.tflite) failed" in str(outcome[1])
    assert isinstance(outcome[3], ConversionError) and "calibration" in str(outcome[3])
    assert not (tmp_path / "bad.tflite").exists()


def test_int8_calibration_resets_lstm_state_between_samples(tmp_path):
    """The fused LSTM keeps state in variable tensors. Stores reset it before every forecast, so calibration
    must too, or the recorded ranges describe a model nobody runs. This LSTM only accumulates: reset, its
    output is the sum of 14 small steps; never reset, the state keeps growing and the output range with it."""
    from shelfcast.compress.export import export_tflite
    from shelfcast.model.lstm import build_lstm

    units, spec = 16, InputSpec(lookback=14)
    model = build_lstm(units, spec)
    kernel = np.zeros((1, 4 * units), dtype="float32")
    kernel[0, 2 * units : 3 * units] = 0.01  # the cell candidate grows slightly with the input
    bias = np.full(4 * units, 10.0, dtype="float32")  # input, forget and output gates wide open
    bias[2 * units : 3 * units] = 0.01
    model.set_weights([kernel, np.zeros((units, 4 * units), "float32"), bias,
                       np.full((units, 1), 1.0 / units, "float32"), np.zeros(1, "float32")])
    x = np.random.default_rng(0).uniform(0.0, 1.0, size=(300, 14, 1)).astype("float32")
    path = export_tflite(model.get_weights(), units, spec, "int8", x[:200], tmp_path / "accumulator.tflite")
    forecaster = TFLiteForecaster(path)
    scale, zero = forecaster.output["quantization"]
    low, high = (-128 - zero) * scale, (127 - zero) * scale
    expected = predict_scaled(model, x)
    assert low <= expected.min() + 0.01 and high >= expected.max() - 0.01
    assert high < expected.max() + 0.05  # calibrated on the real range (ranges always include zero)


def test_the_device_forecasts_with_a_profile_model_as_the_benchmark_scores_it(results):
    """The store builds inputs from raw recent sales with the manifest's spec (pooled factors included) and
    unscales with the forecast day's factor: its forecast equals the benchmark's prediction for that day."""
    from shelfcast.device.forecast import forecast_series

    windows, by_name = results
    result = by_name["LSTM-16+INT8"]
    spec = InputSpec.from_dict(windows.spec.to_dict())  # through the manifest
    assert spec.scaling == "profile" and spec.weekday_factors == windows.spec.weekday_factors
    keys = windows.test_keys
    picks = [int(np.flatnonzero((keys["item"] == item).to_numpy())[-1]) for item in (1, 2)]
    series = {}
    for row in picks:
        store, item = int(keys["store"][row]), int(keys["item"][row])
        series[(store, item)] = (windows.test_input_dates[row], windows.raw_x_test[row].astype(float))
    report = forecast_series(series, TFLiteForecaster(result.tflite_path), spec, "1")
    assert [f.date for f in report.forecasts] == [str(keys["date"][row].date()) for row in picks]
    expected = [result.predictions[row] for row in picks]
    np.testing.assert_allclose([f.sales for f in report.forecasts], expected, rtol=1e-6)
