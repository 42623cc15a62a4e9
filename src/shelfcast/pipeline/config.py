"""`RetrainConfig`: everything a nightly retrain is configured by, as one validated object.

It is a Prefect flow parameter (shown and editable in the UI, set per deployment in `deployments/prefect.yaml`)
and a JSON file for the CLI (`shelfcast retrain --config FILE`). Presets: `nightly` (the production default)
and `quick` (a few minutes on two cores: the main job, the tests and the benchmark).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from shelfcast.contract.errors import ConfigError


class RetrainConfig(BaseModel):
    """One night's retraining: data window, model configuration, variants, warm start, task runner."""

    model: str = Field("edge", description="model configuration (shelfcast.compress.configs): edge or article")
    variants: list[str] | None = Field(
        None, description="variants to fan out, e.g. ['lstm16', 'lstm16+int8']; None: the model configuration's list")
    window_days: int = Field(730, ge=60, description="rolling training window: the last N days in the sales store")
    holdout_days: int = Field(56, ge=7, description="the most recent days every variant is evaluated on")
    stores: str | None = Field(None, description="store ids, e.g. '1-5'; None: every store")
    items: str | None = Field(None, description="item ids, e.g. '1-10'; None: every item")
    epochs: int | None = Field(None, ge=1, description="maximum training epochs (None: the model configuration's)")
    finetune_epochs: int | None = Field(None, ge=1, description="fine-tune epochs after pruning")
    batch_size: int | None = Field(None, ge=8)
    learning_rate: float | None = Field(None, gt=0, lt=1)
    patience: int | None = Field(None, ge=1)
    min_epochs: int | None = Field(None, ge=1, description="no early stop or learning-rate cut before this epoch")
    seed: int = 0
    warm_start: bool = Field(False, description="start from the champion's weights and fine-tune")
    warm_epochs: int = Field(4, ge=1, description="epochs of a warm start")
    task_runner: Literal["thread", "dask", "ray"] = "thread"
    workers: int = Field(1, ge=1, description="threads, or local Dask worker processes, or local Ray CPUs")
    dask_address: str | None = Field(None, description="an existing Dask scheduler (tcp://HOST:PORT) instead of a local cluster")
    drill: Literal["calendar-lost", "int8-miscalibrated"] | None = Field(
        None, description="a fault drill for replays and game days, never for production: 'calendar-lost' trains "
        "without the weekday and month inputs (no calendar features, no pooled profile), 'int8-miscalibrated' "
        "calibrates INT8 on a representative set scaled by a fiftieth, so the conversion clips real inputs far "
        "below anything the model was trained on (a quarter clipped them to a low-sales window, which cost only "
        "0.24 points)")
    sales_retention_days: int = Field(
        14, ge=1, description="days every sales table version stays readable (time travel to a recent night's "
        "training set); the nightly compaction's vacuum removes files older than that")

    @field_validator("variants")
    @classmethod
    def _variants_parse(cls, value):
        if value is None:
            return value
        from shelfcast.compress.variants import VariantSpec

        if not value:
            raise ValueError("the variant list is empty; name at least one, e.g. ['lstm16+int8']")
        for name in value:
            try:
                VariantSpec.parse(name)
            except ValueError:
                raise ValueError(f"unknown variant {name!r}; write e.g. lstm32, pruned50, lstm16+int8, int8") from None
        return value

    @field_validator("model")
    @classmethod
    def _model_known(cls, value):
        from shelfcast.compress.configs import get_config

        get_config(value)
        return value

    def model_config_obj(self):
        """The `ModelConfig` (shelfcast.compress.configs) with this night's overrides applied."""
        from shelfcast.compress.configs import get_config

        config = get_config(self.model)
        changes = {k: v for k, v in (("epochs", self.epochs), ("finetune_epochs", self.finetune_epochs),
                                     ("batch_size", self.batch_size), ("patience", self.patience),
                                     ("learning_rate", self.learning_rate), ("min_epochs", self.min_epochs))
                   if v is not None}
        if changes:
            config = config.with_train(**changes)
        if self.variants is not None:
            config = config.with_variants(self.variants)
        if self.drill == "calendar-lost":
            from dataclasses import replace

            config = replace(config, input_spec=replace(config.input_spec, calendar=False, scaling="window_mean"))
        return config

    @classmethod
    def load(cls, source: str | Path | None, **overrides) -> "RetrainConfig":
        """A preset name (`nightly`, `quick`) or a JSON file, with keyword overrides (None values ignored)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if source is None or str(source) in PRESETS:
            data = dict(PRESETS[str(source or "nightly")])
        else:
            path = Path(source)
            if not path.exists():
                raise ConfigError(f"retrain configuration {source!r} is neither a preset {sorted(PRESETS)} nor a file")
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls(**{**data, **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise ConfigError(f"retrain configuration {source or 'nightly'}: {where}: {first['msg']}") from None


# The two schedules, in cron syntax (the timezone is set where they are deployed). `deployments/prefect.yaml`
# writes the same two; a test holds them equal.
INGEST_CRON = "0 * * * *"  # hourly: new sales files are ingested within the hour
RETRAIN_CRON = "0 2 * * *"  # 02:00: after the day's last delivery, before stores open

PRESETS: dict[str, dict] = {
    "nightly": {},
    "quick": {
        "variants": ["lstm16", "lstm16+int8", "lstm8+int8"],
        "window_days": 400,
        "holdout_days": 28,
        "epochs": 8,
        "batch_size": 64,
        "learning_rate": 0.003,
        "finetune_epochs": 1,
        "patience": 3,
        "min_epochs": 2,
        "warm_epochs": 2,
    },
    # The replay's nights (`shelfcast replay`): one float parent and its INT8 child on the last year, so a year
    # of weekly nights fits an hour on two cores; warm nights fine-tune the champion for `warm_epochs`.
    # A window leaves a whole year of training days after the holdout (400 - 28 = 372), so the profile fits
    # every month's factor: with 365 days, the month of a holdout ending on a month's last day had none.
    "replay": {
        "variants": ["lstm16", "lstm16+int8"],
        "window_days": 400,
        "holdout_days": 28,
        "epochs": 10,
        "batch_size": 64,
        "learning_rate": 0.003,
        "finetune_epochs": 1,
        "patience": 3,
        "min_epochs": 3,
        "warm_epochs": 2,
    },
}
