"""The model registry side of a promotion, behind a small protocol so promotion does not depend on MLflow.

`MlflowRegistry` adapts any object with `MlflowClient`'s methods (the pipeline's `Tracker.client`, or an
`shelfcast.tracking.mlflow_client`); this module never imports mlflow.

Consistency rule between the S3 pointer and the MLflow alias: the pointer is the truth (stores read it), the
alias is its projection. A promotion moves the pointer first and the alias second. If the pointer move fails,
the alias is not touched. If the alias move fails after the pointer moved, the promotion stands, its result
carries `alias_error`, and `reconcile_aliases` (run at the start of every promotion and rollback, and by
`shelfcast channels --reconcile`) sets every alias back to its channel's pointer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol

# Which MLflow alias follows which channel: `champion` is what stable stores run.
DEFAULT_ALIASES: Mapping[str, str] = {"stable": "champion", "canary": "canary"}


class Registry(Protocol):
    def set_alias(self, alias: str, version: str) -> None: ...

    def get_alias(self, alias: str) -> str | None: ...

    def record_selection(self, version: str, run_id: str | None, outcome: str, reason: str) -> None: ...



class MlflowRegistry:
    """Aliases and selection tags on one registered model, through an `MlflowClient`-like `client`."""

    TAG_OUTCOME = "shelfcast.selection"
    TAG_REASON = "shelfcast.selection_reason"

    def __init__(self, client, model_name: str):
        self.client = client
        self.model_name = model_name

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def get_alias(self, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except Exception as exc:  # MlflowException RESOURCE_DOES_NOT_EXIST: no such alias yet
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
                return None
            raise

    def record_selection(self, version: str, run_id: str | None, outcome: str, reason: str) -> None:
        """Tag the model version (and its run) with the selection outcome and its reason."""
        reason = reason[:5000]
        self.client.set_model_version_tag(self.model_name, str(version), self.TAG_OUTCOME, outcome)
        self.client.set_model_version_tag(self.model_name, str(version), self.TAG_REASON, reason)
        if run_id:
            self.client.set_tag(run_id, self.TAG_OUTCOME, outcome)
            self.client.set_tag(run_id, self.TAG_REASON, reason)


def tracked_input_spec(params: Mapping[str, str]) -> dict | None:
    """The input specification a run logged as its `input_spec` parameter (JSON or a Python dict literal)."""
    import ast
    import json

    text = params.get("input_spec")
    if not text:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    return None


def download_candidate(client, tracked, folder) -> tuple[Path, dict | None]:
    """Fetch a registered candidate's `.tflite` (its run's `tflite_file` tag, else the `tflite/` folder) and its
    input specification (the candidate's `input_spec`, else its run's parameter); `tracked` has `run_id` and
    `tags` (the pipeline's `Candidate`)."""
    folder = Path(folder) / f"v{tracked.version}"
    folder.mkdir(parents=True, exist_ok=True)
    artifact = (getattr(tracked, "tags", None) or {}).get("tflite_file", "tflite")
    local = Path(client.download_artifacts(tracked.run_id, artifact, str(folder)))
    if local.is_dir():
        files = sorted(local.rglob("*.tflite"))
        if len(files) != 1:
            raise FileNotFoundError(f"run {tracked.run_id} artifact {artifact!r} holds {len(files)} .tflite files, "
                                    "expected one")
        local = files[0]
    spec = getattr(tracked, "input_spec", None) or tracked_input_spec(client.get_run(tracked.run_id).data.params)
    return local, spec


def move_alias(registry: Registry | None, aliases: Mapping[str, str], channel: str, version: str) -> tuple[str | None, str | None]:
    """Point the channel's alias at `version`; returns (alias, error). Never raises: the pointer already moved."""
    alias = aliases.get(channel)
    if registry is None or alias is None:
        return alias, None
    try:
        registry.set_alias(alias, version)
    except Exception as exc:  # noqa: BLE001 - recorded and repaired by reconcile_aliases
        return alias, (f"MLflow alias {alias!r} was not moved to version {version} ({type(exc).__name__}: "
                       f"{str(exc)[:300]}); the channel moved anyway, the next promotion or "
                       "`shelfcast channels --reconcile` repairs the alias")
    return alias, None
