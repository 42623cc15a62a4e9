"""Check a model file against its manifest before anything serves it: size, sha256, it loads in LiteRT, its input
shape matches the manifest's input specification, and one forecast comes out finite.

Used by the store before it swaps a download in, and by the trainer before it publishes or rolls back.
numpy and ai-edge-litert only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shelfcast.contract.manifest import Manifest, sha256_hex
from shelfcast.contract.runtime import TFLiteForecaster
from shelfcast.contract.errors import IntegrityError, ModelLoadError
from shelfcast.contract.features import InputSpec, build_inputs


def check_bytes(data: bytes, manifest: Manifest, source: str) -> None:
    """Raise `IntegrityError` when `data` is not exactly the file the manifest describes."""
    if len(data) != manifest.bytes:
        kind = "truncated" if len(data) < manifest.bytes else "too long"
        raise IntegrityError(
            f"{source}: {kind} ({len(data)} bytes, manifest says {manifest.bytes}) for "
            f"{manifest.name} version {manifest.version}; refused"
        )
    digest = sha256_hex(data)
    if digest != manifest.sha256:
        raise IntegrityError(
            f"{source}: sha256 {digest[:16]}... does not match the manifest's {manifest.sha256[:16]}... for "
            f"{manifest.name} version {manifest.version} (corrupted); refused"
        )


def check_file(path: Path, manifest: Manifest, source: str, chunk_bytes: int = 1024 * 1024) -> None:
    """`check_bytes` on a file, read in chunks (a model on disk is never held whole just to be hashed)."""
    import hashlib

    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
                size += len(chunk)
                if size > manifest.bytes:
                    break
    except OSError as exc:
        raise IntegrityError(f"{source} cannot be read ({exc})") from None
    if size != manifest.bytes:
        kind = "truncated" if size < manifest.bytes else "too long"
        raise IntegrityError(f"{source}: {kind} ({size}{'+' if size > manifest.bytes else ''} bytes, manifest says "
                             f"{manifest.bytes}) for {manifest.name} version {manifest.version}; refused")
    if digest.hexdigest() != manifest.sha256:
        raise IntegrityError(
            f"{source}: sha256 {digest.hexdigest()[:16]}... does not match the manifest's {manifest.sha256[:16]}... "
            f"for {manifest.name} version {manifest.version} (corrupted); refused"
        )


def probe_inputs(spec: InputSpec) -> np.ndarray:
    """One plausible model input: a fortnight-like level of sales ending today (dates only matter for calendar)."""
    raw = np.full((1, spec.lookback), 50.0)
    dates = np.arange(np.datetime64("2020-01-01") - spec.lookback, np.datetime64("2020-01-01"))[None, :]
    return build_inputs(raw, dates, spec)


def load_checked(model: Path | bytes, manifest: Manifest, source: str) -> TFLiteForecaster:
    """Load in LiteRT and run one forecast; raise `ModelLoadError` naming what is wrong."""
    forecaster = TFLiteForecaster(model)  # raises ModelLoadError when the flatbuffer is bad
    spec = InputSpec.from_dict(manifest.input_spec)
    expected = (1, spec.lookback, spec.n_features)
    if forecaster.input_shape != expected:
        raise ModelLoadError(
            f"{source}: the model takes input {forecaster.input_shape}, the manifest's input spec needs {expected}; "
            "the manifest and the model do not belong together"
        )
    try:
        value = forecaster.predict(probe_inputs(spec))[0]
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError from invoke
        raise ModelLoadError(f"{source}: the model loads but does not run: {exc}") from exc
    if not np.isfinite(value):
        raise ModelLoadError(f"{source}: the model runs but forecasts {value}; refused")
    return forecaster


def verify_model(data: bytes, manifest: Manifest, source: str) -> TFLiteForecaster:
    """All the checks: exact bytes, then it loads and runs."""
    check_bytes(data, manifest, source)
    return load_checked(data, manifest, source)
