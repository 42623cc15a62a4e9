"""The converting child lives across conversions, and a dead or stuck one is replaced, never fatal.

Real child processes (TensorFlow's converter); the crash is a real SIGKILL of the child."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from shelfcast.compress.export import CONVERTER, ExportJob, export_many
from shelfcast.contract.errors import ConversionError
from shelfcast.contract.features import InputSpec

pytestmark = pytest.mark.integration


def _job(path, quantization="float32"):
    spec = InputSpec(lookback=14, scaling="window_mean", calendar=True)
    rng = np.random.default_rng(3)
    units = 4
    weights = [rng.normal(0, 0.3, (spec.n_features, 4 * units)), rng.normal(0, 0.3, (units, 4 * units)),
               np.zeros(4 * units), rng.normal(0, 0.3, (units, 1)), np.ones(1)]
    calibration = rng.uniform(0, 2, (16, spec.lookback, spec.n_features)).astype(np.float32)
    return ExportJob([w.astype(np.float32) for w in weights], units, spec, quantization, path,
                     calibration if quantization == "int8" else None)


def test_one_child_serves_every_conversion_and_a_killed_one_is_replaced(tmp_path):
    (first,) = export_many([_job(tmp_path / "a.tflite")])
    pid = CONVERTER._process.pid
    (second,) = export_many([_job(tmp_path / "b.tflite", "int8")])
    assert first.read_bytes()[4:8] == b"TFL3" and second.read_bytes()[4:8] == b"TFL3"
    assert CONVERTER._process.pid == pid  # TensorFlow imported once, not once per variant

    os.kill(pid, signal.SIGKILL)
    CONVERTER._process.wait()
    (third,) = export_many([_job(tmp_path / "c.tflite")])
    assert third == tmp_path / "c.tflite" and CONVERTER._process.pid != pid


def test_a_stuck_conversion_times_out_as_an_outcome_and_the_next_one_runs(tmp_path):
    export_many([_job(tmp_path / "warm.tflite")])
    (stuck,) = export_many([_job(tmp_path / "slow.tflite")], timeout_s=0.01)
    assert isinstance(stuck, ConversionError) and "took over 0s" in str(stuck)
    assert CONVERTER._process is None  # the stuck child was killed
    (after,) = export_many([_job(tmp_path / "next.tflite")])
    assert after.exists() and not (tmp_path / "slow.tflite").exists()


def test_a_failing_job_reports_its_reason_and_the_child_keeps_serving(tmp_path):
    export_many([_job(tmp_path / "warm.tflite")])
    pid = CONVERTER._process.pid
    bad = _job(tmp_path / "bad.tflite")
    bad.weights = [w[..., :3] for w in bad.weights]  # wrong shapes: set_weights raises in the child
    good, broken = export_many([_job(tmp_path / "good.tflite"), bad])
    assert good.exists()
    assert isinstance(broken, ConversionError) and "float32 conversion of LSTM-4 (bad.tflite) failed: ValueError" in str(broken)
    assert CONVERTER._process.pid == pid


def test_the_same_weights_convert_to_the_same_bytes_in_a_long_lived_child(tmp_path):
    """Keras numbers each model it builds (model, model_1, ...); without a fresh graph per conversion the second
    conversion of the same weights in the same child wrote a file 4 bytes longer."""
    first, second = export_many([_job(tmp_path / "one.tflite"), _job(tmp_path / "two.tflite")])
    (third,) = export_many([_job(tmp_path / "three.tflite")])
    assert first.read_bytes() == second.read_bytes() == third.read_bytes()
