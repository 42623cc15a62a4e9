"""The benchmark plot a person reads: every label inside the axes and clear of the others, one distinct colour
per configuration, a legend inside the axes naming the configurations, markers and reference lines."""

from __future__ import annotations

import pytest

from shelfcast.bench.compression import pareto_figure

pytestmark = pytest.mark.unit


def crowded_doc() -> dict:
    """Four configurations whose variants sit almost on top of each other (what the ablation plot showed)."""
    variants = []
    for c, config in enumerate(("edge-14d", "edge-minmax", "edge-mse", "edge-nocal")):
        for name, quantization, size in (("LSTM-16", "float32", 8724), ("LSTM-16+INT8", "int8", 5768)):
            variants.append({"config": config, "name": name, "quantization": quantization,
                             "tflite_bytes": size + c, "mape_mean": 13.5 + 0.02 * c})
    baselines = [{"name": "same weekday last week (lag 7)", "mape_pct": 18.85},
                 {"name": "multiplicative profile GLM (series x weekday x month x quadratic trend, Poisson)",
                  "mape_pct": 12.81}, {"name": "LightGBM global", "mape_pct": 12.84}]
    return {"variants": variants, "baselines": baselines, "noise_floor": {"mape_pct_true_mean": 12.68},
            "data": "demand-forecasting-kernels-only.zip stores 1-5 items 1-10 (a long name for a title)"}


def test_labels_stay_inside_the_axes_and_never_overlap():
    fig = pareto_figure(crowded_doc())
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == 8
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    title = ax.title.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= fig.bbox.x1  # the title is not cut


def test_each_configuration_has_its_own_colour_and_the_legend_names_everything():
    fig = pareto_figure(crowded_doc())
    (ax,) = fig.axes
    colours = {tuple(collection.get_facecolor()[0]) for collection in ax.collections}
    assert len(colours) == 4
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"edge-14d configuration", "float32", "INT8", "Pareto front"} <= set(texts)
    assert any(t.startswith("noise floor") and "12.68%" in t for t in texts)
    fig.canvas.draw()
    box, frame = legend.get_window_extent(), ax.get_window_extent()
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
