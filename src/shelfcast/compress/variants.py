"""The compression variants: sizing, magnitude pruning with fine-tuning, INT8, and their combinations.

A `VariantSpec` names what to build. `run_variants` trains each parent size once per seed, shares pruned
fine-tunes between a pruned variant and its INT8 twin, converts everything in one isolated batch, and
evaluates every variant by running its `.tflite` file in the LiteRT interpreter. A failed conversion is a
variant outcome with its reason, not a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from shelfcast.compress.export import ExportJob, export_many
from shelfcast.compress.pruning import apply_masks, gradual_pruning_callback, mask_callback, prune
from shelfcast.compress.sizes import measure_sizes
from shelfcast.contract.runtime import TFLiteForecaster
from shelfcast.contract.errors import ConversionError
from shelfcast.model.lstm import TrainConfig, TrainedModel, predict_scaled, train_lstm
from shelfcast.model.metrics import score

INPUT_EXAMPLE_WINDOWS = 5  # the model's input example in MLflow: enough to show its shape, small on every run
TECHNIQUES = ("baseline", "sizing", "pruning", "int8", "pruning+int8", "sizing+int8")


@dataclass(frozen=True)
class VariantSpec:
    name: str
    technique: str
    units: int
    sparsity: float = 0.0
    quantization: str = "float32"

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUES:
            raise ValueError(f"technique={self.technique!r}; choose one of {TECHNIQUES}")

    @property
    def weights_key(self) -> tuple[int, float]:
        """Variants with the same key share weights (a pruned model and its INT8 twin)."""
        return (self.units, self.sparsity)

    @property
    def float_parent(self) -> str | None:
        """The float variant whose weights this INT8 variant quantizes."""
        if self.quantization != "int8":
            return None
        if self.sparsity:
            return f"Pruned-{round(self.sparsity * 100)}%"
        return f"LSTM-{self.units}"

    @classmethod
    def parse(cls, text: str) -> "VariantSpec":
        """`lstm64`, `lstm16+int8`, `pruned50`, `pruned50+int8`, `int8` (= lstm64+int8)."""
        name = text.strip().lower()
        int8 = name.endswith("+int8") or name == "int8"
        base = name.removesuffix("+int8")
        if base in ("int8", ""):
            base = "lstm64"
        if base.startswith("lstm"):
            units = int(base[4:])
            technique = ("int8" if units == 64 else "sizing+int8") if int8 else ("baseline" if units == 64 else "sizing")
            label = "INT8" if int8 and units == 64 else f"LSTM-{units}" + ("+INT8" if int8 else "")
            return cls(label, technique, units, 0.0, "int8" if int8 else "float32")
        if base.startswith("pruned"):
            pct = int(base[6:])
            return cls(
                f"Pruned-{pct}%" + ("+INT8" if int8 else ""),
                "pruning+int8" if int8 else "pruning",
                64,
                pct / 100,
                "int8" if int8 else "float32",
            )
        raise ValueError(f"unknown variant {text!r}; write e.g. lstm32, pruned50, lstm16+int8, int8")


ARTICLE_VARIANTS: tuple[VariantSpec, ...] = tuple(
    VariantSpec.parse(v)
    for v in (
        "lstm64", "lstm32", "lstm16", "pruned30", "pruned50", "pruned70", "int8",
        "pruned30+int8", "pruned50+int8", "pruned70+int8", "lstm32+int8", "lstm16+int8",
    )
)


@dataclass
class VariantResult:
    name: str
    technique: str
    units: int
    sparsity: float
    quantization: str
    seed: int
    status: str  # "ok" or "failed"
    reason: str = ""
    params: int = 0
    nonzero_params: int = 0
    article_bytes: int = 0
    tflite_bytes: int = 0
    gzip_bytes: int = 0
    mape_pct: float = float("nan")
    smape_pct: float = float("nan")
    wape_pct: float = float("nan")
    keras_mape_pct: float = float("nan")
    zero_days: int = 0
    latency_us_median: float = float("nan")
    train_seconds: float = 0.0
    float_parent: str | None = None
    tflite_path: Path | None = None
    keras_path: Path | None = None
    predictions: np.ndarray | None = field(default=None, repr=False)
    input_example: np.ndarray | None = field(default=None, repr=False)  # a few scaled holdout windows, for MLflow

    def metrics(self) -> dict:
        keys = ("mape_pct", "smape_pct", "wape_pct", "keras_mape_pct", "latency_us_median", "train_seconds",
                "params", "nonzero_params", "article_bytes", "tflite_bytes", "gzip_bytes", "zero_days")
        return {k: getattr(self, k) for k in keys}


@dataclass
class _Weights:
    weights: list[np.ndarray]
    model: object
    train_seconds: float


def _variant_weights(
    spec: VariantSpec,
    parents: dict[int, TrainedModel],
    windows,
    config: TrainConfig,
    seed: int,
    cache: dict,
) -> _Weights:
    key = spec.weights_key
    if key in cache:
        return cache[key]
    parent = parents[spec.units]
    if not spec.sparsity:
        cache[key] = _Weights(parent.get_weights(), parent.model, parent.train_seconds)
        return cache[key]
    if config.pruning == "gradual":
        steps = config.finetune_epochs * -(-len(windows.x_train) // config.batch_size)
        schedule = gradual_pruning_callback(spec.sparsity, end_step=max(1, round(config.prune_end_fraction * steps)))
        start_weights, callbacks = parent.get_weights(), [schedule]
    else:
        start_weights, masks = prune(parent.get_weights(), spec.sparsity)
        callbacks = [mask_callback(masks)]
    tuned = train_lstm(
        windows,
        spec.units,
        seed,
        config,
        initial_weights=start_weights,
        epochs=config.finetune_epochs,
        learning_rate=config.finetune_learning_rate,
        callbacks=callbacks,
    )
    if config.pruning == "gradual":
        masks = schedule.masks
    weights = apply_masks(tuned.get_weights(), masks)  # exact zeros, whatever the optimizer did
    tuned.model.set_weights(weights)
    cache[key] = _Weights(weights, tuned.model, parent.train_seconds + tuned.train_seconds)
    return cache[key]


def train_parents(
    specs: list[VariantSpec], windows, config: TrainConfig, seed: int,
    on_parent: Callable[[int, TrainedModel], None] | None = None,
) -> dict[int, TrainedModel]:
    """Train one float model per distinct size the variants need."""
    parents = {}
    for units in sorted({s.units for s in specs}, reverse=True):
        parents[units] = train_lstm(windows, units, seed, config)
        if on_parent:
            on_parent(units, parents[units])
    return parents


def run_variants(
    specs: list[VariantSpec],
    windows,
    config: TrainConfig,
    seed: int,
    workdir: str | Path,
    parents: dict[int, TrainedModel] | None = None,
    latency_repeats: int = 200,
    on_step: Callable[[str], None] | None = None,
) -> list[VariantResult]:
    """Build, export and evaluate every variant for one seed."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    step = on_step or (lambda message: None)
    if parents is None:
        parents = train_parents(specs, windows, config, seed, lambda u, p: step(f"trained LSTM-{u}"))
    cache: dict = {}
    built = []
    for spec in specs:
        weights = _variant_weights(spec, parents, windows, config, seed, cache)
        if spec.sparsity and spec.quantization == "float32":
            step(f"fine-tuned {spec.name}")
        built.append(weights)

    calibration = windows.calibration_inputs(seed=seed)
    stem = lambda spec: spec.name.lower().replace("%", "").replace("+", "-")  # noqa: E731
    jobs = [
        ExportJob(w.weights, s.units, windows.spec, s.quantization, workdir / f"{stem(s)}-seed{seed}.tflite",
                  calibration if s.quantization == "int8" else None, config.dropout)
        for s, w in zip(specs, built)
    ]
    step(f"converting {len(jobs)} variants")
    exported = export_many(jobs)

    results = []
    for spec, weights, path in zip(specs, built, exported):
        result = VariantResult(
            spec.name, spec.technique, spec.units, spec.sparsity, spec.quantization, seed, "ok",
            train_seconds=weights.train_seconds, float_parent=spec.float_parent,
        )
        if isinstance(path, ConversionError):
            result.status, result.reason = "failed", str(path)
            results.append(result)
            continue
        evaluate_variant(result, weights, path, windows, latency_repeats)
        keras_path = workdir / f"{stem(spec)}-seed{seed}.keras"
        if spec.quantization == "float32":
            weights.model.save(keras_path)
            result.keras_path = keras_path
        results.append(result)
        step(f"evaluated {spec.name}: MAPE {result.mape_pct:.2f}%, {result.tflite_bytes:,} B")
    return results


