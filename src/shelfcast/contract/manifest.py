"""The delivery protocol's documents and where they live in the bucket (standard library only: stores read these).

    models/<name>/<version>/model.tflite        the model, written once
    models/<name>/<version>/manifest.json       what a store needs to check and use it, written once
    channels/<channel>/latest.json              the channel's pointer: the version its stores run
    promotions/<channel>/log/<seq>.json         one immutable entry per pointer move (the promotion log)
    promotions/<channel>/decisions/<at>-<id>.json   every selection, with each rejection and its reason

A `Pointer` is both the content of `latest.json` and of a log entry: the log is the channel's history and the
pointer is its newest entry, materialised where stores poll it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields

from shelfcast.contract.errors import IntegrityError

FORMAT = "tflite"
SCHEMA = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(kind: str, value: str) -> str:
    """A model name, version or channel must be safe as one S3 key segment and as one folder name."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value) or value in (".", ".."):
        raise ValueError(
            f"{kind} {value!r} is not allowed; use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def model_key(name: str, version: str) -> str:
    return f"models/{check_name('model name', name)}/{check_name('version', version)}/model.tflite"


def manifest_key(name: str, version: str) -> str:
    return f"models/{check_name('model name', name)}/{check_name('version', version)}/manifest.json"


def pointer_key(channel: str) -> str:
    return f"channels/{check_name('channel', channel)}/latest.json"


def log_prefix(channel: str) -> str:
    return f"promotions/{check_name('channel', channel)}/log/"


def log_key(channel: str, seq: int) -> str:
    if seq < 1:
        raise ValueError(f"log sequence numbers start at 1, got {seq}")
    return f"{log_prefix(channel)}{seq:010d}.json"


def decision_key(channel: str, at: str, decision_id: str) -> str:
    stamp = at.replace(":", "").replace("-", "").replace("+0000", "Z")
    return f"promotions/{check_name('channel', channel)}/decisions/{stamp}-{decision_id}.json"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def _load(data: bytes, source: str) -> dict:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{source} is not valid JSON ({exc}); it was damaged or written by something else") from None
    if not isinstance(document, dict):
        raise IntegrityError(f"{source} holds {type(document).__name__}, expected a JSON object")
    return document


def _require(document: dict, source: str, types: dict[str, type | tuple]) -> None:
    for key, expected in types.items():
        if key not in document:
            raise IntegrityError(f"{source} lacks the field {key!r}; republish it with this shelfcast version")
        if not isinstance(document[key], expected) or isinstance(document[key], bool) and expected is int:
            raise IntegrityError(f"{source}: field {key!r} is {document[key]!r}, expected {expected}")


def _check_digest(document: dict, source: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", document["sha256"]) or document["bytes"] <= 0:
        raise IntegrityError(f"{source}: sha256 {document['sha256']!r} / bytes {document['bytes']} are not valid")


def _dump(document: dict) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()


@dataclass(frozen=True)
class Manifest:
    """Everything a store needs to trust and use one model version, written once beside the model."""

    name: str
    version: str
    sha256: str
    bytes: int
    input_spec: dict
    metrics: dict = field(default_factory=dict)
    mlflow_run_id: str | None = None
    code_version: dict = field(default_factory=dict)
    created_at: str = ""
    details: dict = field(default_factory=dict)  # variant, technique, units, quantization, ops, latency
    format: str = FORMAT
    schema: int = SCHEMA

    @property
    def model_key(self) -> str:
        return model_key(self.name, self.version)

    @property
    def key(self) -> str:
        return manifest_key(self.name, self.version)

    def to_json(self) -> bytes:
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, source: str = "manifest.json") -> "Manifest":
        document = _load(data, source)
        _require(document, source, {"name": str, "version": str, "sha256": str, "bytes": int, "input_spec": dict,
                                    "format": str, "schema": int})
        if document["format"] != FORMAT:
            raise IntegrityError(f"{source}: format {document['format']!r} is not {FORMAT!r}; this client runs .tflite only")
        if document["schema"] > SCHEMA:
            raise IntegrityError(
                f"{source}: manifest schema {document['schema']} is newer than this client's ({SCHEMA}); upgrade shelfcast[store]"
            )
        _check_digest(document, source)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in document.items() if k in known})


@dataclass(frozen=True)
class Pointer:
    """A channel's pointer (`latest.json`) and, identically, one promotion log entry.

    `seq` counts moves of this channel from 1; `move_id` identifies the promotion that made the move, so a
    promoter can tell its own log entry from another's. `action` is `promote`, `bootstrap`, `advance` (canary
    to stable), `force` or `rollback`; `actor` and `reason` say who moved it and why.
    """

    channel: str
    name: str
    version: str
    sha256: str
    bytes: int
    seq: int
    move_id: str
    moved_at: str
    action: str
    actor: str
    reason: str = ""
    previous_version: str | None = None
    decision: str | None = None  # key of the selection record, when a selection made this move

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.name, self.version)

    @property
    def model_key(self) -> str:
        return model_key(self.name, self.version)

    def to_json(self) -> bytes:
        return _dump(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, source: str = "latest.json") -> "Pointer":
        document = _load(data, source)
        _require(document, source, {"channel": str, "name": str, "version": str, "sha256": str, "bytes": int,
                                    "seq": int, "move_id": str, "moved_at": str, "action": str, "actor": str})
        _check_digest(document, source)
        if document["seq"] < 1:
            raise IntegrityError(f"{source}: move number {document['seq']} is not valid; moves count from 1")
        known = {f.name for f in fields(cls)}
        pointer = cls(**{k: v for k, v in document.items() if k in known})
        try:
            check_name("channel", pointer.channel)
            check_name("model name", pointer.name)
            check_name("version", pointer.version)
        except ValueError as exc:  # a name that would escape its key or folder ("../x"): damaged or forged
            raise IntegrityError(f"{source}: {exc}") from None
        return pointer

    def matches(self, manifest: Manifest) -> bool:
        return (self.name, self.version, self.sha256, self.bytes) == (
            manifest.name, manifest.version, manifest.sha256, manifest.bytes)
