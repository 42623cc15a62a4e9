"""The model registry side of a promotion, behind a small protocol so promotion does not depend on MLflow.

`MlflowRegistry` adapts any object with `MlflowClient`'s methods (the pipeline's `Tracker.client`, or an
`mlflow.MlflowClient`); it never imports mlflow itself.

Consistency rule between the S3 pointer and the MLflow alias: the pointer is the truth (stores read it), the
alias is its projection. A promotion moves the pointer first and the alias second. If the pointer move fails,
the alias is not touched. If the alias move fails after the pointer moved, the promotion stands, its result
carries `alias_error`, and `reconcile_aliases` (run at the start of every promotion and rollback, and by
`shelfcast channels --reconcile`) sets every alias back to its channel's pointer.
"""

from __future__ import annotations

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
