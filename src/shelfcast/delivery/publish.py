"""Publish model versions and move channels (the trainer side of the delivery protocol).

`publish_model` writes `models/<name>/<version>/model.tflite`, then its `manifest.json`, each once
(`IfNoneMatch='*'`). It checks the file loads in LiteRT first, so an unloadable model is never published. A
rerun after a crash completes the version (identical bytes are accepted); different bytes under an existing
version are refused: versions are immutable.

`promote_version` moves a channel to a published version: it downloads the version and checks its checksum and
that it loads, applies the rules (edge budget for a non-forced promotion, canary before stable), moves the
pointer (`shelfcast.delivery.channels`) and then the MLflow alias (`shelfcast.delivery.registry` has the rule that keeps
them consistent). `--force` skips the rules, never the integrity checks, and needs a reason; who and why go into
the promotion log.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Sequence

from shelfcast.delivery.channels import ANY, PromotionRefused, move_pointer, read_head, read_log
from shelfcast.contract import clock
from shelfcast.contract.manifest import Manifest, check_name, sha256_hex
from shelfcast.delivery.registry import DEFAULT_ALIASES, Registry, move_alias
from shelfcast.delivery.selection import Gate, SelectionPolicy, eligibility, stable_refusal
from shelfcast.tracking import Candidate, code_version, finite_metrics
from shelfcast.contract.verify import verify_model
from shelfcast.contract.errors import ConfigError, IntegrityError
from shelfcast.contract.features import InputSpec
from shelfcast.contract.objects import AlreadyExists, ObjectMissing, ObjectStore

CANARY, STABLE = "canary", "stable"


def actor_name() -> str:
    """Who is promoting: `SHELFCAST_ACTOR` when set (CI, a flow), else user@host."""
    explicit = os.environ.get("SHELFCAST_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def make_manifest(model_bytes: bytes, *, name: str, version: str, input_spec: Mapping, metrics: Mapping | None = None,
                  mlflow_run_id: str | None = None, details: Mapping | None = None, now: str | None = None) -> Manifest:
    check_name("model name", name)
    check_name("version", str(version))
    try:
        spec = InputSpec.from_dict(dict(input_spec)).to_dict()
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"input spec {dict(input_spec)!r} is incomplete or invalid ({exc}); a store needs "
                          "lookback, scaling, calendar, sales_min and sales_max") from None
    return Manifest(
        name=name, version=str(version), sha256=sha256_hex(model_bytes), bytes=len(model_bytes), input_spec=spec,
        metrics=finite_metrics(metrics or {}), mlflow_run_id=mlflow_run_id, code_version=code_version(),
        created_at=now or clock.stamp(), details=dict(details or {}),
    )


def publish_model(objects: ObjectStore, model_bytes: bytes, manifest: Manifest) -> Manifest:
    """Write the version's model then its manifest, each once; returns the manifest now in the bucket."""
    source = f"{manifest.name} version {manifest.version}"
    verify_model(model_bytes, manifest, source)
    where = objects.describe(manifest.model_key)
    try:
        objects.put_if_absent(manifest.model_key, model_bytes)
    except AlreadyExists:
        existing = objects.get(manifest.model_key).body
        if sha256_hex(existing) != manifest.sha256:
            raise IntegrityError(
                f"{where} exists with other bytes (sha256 {sha256_hex(existing)[:16]}...); versions are immutable: "
                "publish this model under a new version"
            ) from None
    try:
        objects.put_if_absent(manifest.key, manifest.to_json(), "application/json")
    except AlreadyExists:
        existing = Manifest.from_json(objects.get(manifest.key).body, objects.describe(manifest.key))
        if (existing.sha256, existing.bytes) != (manifest.sha256, manifest.bytes):
            raise IntegrityError(f"{objects.describe(manifest.key)} describes other bytes; versions are "
                                 "immutable: publish under a new version") from None
        return existing
    return manifest


def fetch_verified(objects: ObjectStore, name: str, version: str) -> tuple[Manifest, bytes]:
    """Download a published version and check it: it exists, its checksum and size match, it loads and runs."""
    from shelfcast.contract.manifest import manifest_key, model_key

    try:
        manifest = Manifest.from_json(objects.get(manifest_key(name, version)).body,
                                      objects.describe(manifest_key(name, version)))
        data = objects.get(model_key(name, version)).body
    except ObjectMissing as exc:
        raise PromotionRefused(f"{name} version {version} is not published ({exc})") from None
    verify_model(data, manifest, objects.describe(model_key(name, version)))
    return manifest, data


def measured_candidate(manifest: Manifest, data: bytes) -> Candidate:
    """A published version seen as a selection candidate (for the budget checks of a manual promotion); latency
    and ops are measured on the file when the manifest does not carry them."""
    from shelfcast.contract.runtime import TFLiteForecaster
    from shelfcast.contract.verify import probe_inputs

    details = manifest.details or {}
    forecaster = TFLiteForecaster(data)
    latency = details.get("latency_us")
    if latency is None:
        latency = forecaster.latency_us(probe_inputs(InputSpec.from_dict(manifest.input_spec)))
    return Candidate(
        name=manifest.name, version=manifest.version, metrics=manifest.metrics, tflite_bytes=manifest.bytes,
        latency_us=latency, builtin_ops_only=forecaster.builtin_ops_only(),
        variant=str(details.get("variant", "")), technique=str(details.get("technique", "")),
        run_id=manifest.mlflow_run_id, details={"input_spec": manifest.input_spec},
    )


