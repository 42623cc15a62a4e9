"""Run a `.tflite` forecaster in the LiteRT interpreter (numpy and ai-edge-litert only: this runs on stores).

The fused LSTM op keeps state inside the interpreter, so every prediction resets variables first. Models
with int8 inputs/outputs are quantized and dequantized with the scale and zero point stored in the file.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from shelfcast.contract.errors import ModelLoadError


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # a declared dependency of both sides; only a broken install gets here
        raise ModelLoadError("ai-edge-litert is not installed; install shelfcast[store]") from exc
    return Interpreter


class TFLiteForecaster:
    """A loaded `.tflite` model with batch-1 input (1, lookback, features) and output (1, 1)."""

    def __init__(self, model: str | Path | bytes, num_threads: int = 1):
        Interpreter = _interpreter_class()
        try:
            if isinstance(model, (bytes, bytearray)):
                self.interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
            else:
                self.interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for bad flatbuffers
            raise ModelLoadError(f"model {model if not isinstance(model, bytes) else '<bytes>'} does not load: {exc}") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])

    @property
    def input_dtype(self):
        return self.input["dtype"]

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        if self.input["dtype"] in (np.int8, np.uint8):
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.input["dtype"])
        return x.astype(self.input["dtype"])

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if self.output["dtype"] in (np.int8, np.uint8):
            scale, zero = self.output["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def predict_one(self, x: np.ndarray) -> float:
        """One window (lookback, features) -> scaled forecast."""
        self.interpreter.reset_all_variables()
        self.interpreter.set_tensor(self.input["index"], self._quantize(x.reshape(self.input_shape)))
        self.interpreter.invoke()
        return float(self._dequantize(self.interpreter.get_tensor(self.output["index"])).reshape(-1)[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Windows (n, lookback, features) -> scaled forecasts (n,)."""
        return np.array([self.predict_one(row) for row in np.asarray(x)], dtype=np.float32)

    def latency_us(self, x: np.ndarray, repeats: int = 200) -> float:
        """Median wall time of one reset + invoke, in microseconds, after a warm-up."""
        sample = np.asarray(x)[0]
        for _ in range(10):
            self.predict_one(sample)
        times = np.empty(repeats)
        for i in range(repeats):
            start = time.perf_counter()
            self.predict_one(sample)
            times[i] = time.perf_counter() - start
        return float(np.median(times) * 1e6)

    def builtin_ops_only(self) -> bool:
        """True when every op in the graph is a LiteRT builtin (no custom or Flex/Select-TF ops)."""
        ops = self.op_names()
        return all(not name.startswith(("FlexDelegate", "Flex", "CUSTOM")) for name in ops)

    def op_names(self) -> list[str]:
        try:
            return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})
        except AttributeError:  # older runtimes
            return []