def evaluate_variant(result: VariantResult, weights: _Weights, path: Path, windows, latency_repeats: int) -> None:
    """Sizes from the real file, accuracy from running the file in the interpreter."""
    sizes = measure_sizes(weights.weights, path)
    forecaster = TFLiteForecaster(path)
    predictions = windows.predict_sales(forecaster.predict(windows.x_test))
    scores = score(windows.y_test, predictions)
    keras_predictions = windows.predict_sales(predict_scaled(weights.model, windows.x_test))
    result.params, result.nonzero_params = sizes.params, sizes.nonzero_params
    result.article_bytes, result.tflite_bytes, result.gzip_bytes = sizes.article_bytes, sizes.tflite_bytes, sizes.gzip_bytes
    result.mape_pct, result.smape_pct, result.wape_pct = scores.mape_pct, scores.smape_pct, scores.wape_pct
    result.zero_days = scores.zero_days
    result.keras_mape_pct = score(windows.y_test, keras_predictions).mape_pct
    result.latency_us_median = forecaster.latency_us(windows.x_test, repeats=latency_repeats)
    result.tflite_path = path
    result.predictions = predictions
    result.input_example = np.asarray(windows.x_test[:INPUT_EXAMPLE_WINDOWS], dtype=np.float32)


def build_variant(
    spec: VariantSpec,
    parent: TrainedModel,
    windows,
    config: TrainConfig,
    seed: int,
    workdir: str | Path,
) -> VariantResult:
    """Build one variant from its trained parent (the unit of work of the nightly fan-out)."""
    if parent.units != spec.units:
        raise ValueError(f"{spec.name} needs an LSTM-{spec.units} parent, got LSTM-{parent.units}")
    return run_variants([spec], windows, config, seed, workdir, parents={spec.units: parent})[0]
