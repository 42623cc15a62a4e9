"""The live champion, as the live check needs it: found through MLflow (the `champion` alias), its `.tflite`
file and input spec downloaded, ready to forecast from raw sales.

A thin adapter over `shelfcast.tracking.Tracker`; the live check itself (`service.check_live`) only sees a window
model, the key under which its expected error was saved, and its holdout MAPE as a fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

from shelfcast.monitor.evaluation import WindowModel, tflite_window_model
from shelfcast.monitor.rules import candidate_model


@dataclass
class LiveChampion:
    key: tuple[str, str]  # (model scope, version): where `check_candidates` saved its expected error
    window_model: WindowModel
    run_id: str
    holdout_mape_pct: float | None
    training: tuple[date, date] | None  # the window it was trained on, for input drift

    @property
    def label(self) -> str:
        return f"{self.key[0]} v{self.key[1]}"


def resolve_champion(tracker, workdir: str | Path) -> LiveChampion | None:
    """The model version behind the `champion` alias, loaded in the edge interpreter; None before the first
    promotion. Its run must carry the `input_spec` parameter and a `tflite/` artifact, as every variant run does.
    Raises `ServiceError` when MLflow cannot be reached (the alias lookup alone would read that as no champion)."""
    tracker.check()
    version = tracker.champion()
    if version is None:
        return None
    run = tracker.client.get_run(version.run_id)
    params = run.data.params
    if "input_spec" not in params:
        raise ValueError(f"champion v{version.version} (run {version.run_id}) has no input_spec parameter")
    folder = tracker.download(version.run_id, "tflite", Path(workdir) / f"champion-{version.version}")
    files = sorted(Path(folder).glob("*.tflite"))
    if not files:
        raise ValueError(f"champion v{version.version} (run {version.run_id}) has no .tflite under tflite/")
    model = candidate_model(SimpleNamespace(name=version.name, version=version.version,
                                            variant=(version.tags or {}).get("variant"), metrics={}))
    training = None
    if "start" in params and "end" in params:
        training = (date.fromisoformat(params["start"][:10]), date.fromisoformat(params["end"][:10]))
    return LiveChampion((model, str(version.version)), tflite_window_model(files[0], json.loads(params["input_spec"])),
                        version.run_id, run.data.metrics.get("mape_pct"), training)
