"""The nightly promotion: select among the night's candidates, publish them, move canary, advance stable.

    reconcile aliases -> select (against the stable champion, same window) -> publish every built candidate
        -> record the decision (S3 and MLflow) -> move canary to the chosen one
        -> advance stable to the version canary served until tonight, once it has served long enough

Stable receives the version that served on canary before tonight's move: a model reaches stable stores only
after it has run on canary stores for `policy.min_canary_seconds`. Every candidate that builds is published
(files are a few KB, versions are immutable), so a manual `shelfcast promote --version V --force` or a
rollback can reach any of them later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from shelfcast.delivery.channels import PromotionRefused, read_head, write_decision
from shelfcast.contract.manifest import Manifest, manifest_key
from shelfcast.delivery.publish import (
    CANARY,
    STABLE,
    MoveResult,
    make_manifest,
    move_channel,
    promote_version,
    publish_model,
    try_reconcile,
)
from shelfcast.delivery.registry import DEFAULT_ALIASES, Registry, download_candidate
from shelfcast.delivery.selection import Champion, Decision, Gate, SelectionPolicy, select_candidate
from shelfcast.tracking import Candidate
from shelfcast.contract.errors import PromotionConflict, ShelfcastError
from shelfcast.contract.objects import ObjectStore


@dataclass
class NightOutcome:
    """What the night's promotion did; `to_dict()` is what the retrain flow reports."""

    night: str | None
    decision: Decision
    decision_key: str | None = None
    published: dict[str, str] = field(default_factory=dict)  # version -> "published" or the error
    canary: MoveResult | None = None
    stable: MoveResult | None = None
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.errors:
            return "failed"
        if self.canary and self.canary.moved:
            return "promoted"
        if self.decision.chosen is not None:
            return "already serving"
        return "kept" if self.decision.action == "keep" else "nothing promoted"

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "night": self.night,
            "decision": self.decision.to_dict(),
            "decision_key": self.decision_key,
            "published": dict(self.published),
            "canary": self.canary.to_dict() if self.canary else None,
            "stable": self.stable.to_dict() if self.stable else None,
            "notes": list(self.notes),
            "errors": list(self.errors),
        }


def measure_candidate(tracked, path: str | Path | None, input_spec: Mapping | None, error: str = "") -> Candidate:
    """A registered candidate (anything with `name`, `version`, `metrics` and optionally `run_id`, `variant`,
    `technique`, `night`, `tags`: a `shelfcast.tracking.Candidate` as MLflow holds it) measured on its real `.tflite`: bytes, builtin ops,
    and latency (the run's `latency_us_median`, else measured here). A file that is missing or does not load
    makes a failed candidate that carries the reason."""
    from shelfcast.contract.runtime import TFLiteForecaster
    from shelfcast.contract.verify import probe_inputs
    from shelfcast.contract.features import InputSpec

    tags = dict(getattr(tracked, "tags", None) or {})
    base = dict(name=str(tracked.name), version=str(tracked.version), metrics=dict(tracked.metrics or {}),
                variant=str(getattr(tracked, "variant", "") or tags.get("variant", "")),
                technique=str(getattr(tracked, "technique", "") or tags.get("technique", "")),
                run_id=getattr(tracked, "run_id", None), night=getattr(tracked, "night", None), tags=tags,
                tflite_uri=str(getattr(tracked, "tflite_uri", "") or ""), input_spec=dict(input_spec or {}),
                details={"input_spec": dict(input_spec)} if input_spec else {})
    if error or path is None:
        return Candidate(**base, status="failed", reason=error or "no .tflite file")
    try:
        forecaster = TFLiteForecaster(path)
        latency = base["metrics"].get("latency_us_median")
        if latency is None and input_spec:
            latency = forecaster.latency_us(probe_inputs(InputSpec.from_dict(dict(input_spec))))
    except ShelfcastError as exc:
        return Candidate(**base, status="failed", reason=str(exc))
    return Candidate(**base, tflite_bytes=Path(path).stat().st_size, latency_us=latency,
                     builtin_ops_only=forecaster.builtin_ops_only(), tflite_path=str(path))


