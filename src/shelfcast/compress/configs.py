"""Named model configurations: what goes in, how it trains, which variants fan out from it.

`article` reproduces the article (global min-max scaling of 14 days of sales, MSE loss, LSTM-64 baseline).
`edge` is shelfcast's default for stores: eight weeks of history, every day divided by the window's level times a
pooled weekday x month profile (19 numbers for all series, carried in the manifest's input spec; no per-series
state), so the LSTM learns only the residual of that profile; weekday and day-of-year inputs, a loss that matches
MAPE, and small INT8 LSTMs that fit the edge budget. The `edge-*` configurations each take one of those choices back, for the ablation table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shelfcast.compress.variants import ARTICLE_VARIANTS, VariantSpec
from shelfcast.contract.features import InputSpec
from shelfcast.model.lstm import TrainConfig


@dataclass(frozen=True)
class ModelConfig:
    name: str
    input_spec: InputSpec
    train: TrainConfig
    variants: tuple[VariantSpec, ...]
    description: str = ""

    def with_train(self, **changes) -> "ModelConfig":
        return replace(self, train=replace(self.train, **changes))

    def with_variants(self, names: list[str]) -> "ModelConfig":
        return replace(self, variants=tuple(VariantSpec.parse(n) for n in names))


ARTICLE = ModelConfig(
    name="article",
    input_spec=InputSpec(lookback=14, scaling="global_minmax", calendar=False),
    train=TrainConfig(loss="mse", finetune_epochs=8),  # pruning: 4 epochs along the schedule, 4 to recover
    variants=ARTICLE_VARIANTS,
    description="the article's setup: 14 days of min-max scaled sales, LSTM + Dropout(0.2) + Dense(1), MSE",
)

EDGE = ModelConfig(
    name="edge",
    input_spec=InputSpec(lookback=56, scaling="profile", calendar=True),
    train=TrainConfig(loss="mape_like"),
    variants=tuple(VariantSpec.parse(v) for v in ("lstm16", "lstm8", "lstm16+int8", "lstm8+int8")),
    description="the residual of a pooled weekday x month profile scaled to the window's level, weekday and "
    "day-of-year inputs, MAPE-matched loss, small INT8 LSTMs",
)

_LSTM16 = tuple(VariantSpec.parse(v) for v in ("lstm16", "lstm16+int8"))
ABLATIONS = (
    replace(EDGE, name="edge-window-mean", input_spec=replace(EDGE.input_spec, scaling="window_mean"), variants=_LSTM16,
            description="edge dividing by the window's mean instead of its level times the pooled profile"),
    replace(EDGE, name="edge-14d", input_spec=replace(EDGE.input_spec, lookback=14), variants=_LSTM16,
            description="edge with the article's 14 days of history"),
    replace(EDGE, name="edge-mse", train=replace(EDGE.train, loss="mse"), variants=_LSTM16,
            description="edge trained with MSE instead of the MAPE-matched loss"),
    replace(EDGE, name="edge-nocal", input_spec=replace(EDGE.input_spec, calendar=False), variants=_LSTM16,
            description="edge without weekday and day-of-year inputs"),
    replace(EDGE, name="edge-minmax", input_spec=replace(EDGE.input_spec, scaling="global_minmax"), variants=_LSTM16,
            description="edge with the article's global min-max scaling instead of window-mean levels"),
)

CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (ARTICLE, EDGE, *ABLATIONS)}
DEFAULT_CONFIG = "edge"


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model configuration {name!r}; choose one of {sorted(CONFIGS)}") from None
