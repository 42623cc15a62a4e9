"""The steps of one nightly retrain as plain functions; `flows/retrain.py` wraps each one in a Prefect task.

Data: the rolling window (`RetrainConfig.window_days`) ending at the newest day in the sales store; the last
`holdout_days` of every series are the evaluation period. Models: one float parent per size the variants need
(optionally warm-started from the champion's night), then every variant built from its parent
(`shelfcast.compress.variants.build_variant`). Context metrics for the gate: the two-week same-weekday rule
(`naive_mape_pct`), the float parent of an INT8 variant (`parent_mape_pct`) and the current champion run on
the same holdout (`champion_mape_pct`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from shelfcast.data.schema import parse_range
from shelfcast.data.sales import SalesTable
from shelfcast.data.windows import SplitSpec, WindowSet, make_windows
from shelfcast.contract.errors import ConfigError, SalesSchemaError
from shelfcast.contract.features import InputSpec, build_inputs
from shelfcast.model.baselines import same_weekday_two_weeks
from shelfcast.pipeline import leases
from shelfcast.model.metrics import paired_mape_gain, score
from shelfcast.pipeline.config import RetrainConfig


@dataclass
class TrainingData:
    frame: pd.DataFrame
    start: date
    end: date
    series: int
    table_version: int = -1  # the sales table version read: `SalesTable.load(..., version=...)` reads it again

    @property
    def rows(self) -> int:
        return len(self.frame)


def maintain_sales(store: SalesTable, retention_days: int) -> dict:
    """Compaction, checkpoint and vacuum of the sales table before the night reads it; every version of the last
    `retention_days` stays readable, so recent nights' training sets can be read again."""
    return store.maintain(retention_days)


def load_training_data(store: SalesTable, config: RetrainConfig, version: int | None = None) -> TrainingData:
    """The rolling window of committed sales of the configured stores and items, from one table version (the
    latest, or `version` to re-read an earlier night's training set). The stores, items and dates go down to the
    reader, so only the files that can hold them are read."""
    dt = store.table(version)
    end = store.newest_date(dt)
    if end is None:
        raise ConfigError("the sales store is empty; deliver files to landing/ and run `shelfcast ingest` first")
    start = end - timedelta(days=config.window_days - 1)
    frame = store.load(start, end, stores=parse_range(config.stores), items=parse_range(config.items), dt=dt)
    if frame.empty:
        raise ConfigError(f"no sales for stores={config.stores} items={config.items} in {start}..{end}")
    first = frame["date"].min().date()
    series = int(frame.groupby(["store", "item"]).ngroups)
    return TrainingData(frame, first, end, series, dt.version())


def clean_up_crashed_nights(home: Path, tracker, objects=None) -> list[dict]:
    """Nights of this home whose process died mid-run (`leases`): the MLflow parent run each left RUNNING on
    this tracker is marked FAILED (`night_status=crashed`), its work folder and its inputs in the bucket
    (`objects`) removed. Returns what each lease recorded (the Prefect flow run is `run_id`), for the caller to
    mark the flow run crashed too."""
    found = []
    for lease in leases.abandoned(home, "night"):
        facts = lease.describe()
        if facts.get("tracking_uri", tracker.tracking_uri) != tracker.tracking_uri:
            lease.abandon()  # recorded on another MLflow: a night tracking there marks it
            continue
        reason = (f"crashed: process {facts.get('pid')} on {facts.get('host')} ended without finishing the night "
                  f"(started {facts.get('started')}); marked by the next night")
        if facts.get("mlflow_run_id"):
            tracker.mark_crashed(facts["mlflow_run_id"], reason)
        if facts.get("work_folder"):
            shutil.rmtree(facts["work_folder"], ignore_errors=True)
        if facts.get("inputs_key") and objects is not None:
            objects.delete(facts["inputs_key"])
        lease.release()
        found.append({**facts, "reason": reason})
    return found