def context_from_candidates(candidates: Sequence[Candidate], metric: str) -> tuple[dict | None, float | None]:
    """The champion's and the seasonal-naive rule's metric on the candidates' window, as the retrain measured
    them (`champion_<metric>`, `naive_<metric>` in every candidate's metrics)."""
    champion = naive = None
    for candidate in candidates:
        champion = champion if champion is not None else candidate.metric(f"champion_{metric}")
        naive = naive if naive is not None else candidate.metric(f"naive_{metric}")
    return ({metric: champion} if champion is not None else None), naive


def _champion(objects: ObjectStore, stable_head, champion_metrics: Mapping | None) -> Champion | None:
    pointer = stable_head.pointer
    if pointer is None:
        return None
    if champion_metrics:
        return Champion(pointer.version, dict(champion_metrics), same_window=True)
    key = manifest_key(pointer.name, pointer.version)
    manifest = Manifest.from_json(objects.get(key).body, objects.describe(key))
    return Champion(pointer.version, manifest.metrics, same_window=False)


def _selection_note(decision: Decision, candidate: Candidate) -> str:
    if decision.chosen is not None and decision.chosen.version == candidate.version:
        return "chosen"
    rejection = decision.rejection_for(candidate.version)
    return f"rejected: {rejection.reason}" if rejection else "not considered"


def publish_candidates(objects: ObjectStore, candidates: Sequence[Candidate], decision: Decision) -> dict[str, str]:
    """Publish every built candidate that has a file and an input spec; version -> "published" or the error."""
    outcome = {}
    for c in candidates:
        if c.status != "ok" or not c.tflite_path or not isinstance((c.details or {}).get("input_spec"), Mapping):
            continue
        try:
            data = Path(c.tflite_path).read_bytes()
            manifest = make_manifest(
                data, name=c.name, version=c.version, input_spec=c.details["input_spec"], metrics=c.metrics,
                mlflow_run_id=c.run_id,
                details={"variant": c.variant, "technique": c.technique, "night": c.night,
                         "latency_us": c.latency_us, "builtin_ops_only": c.builtin_ops_only,
                         "selection": _selection_note(decision, c),
                         **{k: v for k, v in (c.details or {}).items() if k != "input_spec"}},
            )
            publish_model(objects, data, manifest)
            outcome[c.version] = "published"
        except (ShelfcastError, OSError) as exc:
            outcome[c.version] = f"{type(exc).__name__}: {exc}"
    return outcome


def record_decision(registry: Registry | None, candidates: Sequence[Candidate], decision: Decision) -> list[str]:
    """Tag every candidate's model version and run with its outcome; returns problems (never raises)."""
    if registry is None:
        return []
    problems = []
    for c in candidates:
        outcome = _selection_note(decision, c)
        try:
            registry.record_selection(c.version, c.run_id, outcome.split(":")[0], outcome)
        except Exception as exc:  # noqa: BLE001 - the S3 decision record is kept; MLflow is told next time
            problems.append(f"MLflow selection tags for version {c.version} not written ({type(exc).__name__}: "
                            f"{str(exc)[:200]})")
    return problems


