"""Magnitude pruning of every kernel (weight matrices; biases untouched) with masks kept during fine-tuning.

`prune` zeroes the smallest-magnitude `sparsity` fraction of each kernel separately. `MaskCallback` re-applies
the masks after every training batch, so pruned weights stay exactly zero however the optimizer moves them.
"""

from __future__ import annotations

import numpy as np


def is_kernel(weight: np.ndarray) -> bool:
    """Kernels are the 2-D weight matrices (LSTM input and recurrent kernels, Dense kernel)."""
    return weight.ndim == 2


def magnitude_mask(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask keeping all but the `round(sparsity * size)` smallest-magnitude entries."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    n_prune = int(round(sparsity * weight.size))
    mask = np.ones(weight.shape, dtype=bool)
    if n_prune:
        order = np.argsort(np.abs(weight), axis=None, kind="stable")[:n_prune]
        mask.reshape(-1)[order] = False
    return mask


def prune(weights: list[np.ndarray], sparsity: float) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Return pruned copies of `weights` and one mask per weight (None where the weight is not pruned)."""
    pruned, masks = [], []
    for weight in weights:
        if is_kernel(weight):
            mask = magnitude_mask(weight, sparsity)
            pruned.append(np.where(mask, weight, 0).astype(weight.dtype))
            masks.append(mask)
        else:
            pruned.append(weight.copy())
            masks.append(None)
    return pruned, masks


def apply_masks(weights: list[np.ndarray], masks: list[np.ndarray | None]) -> list[np.ndarray]:
    return [w if m is None else np.where(m, w, 0).astype(w.dtype) for w, m in zip(weights, masks)]


def sparsity_of(weights: list[np.ndarray]) -> float:
    """Fraction of zeros across the kernels."""
    kernels = [w for w in weights if is_kernel(w)]
    total = sum(w.size for w in kernels)
    return float(sum(w.size - np.count_nonzero(w) for w in kernels) / total) if total else 0.0


def mask_callback(masks: list[np.ndarray | None]):
    """A Keras callback that multiplies each masked variable by its mask after every batch."""
    import keras

    class MaskCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._pairs = [
                (variable, keras.ops.convert_to_tensor(mask.astype("float32")))
                for variable, mask in zip(self.model.weights, masks)
                if mask is not None
            ]
            self._apply()

        def _apply(self):
            for variable, mask in self._pairs:
                variable.assign(variable * mask)

        def on_train_batch_end(self, batch, logs=None):
            self._apply()

        def on_train_end(self, logs=None):
            self._apply()

    return MaskCallback()
