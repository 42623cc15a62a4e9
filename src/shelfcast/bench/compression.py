"""The compression benchmark: every variant of every configuration, several seeds, beside the article and the
zero-parameter baselines, with honest sizes and interpreter-measured accuracy.

`run_benchmark` returns the JSON document; `render_table` and `plot_pareto` present it.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from shelfcast.compress.variants import VariantResult, run_variants, train_parents
from shelfcast.contract.features import InputSpec
from shelfcast.data.windows import make_windows
from shelfcast.model import baselines
from shelfcast.compress.configs import ModelConfig
from shelfcast.model.metrics import score, score_by
from shelfcast.model.peers import PEER_LOOKBACK, peer_rows

# The article's published table (its "size" is parameters x 4 bytes / 1024; see shared ANCHORS).
ARTICLE_TABLE = {
    "LSTM-64": {"kb": 66.25, "mape_pct": 15.92, "std": 0.10},
    "LSTM-32": {"kb": 17.13, "mape_pct": 16.22, "std": 0.09},
    "LSTM-16": {"kb": 4.57, "mape_pct": 16.74, "std": 0.46},
    "Pruned-30%": {"kb": 11.99, "mape_pct": 16.04, "std": 0.09},
    "Pruned-50%": {"kb": 8.56, "mape_pct": 16.20, "std": 0.08},
    "Pruned-70%": {"kb": 5.14, "mape_pct": 16.84, "std": 0.16},
    "INT8": {"kb": 4.28, "mape_pct": 16.21, "std": 0.22},
}


def machine_info() -> dict:
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def baseline_rows(sales: pd.DataFrame, workdir: Path) -> tuple[list[dict], dict]:
    """Zero-parameter rules, shelfcast's profile baseline, the peers and the noise floor, on the test windows
    every configuration is scored on (the split keeps the same first test day whatever the lookback).

    Rows carry `kind`: `rule` (nothing fitted), `baseline` (shelfcast's ratio-of-means profile) or `peer` (what
    a data scientist would fit on a server, `shelfcast.model.peers`, with its model file bytes and fit time).
    """
    windows = make_windows(sales, InputSpec(lookback=PEER_LOOKBACK, scaling="window_mean"))
    profile = baselines.ProfileModel.fit(windows.train_keys, windows.y_train_raw)
    forecasts = {
        "same weekday last week (lag 7)": ("rule", baselines.same_weekday_last_week(windows.raw_x_test), 0),
        "mean of same weekday, last 2 weeks": ("rule", baselines.same_weekday_two_weeks(windows.raw_x_test), 0),
        "multiplicative profile (series x weekday x month x trend)": (
            "baseline", profile.predict(windows.test_keys),
            len(profile.series_level) + len(profile.weekday) + len(profile.month) + 1,
        ),
    }
    rows = [
        {"name": name, "kind": kind, "params": params, "model_bytes": 0, **score(windows.y_test, pred).as_dict()}
        for name, (kind, pred, params) in forecasts.items()
    ]
    rows += peer_rows(windows, len(windows.x_train), workdir / "peers")
    return rows, baselines.noise_floor(windows.test_keys, windows.y_test)


def aggregate(results: list[VariantResult], config: ModelConfig, floor_pct: float, keys: pd.DataFrame, y_test) -> list[dict]:
    """One row per variant: mean and std over seeds of the accuracy, sizes from the files."""
    rows = []
    for spec in config.variants:
        runs = [r for r in results if r.name == spec.name]
        ok = [r for r in runs if r.status == "ok"]
        row = {
            "config": config.name,
            "name": spec.name,
            "technique": spec.technique,
            "units": spec.units,
            "sparsity": spec.sparsity,
            "quantization": spec.quantization,
            "float_parent": spec.float_parent,
            "seeds": [r.seed for r in runs],
            "failed": [{"seed": r.seed, "reason": r.reason} for r in runs if r.status != "ok"],
        }
        if ok:
            mape = np.array([r.mape_pct for r in ok])
            row.update(
                params=ok[0].params,
                nonzero_params=int(np.mean([r.nonzero_params for r in ok])),
                article_bytes=ok[0].article_bytes,
                tflite_bytes=int(np.max([r.tflite_bytes for r in ok])),
                gzip_bytes=int(np.mean([r.gzip_bytes for r in ok])),
                mape_mean=float(mape.mean()),
                mape_std=float(mape.std(ddof=1)) if len(mape) > 1 else 0.0,
                mape_per_seed=[float(m) for m in mape],
                smape_mean=float(np.mean([r.smape_pct for r in ok])),
                wape_mean=float(np.mean([r.wape_pct for r in ok])),
                keras_mape_mean=float(np.mean([r.keras_mape_pct for r in ok])),
                latency_us_median=float(np.median([r.latency_us_median for r in ok])),
                train_seconds=float(np.mean([r.train_seconds for r in ok])),
                gap_to_floor_pct_points=float(mape.mean() - floor_pct),
                zero_days=ok[0].zero_days,
            )
            per_series = score_by(keys, y_test, np.mean([r.predictions for r in ok], axis=0))
            row["per_series_mape"] = {
                f"{int(s)}-{int(i)}": round(float(m), 3)
                for s, i, m in per_series[["store", "item", "mape_pct"]].itertuples(index=False)
            }
        rows.append(row)
    return rows


def run_benchmark(
    sales: pd.DataFrame,
    configs: list[ModelConfig],
    seeds: int,
    data_label: str,
    workdir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Train, compress and evaluate every configuration's variants over `seeds` seeds."""
    step = on_step or (lambda message: None)
    start = time.perf_counter()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="shelfcast-bench-"))
    variants, config_meta = [], []
    baselines_start = time.perf_counter()
    rows, floor = baseline_rows(sales, workdir)
    baselines_seconds = time.perf_counter() - baselines_start
    baseline_doc = {"rows": rows, "noise_floor": floor}
    step(f"baselines and peers ready; noise floor {floor['mape_pct_true_mean']:.2f}% MAPE; "
         + "; ".join(f"{r['name'].split(' (')[0]} {r['mape_pct']:.2f}%" for r in rows if r["kind"] == "peer"))
    for config in configs:
        config_start = time.perf_counter()
        windows = make_windows(sales, config.input_spec)
        results = []
        for seed in range(seeds):
            parents = train_parents(
                list(config.variants), windows, config.train, seed,
                lambda units, p: step(f"[{config.name} seed {seed}] trained LSTM-{units} "
                                      f"({p.epochs_run} epochs, {p.train_seconds:.0f}s)"),
            )
            results += run_variants(
                list(config.variants), windows, config.train, seed, workdir / config.name, parents=parents,
                on_step=lambda message, c=config.name, s=seed: step(f"[{c} seed {s}] {message}"),
            )
        floor_pct = baseline_doc["noise_floor"]["mape_pct_true_mean"]
        variants += aggregate(results, config, floor_pct, windows.test_keys, windows.y_test)
        config_meta.append(
            {
                "name": config.name,
                "description": config.description,
                "input_spec": windows.spec.to_dict(),
                "train": config.train.to_dict(),
                "wall_seconds": time.perf_counter() - config_start,
                "n_train_windows": windows.n_train,
                "n_test_windows": windows.n_test,
            }
        )
    floor_pct = baseline_doc["noise_floor"]["mape_pct_true_mean"]
    for row in baseline_doc["rows"]:
        row["gap_to_floor_pct_points"] = row["mape_pct"] - floor_pct
    return {
        "data": data_label,
        "series": int(sales.groupby(["store", "item"]).ngroups),
        "seeds": seeds,
        "configs": config_meta,
        "variants": variants,
        "baselines": baseline_doc["rows"],
        "noise_floor": baseline_doc["noise_floor"],
        "article": ARTICLE_TABLE,
        "machine": machine_info(),
        "baselines_wall_seconds": baselines_seconds,  # rules, profile, both peers fitted and scored, noise floor
        "wall_seconds": time.perf_counter() - start,
    }


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (bytes, MAPE): nothing smaller is also at least as accurate."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def place_labels(ax, labels: list, pad_px: float = 2.0) -> None:
    """Move point labels (annotations in offset points) so none overlaps another or leaves the axes: each label
    in turn goes to the first free slot above or below its point, flipped to the left of it near the right edge."""
    from matplotlib.text import Text

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    text_box = lambda label: Text.get_window_extent(label, renderer)  # noqa: E731 - the text, not its leader
    placed = []
    for label in labels:
        box = text_box(label)
        if box.x1 > frame.x1 - pad_px:
            label.set_horizontalalignment("right")
            label.xyann = (-4, label.xyann[1])
            box = text_box(label)
        base = label.xyann
        for step in range(0, 40):
            dy = (step + 1) // 2 * (box.height + pad_px) * (1 if step % 2 else -1)
            label.xyann = (base[0], base[1] + dy * 72.0 / fig.dpi)
            box = text_box(label)
            inside = frame.y0 + pad_px <= box.y0 and box.y1 <= frame.y1 - pad_px
            if inside and not any(box.overlaps(other) for other in placed):
                break
        placed.append(box)