def night_windows(data: TrainingData, input_spec: InputSpec, holdout_days: int) -> WindowSet:
    """Windows with the last `holdout_days` of each series held out (chronological split per series).

    A series with too little history for that (an item launched a few weeks ago) is left out of tonight's
    training and named in `skipped_series`; stores forecast it once it has history. Only when no series has
    enough does the night fail."""
    days = data.frame.groupby(["store", "item"])["date"].nunique()
    needed = input_spec.lookback + 2 * holdout_days + 1
    short = days[days < needed]
    if len(short) == len(days):
        raise SalesSchemaError(
            f"{int(days.max())} days of history per series leave {int(days.max()) - input_spec.lookback} windows, "
            f"too few for a {holdout_days}-day holdout; ingest more history, lower holdout_days, or raise window_days"
        )
    frame = data.frame
    if len(short):
        keep = ~frame.set_index(["store", "item"]).index.isin(short.index)
        frame = frame[keep]
    n_windows = int(days[days >= needed].min()) - input_spec.lookback
    # Anchored on this model's own lookback, so the holdout is exactly the last `holdout_days` of every series.
    split = SplitSpec(test_fraction=holdout_days / n_windows, val_fraction=0.1, reference_lookback=input_spec.lookback)
    windows = make_windows(frame, input_spec, split)
    windows.skipped_series = [(int(store), int(item), int(n)) for (store, item), n in short.items()]
    return windows


def parent_sizes(specs) -> list[int]:
    return sorted({spec.units for spec in specs}, reverse=True)


def naive_mape(windows: WindowSet) -> float:
    """MAPE of the mean of the same weekday over the last two weeks, on the holdout."""
    return score(windows.y_test, same_weekday_two_weeks(windows.raw_x_test)).mape_pct


def input_dates(windows: WindowSet) -> np.ndarray:
    """The date of every input day of every holdout window, shape (n, lookback)."""
    lookback = windows.spec.lookback
    targets = pd.to_datetime(windows.test_keys["date"]).to_numpy().astype("datetime64[D]")
    return targets[:, None] - np.arange(lookback, 0, -1).astype("timedelta64[D]")


def evaluate_tflite(path: Path, spec: InputSpec, windows: WindowSet) -> dict:
    """MAPE/SMAPE/WAPE of a `.tflite` model (with its own input spec) on this night's holdout."""
    from shelfcast.contract.runtime import TFLiteForecaster

    if spec.lookback != windows.spec.lookback:
        raise ValueError(f"the model reads {spec.lookback} days, the windows hold {windows.spec.lookback}")
    dates = input_dates(windows) if spec.needs_dates else None
    x = build_inputs(windows.raw_x_test, dates, spec)
    predictions = spec.unscale(TFLiteForecaster(path).predict(x), windows.raw_x_test, dates)
    scores = score(windows.y_test, predictions)
    return {"mape_pct": scores.mape_pct, "smape_pct": scores.smape_pct, "wape_pct": scores.wape_pct,
            "predictions": predictions}


@dataclass
class ChampionScore:
    """The current champion (`tracking.Champion`, loaded once) scored on tonight's holdout, or why not."""

    version: str | None = None
    run_id: str | None = None
    night_run_id: str | None = None
    mape_pct: float | None = None
    note: str = ""
    predictions: np.ndarray | None = field(default=None, repr=False)  # its forecasts of tonight's holdout

    def summary(self) -> dict:
        """What the night report says of the champion (its forecasts stay out)."""
        return {k: v for k, v in self.__dict__.items() if k != "predictions"}


def champion_context(tracker, windows: WindowSet, workdir: Path) -> ChampionScore:
    """Score the `champion` alias's `.tflite` on tonight's holdout (so candidates compare on the same days)."""
    champion = tracker.load_champion(workdir)
    if champion is None:
        return ChampionScore(note="no champion yet")
    score = ChampionScore(champion.version, champion.run_id, champion.night_run_id)
    try:
        if not champion.input_spec or champion.tflite_path is None:
            raise ValueError("its run has no input_spec parameter or no .tflite under tflite/")
        spec = InputSpec.from_dict(dict(champion.input_spec))
        scores = evaluate_tflite(Path(champion.tflite_path), spec, windows)
        score.mape_pct, score.predictions = scores["mape_pct"], scores["predictions"]
    except (KeyError, ValueError) as exc:
        score.note = f"champion v{champion.version} not scored on tonight's holdout: {exc}"
    return score


