"""The LSTM forecaster: the article's `LSTM(units, tanh) -> Dropout(0.2) -> Dense(1)`, Adam, MSE by default.

`train_lstm` returns the trained model and how long it took; it logs nothing. Every random thing is seeded.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from shelfcast.contract.features import InputSpec

LOSSES = ("mse", "mae", "mape_like")
PRUNINGS = ("gradual", "one_shot")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. `loss='mape_like'` is mean |error| / target level, matching the reported metric."""

    epochs: int = 80
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 6
    min_epochs: int = 15  # neither stop nor slow down before this: MSE on scaled sales starts on a long plateau
    lr_patience: int = 3  # halve the learning rate after this many epochs without improvement
    dropout: float = 0.2
    loss: str = "mse"
    finetune_epochs: int = 4
    finetune_learning_rate: float = 3e-4
    pruning: str = "gradual"  # "gradual" (polynomial schedule during fine-tuning) or "one_shot"
    prune_end_fraction: float = 0.5  # gradual: the share of fine-tuning steps over which the sparsity rises

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}; choose one of {LOSSES}")
        if self.pruning not in PRUNINGS:
            raise ValueError(f"pruning={self.pruning!r}; choose one of {PRUNINGS}")
        if not 0 < self.prune_end_fraction <= 1:
            raise ValueError(f"prune_end_fraction={self.prune_end_fraction}; choose a share of steps in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainedModel:
    model: object  # keras.Model
    units: int
    seed: int
    train_seconds: float
    epochs_run: int
    spec: InputSpec

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.model.get_weights()]


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def seed_everything(seed: int) -> None:
    keras = _keras()
    keras.utils.set_random_seed(seed)


def build_lstm(units: int, spec: InputSpec, dropout: float = 0.2):
    """`LSTM(units, tanh) -> Dropout -> Dense(1)` on inputs (lookback, n_features)."""
    keras = _keras()
    inputs = keras.Input((spec.lookback, spec.n_features), name="sales_window")
    hidden = keras.layers.LSTM(units, activation="tanh", name="lstm")(inputs)
    hidden = keras.layers.Dropout(dropout, name="dropout")(hidden)
    outputs = keras.layers.Dense(1, name="forecast")(hidden)
    return keras.Model(inputs, outputs, name=f"lstm{units}")


def _loss(name: str):
    if name == "mape_like":
        import keras.ops as ops

        def mape_like(y_true, y_pred):
            # Targets are level-scaled sales (about 1); dividing by them matches MAPE on raw sales.
            return ops.mean(ops.abs(y_pred - y_true) / ops.maximum(ops.abs(y_true), 0.05))

        return mape_like
    return name


def _late_reduce_lr(start_epoch: int, **kwargs):
    """ReduceLROnPlateau that only starts watching after `start_epoch` (it would otherwise starve the escape
    from the initial plateau, where every model first learns the mean)."""
    keras = _keras()

    class LateReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
        def on_epoch_end(self, epoch, logs=None):
            if epoch >= start_epoch:
                super().on_epoch_end(epoch, logs)

    return LateReduceLROnPlateau(**kwargs)


def train_lstm(
    windows,
    units: int,
    seed: int,
    config: TrainConfig = TrainConfig(),
    initial_weights: list[np.ndarray] | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    callbacks: list | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> TrainedModel:
    """Train (or, with `initial_weights`, fine-tune) an LSTM on `windows`, early-stopped on the validation slice."""
    keras = _keras()
    seed_everything(seed)
    model = build_lstm(units, windows.spec, config.dropout)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate or config.learning_rate),
        loss=_loss(config.loss),
    )
    extra = list(callbacks or [])
    if on_epoch is not None:
        extra.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs or {})))
    start = time.perf_counter()
    history = model.fit(
        windows.x_train,
        windows.y_train,
        validation_data=(windows.x_val, windows.y_val),
        epochs=epochs or config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True,
                start_from_epoch=min(config.min_epochs, (epochs or config.epochs) - 1),
            ),
            # min_delta=0: MSE on scaled sales is ~1e-3, so Keras' absolute default (1e-4) would see no progress.
            _late_reduce_lr(config.min_epochs, monitor="val_loss", factor=0.5, patience=config.lr_patience,
                            min_delta=0.0, min_lr=1e-5),
            *extra,
        ],
    )
    return TrainedModel(
        model=model,
        units=units,
        seed=seed,
        train_seconds=time.perf_counter() - start,
        epochs_run=len(history.history["loss"]),
        spec=windows.spec,
    )


def predict_scaled(model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Keras predictions on scaled inputs, shape (n,)."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).reshape(-1)