def promote_night(
    objects: ObjectStore,
    candidates: Sequence[Candidate],
    *,
    actor: str,
    policy: SelectionPolicy | None = None,
    gates: Sequence[Gate] = (),
    stable_gates: Sequence[Gate] = (),
    registry: Registry | None = None,
    aliases: Mapping[str, str] = DEFAULT_ALIASES,
    baseline_metric: float | None = None,
    champion_metrics: Mapping | None = None,
    night: str | None = None,
    canary: str = CANARY,
    stable: str = STABLE,
    signer=None,
) -> NightOutcome:
    """Run the nightly promotion (see the module docstring). Never raises for a refused or lost move: the
    outcome says what happened; I/O failures of S3 propagate (nothing half-done is left behind: versions are
    immutable and the pointer moves last)."""
    policy = policy or SelectionPolicy()
    notes = try_reconcile(objects, registry, aliases)
    measured_champion, measured_naive = context_from_candidates(candidates, policy.metric)
    stable_head, canary_head = read_head(objects, stable), read_head(objects, canary)
    champion = _champion(objects, stable_head, champion_metrics or measured_champion)
    baseline = baseline_metric if baseline_metric is not None else measured_naive
    decision = select_candidate(candidates, champion, policy, gates, baseline_metric=baseline)
    outcome = NightOutcome(night, decision, notes=notes)

    outcome.published = publish_candidates(objects, candidates, decision)
    outcome.decision_key = write_decision(objects, canary, {"night": night, "actor": actor, "policy": policy.to_dict(),
                                                            "published": outcome.published, **decision.to_dict()})
    outcome.notes += record_decision(registry, candidates, decision)

    chosen = decision.chosen
    if chosen is not None and chosen.version == canary_head.version:
        outcome.notes.append(f"{canary} already serves {chosen.version}; not moved again")
    elif chosen is not None:
        if outcome.published.get(chosen.version) != "published":
            outcome.errors.append(f"chosen version {chosen.version} was not published: "
                                  f"{outcome.published.get(chosen.version)}; canary stays at {canary_head.version}")
        else:
            try:
                outcome.canary = move_channel(
                    objects, canary, _published_manifest(objects, chosen), action=decision.action, actor=actor,
                    reason=decision.reason, registry=registry, aliases=aliases, decision=outcome.decision_key,
                    expect=canary_head.version, signer=signer,
                )
            except (PromotionConflict, PromotionRefused) as exc:
                outcome.errors.append(f"canary not moved: {exc}")

    previous_canary = canary_head.version
    if previous_canary and previous_canary != stable_head.version:
        try:
            outcome.stable = promote_version(
                objects, stable, canary_head.pointer.name, previous_canary, actor=actor, action="advance",
                reason=f"served on {canary} since {canary_head.pointer.moved_at}", policy=policy, gates=stable_gates,
                registry=registry, aliases=aliases, canary=canary, stable=stable, signer=signer,
            )
        except (PromotionRefused, PromotionConflict) as exc:
            outcome.notes.append(f"{stable} stays at {stable_head.version}: {exc}")
    if signer is None:
        outcome.notes.append("delivery metadata is not signed (no keys: `shelfcast keys init`); stores follow no move")
    else:
        try:
            signer.refresh()  # the nightly re-signing: without it every store calls the bucket frozen
        except ShelfcastError as exc:
            outcome.errors.append(f"delivery metadata not re-signed: {exc}")
    return outcome


def _published_manifest(objects: ObjectStore, candidate: Candidate) -> Manifest:
    key = manifest_key(candidate.name, candidate.version)
    return Manifest.from_json(objects.get(key).body, objects.describe(key))


def fetch_candidate_models(candidates: list, client, folder: Path) -> list[Candidate]:
    """Download each registered candidate's `.tflite` and input spec from MLflow and measure the file
    (candidates measured already pass as they are)."""
    measured = []
    for tracked in candidates:
        if isinstance(tracked, Candidate) and tracked.measured:
            measured.append(tracked)
            continue
        try:
            path, spec = download_candidate(client, tracked, folder)
        except Exception as exc:
            if not _missing(exc):
                raise  # MLflow unreachable: retried, then the night's promotion fails loudly
            measured.append(measure_candidate(tracked, None, None, f"its .tflite could not be fetched: {exc}"))
            continue
        measured.append(measure_candidate(tracked, path, spec))
    return measured


def _missing(exc: Exception) -> bool:
    """The artifact is not there (a candidate problem), as opposed to MLflow failing (an I/O problem)."""
    return isinstance(exc, FileNotFoundError) or getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def outcome_markdown(outcome: NightOutcome) -> str:
    """The Prefect artifact: what was chosen, every rejection with its reason, what moved."""
    decision = outcome.decision
    lines = [f"# Promotion, night {outcome.night}: {outcome.status}", "", decision.reason, "",
             f"| version | variant | {decision.metric} | .tflite B | latency us | outcome |", "|---|---|--:|--:|--:|---|"]
    if decision.chosen:
        c = decision.chosen
        lines.append(f"| {c.version} | {c.variant} | {c.metric(decision.metric)} | {c.tflite_bytes} | "
                     f"{c.latency_us or ''} | **chosen** |")
    for r in decision.rejections:
        lines.append(f"| {r.version} | {r.variant} | | | | rejected ({', '.join(r.rules)}): {r.reason} |")
    for label, move in (("canary", outcome.canary), ("stable", outcome.stable)):
        if move:
            alias = f" (alias not moved: {move.alias_error})" if move.alias_error else ""
            lines += ["", f"**{label}**: {move.message}{alias}"]
    lines += [""] + [f"- error: {e}" for e in outcome.errors] + [f"- note: {n}" for n in outcome.notes]
    if outcome.decision_key:
        lines += ["", f"Decision record: `{outcome.decision_key}`"]
    return "\n".join(lines)