def warm_start_weights(tracker, model_name: str, sizes: list[int], champion: ChampionScore,
                       workdir: Path, input_spec: InputSpec) -> tuple[dict[int, list[np.ndarray]], str]:
    """Float parent weights per size from the champion's night (else the latest complete night), from models
    with tonight's inputs only: weights for other inputs do not fit tonight's network.

    Returns the weights found and a note saying where they came from and which sizes train cold.
    """
    night_run_id = champion.night_run_id
    origin = f"champion v{champion.version}"
    if night_run_id is None:
        latest = tracker.latest_complete_night()
        if latest is None:
            return {}, "warm start requested but no earlier night exists: every size trains cold"
        night_run_id, origin = latest.info.run_id, f"night {latest.data.tags.get('night', '?')}"
    import keras

    weights: dict[int, list[np.ndarray]] = {}
    tonight = json.loads(json.dumps(input_spec.to_dict()))  # as the runs' `input_spec` parameter reads back
    other_inputs = False
    for run in tracker.night_runs(night_run_id):
        params = run.data.params
        if (run.data.tags.get("status") != "ok" or params.get("model") != model_name
                or params.get("quantization") != "float32" or float(params.get("sparsity", 1)) != 0.0):
            continue
        if json.loads(params.get("input_spec", "{}")) != tonight:
            other_inputs = True
            continue
        units = int(params["units"])
        if units not in sizes or units in weights:
            continue
        folder = tracker.download(run.info.run_id, "keras", workdir / f"warm-{units}")
        (path,) = sorted(folder.glob("*.keras"))[:1]
        weights[units] = keras.models.load_model(path, compile=False).get_weights()
    cold = [u for u in sizes if u not in weights]
    found = f"sizes {sorted(weights)} fine-tuned" if weights else "no matching model"
    note = f"warm start from {origin}: {found}" + (" (its inputs differ from tonight's)" if other_inputs else "")
    return weights, note + (f"; sizes {cold} train cold" if cold else "")


@dataclass
class ParentWeights:
    """A trained float parent as plain arrays: what travels between task-runner processes.

    A compiled Keras model does not survive pickling when its loss is a custom function (`mape_like`), and
    weights are all a variant needs: `rebuild` makes the same model again wherever the variant is built.
    """

    units: int
    seed: int
    weights: list[np.ndarray]
    train_seconds: float
    epochs_run: int
    spec: InputSpec
    dropout: float
    initialised_from: str = "cold"

    def rebuild(self):
        from shelfcast.model.lstm import TrainedModel, build_lstm

        model = build_lstm(self.units, self.spec, self.dropout)
        model.set_weights(self.weights)
        return TrainedModel(model, self.units, self.seed, self.train_seconds, self.epochs_run, self.spec)


def train_parent(windows: WindowSet, units: int, seed: int, train_config, initial_weights=None,
                 warm_epochs=None) -> ParentWeights:
    """A float parent: trained cold, or fine-tuned from earlier weights for `warm_epochs` at the fine-tune rate."""
    from shelfcast.model.lstm import train_lstm

    if initial_weights is None:
        trained = train_lstm(windows, units, seed, train_config)
    else:
        trained = train_lstm(windows, units, seed, train_config, initial_weights=initial_weights,
                             epochs=warm_epochs, learning_rate=train_config.finetune_learning_rate)
    return ParentWeights(units, seed, trained.get_weights(), trained.train_seconds, trained.epochs_run,
                         trained.spec, train_config.dropout, "cold" if initial_weights is None else "warm")


