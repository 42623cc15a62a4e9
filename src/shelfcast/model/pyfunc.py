"""A variant's `.tflite` file as an MLflow pyfunc model, so the registry shows what the model takes and returns.

The model MLflow serves is the file a store runs: `TFLitePyfunc` loads the `.tflite` artifact into the same
LiteRT interpreter the store uses (`shelfcast.contract.runtime.TFLiteForecaster`) and predicts scaled next-day
forecasts from scaled input windows (`InputSpec.build_inputs` makes them from raw sales). Its signature names the
one input (`window`, shape `(-1, lookback, features)`, float32) and the output (`forecast_scaled`, shape `(-1,)`).

Trainer side only: this module imports MLflow, which the store install never has.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import mlflow.pyfunc
import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Schema, TensorSpec

INPUT_NAME = "window"
OUTPUT_NAME = "forecast_scaled"
TFLITE_ARTIFACT = "tflite"


class TFLitePyfunc(mlflow.pyfunc.PythonModel):
    """`predict(windows) -> scaled forecasts` by running the logged `.tflite` in the LiteRT interpreter."""

    def load_context(self, context) -> None:
        from shelfcast.contract.runtime import TFLiteForecaster

        self._forecaster = TFLiteForecaster(context.artifacts[TFLITE_ARTIFACT])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        # `np.ndarray` as the hint: the signature is given when the model is saved, not inferred from hints.
        windows = model_input[INPUT_NAME] if isinstance(model_input, dict) else model_input
        return self._forecaster.predict(np.asarray(windows, dtype=np.float32))


def signature(lookback: int, features: int) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, lookback, features), INPUT_NAME)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,), OUTPUT_NAME)]),
    )


def requirements() -> list[str]:
    """What loading the model needs, pinned to what made it (shelfcast itself: the class is pickled by name)."""
    return [f"{name}=={metadata.version(name)}" for name in ("shelfcast", "mlflow", "ai-edge-litert", "numpy")]


def save_tflite_pyfunc(folder: Path, tflite_path: Path, input_example: np.ndarray, mlflow_model: Model) -> Path:
    """The MLflow model folder (MLmodel, pickled `TFLitePyfunc`, the `.tflite` as its artifact, the signature and
    the input example) for `mlflow_model` (which carries the logged model's id and run)."""
    example = np.asarray(input_example, dtype=np.float32)
    if example.ndim != 3:
        raise ValueError(f"an input example is (n, lookback, features) windows, got shape {example.shape}")
    mlflow.pyfunc.save_model(
        path=str(folder), python_model=TFLitePyfunc(), artifacts={TFLITE_ARTIFACT: str(tflite_path)},
        signature=signature(example.shape[1], example.shape[2]), input_example={INPUT_NAME: example},
        pip_requirements=requirements(), mlflow_model=mlflow_model,
    )
    return folder
