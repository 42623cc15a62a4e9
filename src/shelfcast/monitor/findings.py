"""What a rule returns: findings (a condition that holds now) and the list of what it checked.

A finding names its rule, severity, subject (`candidate`, `champion` or `data`), scope (chain, store, item,
(store, item) cohort, or a candidate model), the observed value and the threshold it crossed. Its fingerprint
hashes rule, subject and scope (never the model version or the numbers), so the same problem found again
tomorrow is the same alert. `CheckResult.checked` holds the fingerprint of every (rule, subject, scope) that
was evaluated with enough data; an open alert whose fingerprint was checked and did not fire has cleared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SUBJECTS = ("candidate", "champion", "data")
SCOPE_KINDS = ("chain", "store", "item", "cohort", "model")


@dataclass(frozen=True)
class Scope:
    kind: str
    store: int | None = None
    item: int | None = None
    model: str | None = None  # candidate name (and variant); part of the key
    version: str | None = None  # the model version the finding was made on; not part of the key

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise ValueError(f"scope kind {self.kind!r}; choose one of {SCOPE_KINDS}")

    @property
    def key(self) -> str:
        parts = [self.kind]
        if self.model is not None:
            parts.append(f"model={self.model}")
        if self.store is not None:
            parts.append(f"store={self.store}")
        if self.item is not None:
            parts.append(f"item={self.item}")
        return "/".join(parts)

    @property
    def label(self) -> str:
        where = {
            "chain": "all stores",
            "store": f"store {self.store}",
            "item": f"item {self.item}",
            "cohort": f"store {self.store} item {self.item}",
            "model": "",
        }[self.kind]
        if self.model is None:
            return where
        model = f"{self.model}" + (f" v{self.version}" if self.version is not None else "")
        return f"{model} {where}".strip()

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "Scope":
        return cls(**{k: data.get(k) for k in ("kind", "store", "item", "model", "version")})


def fingerprint(rule: str, subject: str, scope: Scope) -> str:
    return hashlib.sha256(f"{rule}|{subject}|{scope.key}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    subject: str
    scope: Scope
    observed: float
    threshold: float
    unit: str
    message: str
    context: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.subject not in SUBJECTS:
            raise ValueError(f"subject {self.subject!r}; choose one of {SUBJECTS}")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.subject, self.scope)


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)  # "rule: why it did not run"

    def extend(self, other: "CheckResult") -> "CheckResult":
        self.findings.extend(other.findings)
        self.checked |= other.checked
        self.skipped.extend(other.skipped)
        return self

    def check(self, rule: str, subject: str, scope: Scope) -> None:
        self.checked.add(fingerprint(rule, subject, scope))

    @property
    def fired(self) -> set[str]:
        return {f.fingerprint for f in self.findings}


def response_text(rule: str, subject: str, severity: str, scope_label: str) -> str:
    """What shelfcast does about an alert, in one sentence for the on-call engineer."""
    if subject == "candidate":
        if severity == "critical":
            return f"promotion of {scope_label} is blocked until this resolves or is forced with a reason"
        return "promotion is not blocked; recorded for review"
    if rule.startswith("input_drift"):
        return "context only: no action taken"
    if rule == "freshness":
        return "stores keep serving their current model; retraining uses only the days received"
    return "the champion keeps serving; the next retrain learns from these days, and its candidates must beat this champion"