def context_metrics(results, naive_mape_pct: float, champion: ChampionScore, y_test=None) -> dict[str, dict]:
    """Per variant: the metrics the gate compares against (naive rule, float parent, champion), and whether the
    file uses LiteRT builtin ops only (1 or 0), which the edge budget requires.

    With the champion's forecasts of the same holdout and its actuals `y_test`, the paired comparison too:
    `champion_gain_pts` (the champion's MAPE minus the variant's, on the same days) and `champion_gain_se`
    (its standard error, see `paired_mape_gain`), so promotion can ask for a gain that is not noise."""
    from shelfcast.contract.runtime import TFLiteForecaster

    by_name = {r.name: r for r in results}
    extra = {}
    for result in results:
        metrics = {"naive_mape_pct": naive_mape_pct}
        if result.status == "ok" and result.tflite_path:
            metrics["builtin_ops_only"] = float(TFLiteForecaster(result.tflite_path).builtin_ops_only())
        parent = by_name.get(result.float_parent) if result.float_parent else None
        if parent is not None and parent.status == "ok":
            metrics["parent_mape_pct"] = parent.mape_pct
        if champion.mape_pct is not None:
            metrics["champion_mape_pct"] = champion.mape_pct
        if champion.predictions is not None and y_test is not None and result.predictions is not None:
            gain, se, _ = paired_mape_gain(y_test, champion.predictions, result.predictions)
            if np.isfinite(se):
                metrics["champion_gain_pts"], metrics["champion_gain_se"] = gain, se
        extra[result.name] = metrics
    return extra


def plot_mape_vs_bytes(results, path: Path, naive_mape_pct: float, champion: ChampionScore, title: str) -> Path:
    """MAPE against deployable `.tflite` bytes for the night's variants, with the naive rule and the champion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        if r.status != "ok":
            continue
        ax.scatter(r.tflite_bytes, r.mape_pct, marker="s" if r.quantization == "int8" else "o", color="tab:green")
        ax.annotate(r.name, (r.tflite_bytes, r.mape_pct), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.axhline(naive_mape_pct, linestyle=":", color="gray", label=f"same weekday, 2 weeks: {naive_mape_pct:.2f}%")
    if champion.mape_pct is not None:
        ax.axhline(champion.mape_pct, linestyle="--", color="tab:blue",
                   label=f"champion v{champion.version}: {champion.mape_pct:.2f}%")
    ax.set_xscale("log")
    ax.set_xlabel(".tflite bytes (log scale)")
    ax.set_ylabel("MAPE % on the holdout (interpreter)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class NightReport:
    """What one night produced, for the CLI table, the Prefect artifact and promotion."""

    night: str
    parent_run_id: str
    data: dict
    variants: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    naive_mape_pct: float | None = None
    champion: dict = field(default_factory=dict)
    warm_note: str = ""
    seconds: float = 0.0
    promotion: dict | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def night_markdown(report: NightReport, tracking_uri: str) -> str:
    lines = [
        f"# Nightly retrain {report.night}",
        "",
        f"Data: {report.data.get('rows', 0):,} rows, {report.data.get('series', 0)} series, "
        f"{report.data.get('start')}..{report.data.get('end')}; holdout {report.data.get('holdout_days')} days. "
        f"MLflow parent run `{report.parent_run_id}` at {tracking_uri}.",
        "",
        f"Same-weekday two-week rule on the holdout: {report.naive_mape_pct:.2f}% MAPE. "
        + (f"Champion v{report.champion.get('version')}: {report.champion['mape_pct']:.2f}%. "
           if report.champion.get("mape_pct") is not None else f"{report.champion.get('note', '')}. ")
        + report.warm_note,
        "",
        "| variant | status | MAPE % | .tflite B | gzip B | params | non-zero | train s | version |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for v in report.variants:
        m = v.get("metrics", {})
        lines.append(
            f"| {v['name']} | {v['status']} | {m.get('mape_pct', float('nan')):.2f} | {int(m.get('tflite_bytes', 0)):,} | "
            f"{int(m.get('gzip_bytes', 0)):,} | {int(m.get('params', 0)):,} | {int(m.get('nonzero_params', 0)):,} | "
            f"{m.get('train_seconds', 0):.1f} | {v.get('version') or v.get('reason', '')[:120]} |"
        )
    lines += ["", f"Candidates: {', '.join('v' + c['version'] + ' ' + c['variant'] for c in report.candidates) or 'none'}."]
    return "\n".join(lines) + "\n"
