"""Magnitude pruning of every kernel (weight matrices; biases untouched) with masks kept during fine-tuning.

`prune` zeroes the smallest-magnitude `sparsity` fraction of each kernel separately (one shot). `MaskCallback`
re-applies the masks after every training batch, so pruned weights stay exactly zero however the optimizer
moves them. `gradual_pruning_callback` instead raises the sparsity during fine-tuning along the polynomial
schedule of Zhu & Gupta (2017), `s(t) = s_f * (1 - (1 - t / T) ** 3)`: most weights go early, while the
network can still compensate, the last few slowly, and the remaining steps recover at the final sparsity.
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


def polynomial_sparsity(step: int, final_sparsity: float, end_step: int, power: int = 3) -> float:
    """Target sparsity at `step` of a schedule from 0 to `final_sparsity` at `end_step` (flat afterwards)."""
    progress = min(max(step / max(end_step, 1), 0.0), 1.0)
    return final_sparsity * (1.0 - (1.0 - progress) ** power)


def gradual_pruning_callback(final_sparsity: float, end_step: int, frequency: int = 25):
    """A Keras callback pruning every kernel by magnitude along `polynomial_sparsity`, re-masking every batch.

    Every `frequency` steps (and at `end_step`) each kernel's mask is recomputed from the current magnitudes at
    the scheduled sparsity; masked weights are zero, so they stay the smallest and stay pruned. `masks` holds
    the final masks after training, one per model weight (None where not a kernel).
    """
    import keras

    class GradualPruning(keras.callbacks.Callback):
        masks: list[np.ndarray | None] = []

        def on_train_begin(self, logs=None):
            self._step = 0
            self.masks = [np.ones(w.shape, dtype=bool) if len(w.shape) == 2 else None for w in self.model.weights]

        def _update_masks(self, sparsity: float) -> None:
            for index, variable in enumerate(self.model.weights):
                if self.masks[index] is not None:
                    self.masks[index] = magnitude_mask(np.asarray(variable.numpy()), sparsity)

        def _apply(self) -> None:
            for variable, mask in zip(self.model.weights, self.masks):
                if mask is not None:
                    variable.assign(np.where(mask, variable.numpy(), 0).astype(variable.dtype))

        def on_train_batch_end(self, batch, logs=None):
            self._step += 1
            if self._step <= end_step and (self._step % frequency == 0 or self._step == end_step):
                self._update_masks(polynomial_sparsity(self._step, final_sparsity, end_step))
            self._apply()

        def on_train_end(self, logs=None):
            if self._step < end_step:  # stopped early: still leave the model at its final sparsity
                self._update_masks(final_sparsity)
            self._apply()

    return GradualPruning()
