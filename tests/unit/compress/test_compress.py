"""Pruning masks and size accounting, with known answers."""

import gzip

import numpy as np
import pytest

from shelfcast.compress.pruning import apply_masks, magnitude_mask, polynomial_sparsity, prune, sparsity_of
from shelfcast.compress.sizes import measure_sizes
from shelfcast.compress.variants import ARTICLE_VARIANTS, VariantSpec

pytestmark = pytest.mark.unit


def test_magnitude_mask_drops_the_smallest_entries():
    weight = np.array([[0.1, -5.0], [0.3, -0.2]])
    mask = magnitude_mask(weight, 0.5)
    assert mask.tolist() == [[False, True], [True, False]]


def test_prune_each_kernel_separately_and_leaves_biases():
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(1, 64)), rng.normal(size=(16, 64)), rng.normal(size=64), rng.normal(size=(16, 1)), rng.normal(size=1)]
    pruned, masks = prune(weights, 0.5)
    for weight, mask in zip(pruned, masks):
        if weight.ndim == 2:
            assert np.count_nonzero(weight) == weight.size - round(0.5 * weight.size)
        else:
            assert mask is None
    np.testing.assert_array_equal(pruned[2], weights[2])
    assert sparsity_of(pruned) == pytest.approx(0.5, abs=0.01)
    # Masks re-applied after an optimizer step put the zeros back exactly.
    moved = [w + 0.01 for w in pruned]
    assert sparsity_of(apply_masks(moved, masks)) == sparsity_of(pruned)


def test_polynomial_sparsity_schedule_known_values():
    assert polynomial_sparsity(0, 0.7, 100) == 0.0
    assert polynomial_sparsity(50, 0.7, 100) == pytest.approx(0.7 * (1 - 0.5 ** 3))  # most of it by half way
    assert polynomial_sparsity(100, 0.7, 100) == pytest.approx(0.7)
    assert polynomial_sparsity(250, 0.7, 100) == pytest.approx(0.7)  # flat after the end: recovery steps
    steps = [polynomial_sparsity(t, 0.7, 100) for t in range(101)]
    assert all(b >= a for a, b in zip(steps, steps[1:]))


def test_invalid_sparsity_is_refused():
    with pytest.raises(ValueError):
        magnitude_mask(np.ones((2, 2)), 1.0)


@pytest.mark.parametrize("units,params", [(64, 16_961), (32, 4_385), (16, 1_169)])
def test_article_parameter_counts_and_accounting(tmp_path, units, params):
    # LSTM(units) on 1 feature + Dense(1): 4u(1 + u + 1) + u + 1 parameters.
    weights = [np.ones((1, 4 * units)), np.ones((units, 4 * units)), np.ones(4 * units), np.ones((units, 1)), np.ones(1)]
    weights[1][0, :10] = 0
    blob = tmp_path / "model.tflite"
    blob.write_bytes(b"\x01" * 1000)
    sizes = measure_sizes(weights, blob)
    assert sizes.params == params
    assert sizes.nonzero_params == params - 10
    assert sizes.article_bytes == params * 4
    assert sizes.tflite_bytes == 1000
    assert sizes.gzip_bytes == len(gzip.compress(b"\x01" * 1000, compresslevel=9, mtime=0))


def test_variant_names_parse_to_the_article_rows():
    names = [v.name for v in ARTICLE_VARIANTS]
    assert names[:7] == ["LSTM-64", "LSTM-32", "LSTM-16", "Pruned-30%", "Pruned-50%", "Pruned-70%", "INT8"]
    assert VariantSpec.parse("pruned50+int8").float_parent == "Pruned-50%"
    assert VariantSpec.parse("lstm16+int8").float_parent == "LSTM-16"
    assert VariantSpec.parse("int8") == VariantSpec("INT8", "int8", 64, 0.0, "int8")
    with pytest.raises(ValueError, match="unknown variant"):
        VariantSpec.parse("gru8")