@dataclass
class MoveResult:
    """What one promotion or rollback did."""

    channel: str
    version: str
    moved: bool
    action: str
    message: str
    previous_version: str | None = None
    seq: int | None = None
    alias: str | None = None
    alias_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**self.__dict__, "notes": list(self.notes)}


def move_channel(objects: ObjectStore, channel: str, manifest: Manifest, *, action: str, actor: str, reason: str,
                 registry: Registry | None = None, aliases: Mapping[str, str] = DEFAULT_ALIASES,
                 decision: str | None = None, expect=ANY, now: str | None = None, signer=None) -> MoveResult:
    """Move the pointer (when `expect` is given, only from head version `expect`; None means an empty channel)
    and sign it with `signer`, then the alias; the alias never blocks the move."""
    entry, previous = move_pointer(objects, channel, manifest, action=action, actor=actor, reason=reason,
                                   decision=decision, expect=expect, now=now, signer=signer)
    alias, alias_error = move_alias(registry, aliases, channel, manifest.version)
    return MoveResult(channel, manifest.version, True, action,
                      f"{channel} moved from {previous.version if previous else 'nothing'} to {manifest.version} "
                      f"(move #{entry.seq}, {action} by {actor})",
                      previous.version if previous else None, entry.seq, alias, alias_error)


def promote_version(
    objects: ObjectStore,
    channel: str,
    name: str,
    version: str,
    *,
    actor: str | None = None,
    reason: str = "",
    force: bool = False,
    action: str = "promote",
    policy: SelectionPolicy | None = None,
    gates: Sequence[Gate] = (),
    registry: Registry | None = None,
    aliases: Mapping[str, str] = DEFAULT_ALIASES,
    decision: str | None = None,
    canary: str = CANARY,
    stable: str = STABLE,
    now: datetime | None = None,
    signer=None,
) -> MoveResult:
    """Move `channel` to a published `version` after checking it; see the module docstring for the rules."""
    policy = policy or SelectionPolicy()
    actor = actor or actor_name()
    if force and not reason.strip():
        raise ConfigError("a forced promotion needs a reason: pass --reason 'why this version must go out now'")
    notes = try_reconcile(objects, registry, aliases)
    manifest, data = fetch_verified(objects, name, version)
    head = read_head(objects, channel)
    if head.version == version:
        return MoveResult(channel, version, False, action, f"{channel} already serves {version}; nothing to do",
                          head.version, head.seq, notes=notes)
    failures = eligibility(measured_candidate(manifest, data), policy, gates)
    if channel == stable:
        refusal = stable_refusal(read_log(objects, canary), version, policy, now or clock.now())
        if refusal:
            failures.append(("canary", refusal))
    broken = "; ".join(reason for _, reason in failures)
    if failures and not force:
        raise PromotionRefused(f"promotion of {name} version {version} to {channel} refused: {broken}. "
                               f"{channel} still serves {head.version}. Override with --force --reason TEXT")
    if failures:  # forced: the log says which rules were overridden, beside who and why
        reason = f"{reason} [forced past: {broken}]"
    result = move_channel(objects, channel, manifest, action="force" if force else action, actor=actor,
                          reason=reason, registry=registry, aliases=aliases, decision=decision, expect=head.version,
                          signer=signer)
    result.notes = notes + result.notes
    return result


def try_reconcile(objects: ObjectStore, registry: Registry | None, aliases: Mapping[str, str]) -> list[str]:
    """`reconcile_aliases` that reports instead of raising: MLflow being down must not block a promotion or a
    rollback (the pointer is the truth)."""
    try:
        return [f"repaired {line}" for line in reconcile_aliases(objects, registry, aliases)]
    except Exception as exc:  # noqa: BLE001 - reported; repaired on a later run
        return [f"aliases not reconciled ({type(exc).__name__}: {str(exc)[:200]})"]


def reconcile_aliases(objects: ObjectStore, registry: Registry | None,
                      aliases: Mapping[str, str] = DEFAULT_ALIASES) -> list[str]:
    """Set every channel's alias to the channel's pointer; returns what was repaired (the pointer is the truth)."""
    if registry is None:
        return []
    repaired = []
    for channel, alias in aliases.items():
        head = read_head(objects, channel)
        if head.version is None:
            continue
        current = registry.get_alias(alias)
        if current != head.version:
            registry.set_alias(alias, head.version)
            repaired.append(f"alias {alias!r}: {current} -> {head.version} (channel {channel})")
    return repaired


@dataclass
class ChannelStatus:
    channel: str
    version: str | None
    seq: int
    moved_at: str | None
    action: str | None
    actor: str | None
    reason: str | None
    history: list = field(default_factory=list)


def channel_status(objects: ObjectStore, channel: str, history: int = 5) -> ChannelStatus:
    head = read_head(objects, channel)
    pointer = head.pointer
    log = read_log(objects, channel)[-history:] if history else []
    return ChannelStatus(channel, head.version, head.seq, pointer.moved_at if pointer else None,
                         pointer.action if pointer else None, pointer.actor if pointer else None,
                         pointer.reason if pointer else None, log)
