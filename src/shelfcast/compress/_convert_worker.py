"""Child-process converter (see `export.py`). Usage: python -m shelfcast.compress._convert_worker JOBS.json

Runs with TF_USE_LEGACY_KERAS=1 so `tf.keras` is Keras 2, whose LSTM converts to the fused TFLite op.
Each finished file is written before the next conversion starts, so a crash loses only the current one.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _reset_state_between_calibration_samples() -> None:
    """The fused LSTM keeps its state in variable tensors, and the calibrator feeds samples one after another
    without resetting them: each sample would start from the previous sample's final state, and the recorded
    ranges (the output range above all) would describe a model nobody runs. `Prepare()` re-allocates the
    calibration interpreter and resets its variables, so calling it before every sample calibrates the model
    exactly as stores run it (state reset before each forecast)."""
    from tensorflow.lite.python.optimize import calibrator

    def feed_tensors(self, dataset_gen, resize_input):
        for sample in dataset_gen():
            if not isinstance(sample, list):
                raise ValueError("representative samples must be lists of input arrays")
            if resize_input:
                self._calibrator.Prepare([list(s.shape) for s in sample])
            else:
                self._calibrator.Prepare()
            self._calibrator.FeedTensor(sample)

    calibrator.Calibrator._feed_tensors = feed_tensors


def convert(job: dict) -> bytes:
    import tensorflow as tf
    import tf_keras

    _reset_state_between_calibration_samples()

    # A fresh graph per conversion: the child lives across many, and Keras name counters
    # (model, model_1, ...) would otherwise make the same weights convert to files of different bytes.
    tf_keras.backend.clear_session()
    arrays = np.load(job["npz"])
    weights = [arrays[f"w{i}"] for i in range(job["n_weights"])]
    inputs = tf_keras.Input(shape=(job["lookback"], job["n_features"]), batch_size=1, name="sales_window")
    hidden = tf_keras.layers.LSTM(job["units"], activation="tanh", name="lstm")(inputs)
    hidden = tf_keras.layers.Dropout(job["dropout"], name="dropout")(hidden)
    outputs = tf_keras.layers.Dense(1, name="forecast")(hidden)
    model = tf_keras.Model(inputs, outputs)
    model.set_weights(weights)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if job["quantization"] == "int8":
        calibration = arrays["calibration"].astype(np.float32)

        def representative():
            for row in calibration:
                yield [row[None, ...]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def main(jobs_path: str) -> None:
    import os

    for job in json.loads(open(jobs_path).read()):
        flatbuffer = convert(job)
        tmp = job["out"] + ".part"
        with open(tmp, "wb") as handle:
            handle.write(flatbuffer)
        os.replace(tmp, job["out"])


def serve(reply_fd: int) -> None:
    """Convert one jobs file per line of stdin, answering `ok` or `error <reason>` on `reply_fd`: TensorFlow is
    imported once for every conversion of the trainer's life. A crash ends the process; the parent starts another."""
    import os

    replies = os.fdopen(reply_fd, "w", buffering=1)
    for line in sys.stdin:
        try:
            main(line.strip())
            replies.write("ok\n")
        except Exception as exc:  # noqa: BLE001 - reported to the parent as the conversion's reason
            replies.write(f"error {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500] + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        main(sys.argv[1])