def pareto_figure(doc: dict):
    """MAPE against `.tflite` bytes: one colour per configuration, circles float32 and squares INT8, the Pareto
    front, the zero-byte rules and peers and the noise floor as lines named in the legend; every label inside
    the axes and clear of the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = [r for r in doc["variants"] if "mape_mean" in r]
    points = [(r["tflite_bytes"], r["mape_mean"]) for r in rows]
    front = pareto_front(points)
    configs = sorted({r["config"] for r in rows})
    palette = plt.get_cmap("tab10")
    colours = {name: palette(i % 10) for i, name in enumerate(configs)}
    fig, ax = plt.subplots(figsize=(10, 6.5))
    labels = []
    for row in rows:
        marker = "s" if row["quantization"] == "int8" else "o"
        ax.scatter(row["tflite_bytes"], row["mape_mean"], marker=marker, s=36, color=colours[row["config"]],
                   edgecolors="black", linewidths=0.4, zorder=3)
        labels.append(ax.annotate(row["name"], (row["tflite_bytes"], row["mape_mean"]), fontsize=7,
                                  xytext=(5, 0), textcoords="offset points", va="center",
                                  color=colours[row["config"]],
                                  arrowprops=dict(arrowstyle="-", lw=0.4, color=colours[row["config"]],
                                                  shrinkA=0, shrinkB=3)))  # a leader once a label moves
    fx = [points[i][0] for i in front]
    fy = [points[i][1] for i in front]
    ax.step(fx, fy, where="post", color="black", linewidth=1, zorder=2)
    handles = [Line2D([], [], color=colours[c], marker="o", ls="", label=f"{c} configuration") for c in configs]
    handles += [Line2D([], [], color="gray", marker="o", ls="", label="float32"),
                Line2D([], [], color="gray", marker="s", ls="", label="INT8"),
                Line2D([], [], color="black", lw=1, label="Pareto front")]
    styles = [":", "-.", (0, (5, 2)), (0, (1, 3)), (0, (3, 1, 1, 1))]
    for index, row in enumerate(doc["baselines"]):
        style = styles[index % len(styles)]
        ax.axhline(row["mape_pct"], linestyle=style, linewidth=0.9, color="dimgray", zorder=1)
        handles.append(Line2D([], [], color="dimgray", ls=style, lw=0.9,
                              label=f"{row['name'][:60]}: {row['mape_pct']:.2f}%"))
    floor = doc["noise_floor"]["mape_pct_true_mean"]
    ax.axhline(floor, color="tab:red", linewidth=1.2, zorder=1)
    handles.append(Line2D([], [], color="tab:red", lw=1.2, label=f"noise floor (true mean known): {floor:.2f}%"))
    ax.set_xscale("log")
    low, high = min(p[0] for p in points), max(p[0] for p in points)
    ax.set_xlim(low / 1.25, high * 1.6)  # room on the right for the largest model's labels
    ys = [p[1] for p in points] + [r["mape_pct"] for r in doc["baselines"]] + [floor]
    ax.set_ylim(min(ys) - 0.3, max(ys) + 0.3 + 0.08 * (max(ys) - min(ys)) * len(handles) / 3)
    ax.set_xlabel(".tflite file size (bytes, log scale)")
    ax.set_ylabel("MAPE % (interpreter, mean over seeds)")
    ax.set_title(f"MAPE against deployable size\n{doc['data']}", fontsize=10)
    ax.grid(alpha=0.25, which="both")
    ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=2, framealpha=0.95)
    fig.tight_layout()
    place_labels(ax, labels)
    return fig


def plot_pareto(doc: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = pareto_figure(doc)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def merge_generalisation(previous: dict | None, config: str, runs: list[dict], details: dict) -> dict:
    """The generalisation document after a run: this run's subsets, then the earlier subsets it did not rerun.

    An earlier document of another configuration is dropped whole: its rows would not be the same model's.
    """
    doc = {"config": config, "runs": list(runs), "details": dict(details)}
    if previous and previous.get("config") == config:
        rerun = {run["subset"] for run in runs}
        kept = [run for run in previous.get("runs", []) if run["subset"] not in rerun]
        doc["runs"] = kept + doc["runs"]
        doc["details"] = {**{s: d for s, d in previous.get("details", {}).items() if s not in rerun}, **details}
    return doc


def generalisation_summary(doc: dict, subset: str, config_name: str) -> dict:
    """One row of the generalisation table from a benchmark document of one subset."""
    rows = {r["name"]: r for r in doc["variants"] if r["config"] == config_name and "mape_mean" in r}
    baselines = {r["name"]: r for r in doc["baselines"]}
    rule = next(r for n, r in baselines.items() if n.startswith("mean of same weekday"))
    profile = next(r for n, r in baselines.items() if n.startswith("multiplicative profile ("))
    peers = {r["key"]: r for r in doc["baselines"] if r.get("kind") == "peer"}
    floor = doc["noise_floor"]["mape_pct_true_mean"]
    int8 = next((r for r in rows.values() if r["quantization"] == "int8"), None)
    parent = rows.get(int8["float_parent"]) if int8 else None
    return {
        "subset": subset,
        "series": doc["series"],
        "seeds": doc["seeds"],
        "variant": int8["name"] if int8 else None,
        "int8_mape_mean": int8["mape_mean"] if int8 else None,
        "int8_mape_std": int8["mape_std"] if int8 else None,
        "float_mape_mean": parent["mape_mean"] if parent else None,
        "tflite_bytes": int8["tflite_bytes"] if int8 else None,
        "noise_floor_mape": floor,
        "gap_to_floor_pct_points": (int8["mape_mean"] - floor) if int8 else None,
        "profile_mape": profile["mape_pct"],
        "two_week_rule_mape": rule["mape_pct"],
        **{f"{key}_{field}": peer[source] for key, peer in sorted(peers.items())
           for field, source in (("mape", "mape_pct"), ("bytes", "model_bytes"), ("fit_seconds", "fit_seconds"))},
        "epochs": next(c["train"]["epochs"] for c in doc["configs"] if c["name"] == config_name),
        "wall_seconds": doc["wall_seconds"],
    }
