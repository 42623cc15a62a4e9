"""Store sync: keep a working model on the store device, pulled from its channel (numpy, boto3, ai-edge-litert).

One sync:
1. refresh the bucket's signed metadata (`shelfcast.device.trust`: TUF's root, timestamp, snapshot and targets,
   a few hundred bytes when nothing changed); when the signed pointer of the channel has the sha256 already
   followed, nothing else is read;
2. the signed pointer names a version: reuse it when it is already on disk (a rollback to the previous model),
   else download its manifest and model, each a signed target, each cut off at its signed length;
3. check the manifest against the pointer and the signed model, load the file in LiteRT and run one forecast;
4. swap atomically on disk: the version's folder is renamed into `versions/`, then `active.json` (current and
   previous version) is replaced in one `os.replace`. The previous model stays on disk.

A corrupt, truncated, unsigned or unloadable download, expired or mixed metadata, or S3 failing half way, is
refused with a message and changes nothing: the store keeps serving its current model. The signed pointer is
remembered only after a successful sync, so the next poll tries again. Expired metadata is reported as
`frozen`: the channel may be held back on purpose.

Layout of the store's folder:

    active.json                    {"current": V, "previous": U, ...}: what `predict` serves
    state.json                     the signed pointer followed and the last sync's outcome
    metadata/                      the signed metadata this store trusts (root history, timestamp, ...)
    versions/<V>/model.tflite, manifest.json
    .incoming/                     downloads being checked (never served)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from botocore.exceptions import BotoCoreError

from shelfcast.contract import clock
from shelfcast.contract.manifest import Manifest, Pointer, pointer_key
from shelfcast.contract.runtime import TFLiteForecaster
from shelfcast.contract.verify import check_file, load_checked
from shelfcast.contract.errors import IntegrityError, ModelLoadError
from shelfcast.contract.objects import ObjectStore
from shelfcast.device.trust import FrozenChannel, TrustedBucket, sha256_of

ACTIVE, STATE, VERSIONS, INCOMING = "active.json", "state.json", "versions", ".incoming"
MODEL_FILE, MANIFEST_FILE = "model.tflite", "manifest.json"
MAX_MODEL_BYTES = 64 * 1024 * 1024


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data` so that a reader (or a crash) sees the old file or the new one, never a mix.
    `durable` also flushes it to the disk before returning (for what is served; bookkeeping can skip it)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Installed:
    """A model version on the store's disk."""

    version: str
    folder: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    def check(self) -> TFLiteForecaster:
        """Re-check the file on disk against its manifest and load it."""
        source = str(self.model_path)
        check_file(self.model_path, self.manifest, source)
        return load_checked(self.model_path, self.manifest, source)


def read_installed_folder(folder: Path) -> Manifest:
    return Manifest.from_json((folder / MANIFEST_FILE).read_bytes(), str(folder / MANIFEST_FILE))


def read_installed(directory: Path, version: str | None) -> Installed | None:
    if not version:
        return None
    folder = Path(directory) / VERSIONS / version
    try:
        manifest = Manifest.from_json((folder / MANIFEST_FILE).read_bytes(), str(folder / MANIFEST_FILE))
    except (OSError, IntegrityError):
        return None
    return Installed(version, folder, manifest)


@dataclass
class SyncResult:
    """One poll: `status` is `unchanged`, `updated`, `empty` (channel has no version yet), `refused` (the offered
    version failed a check) or `error` (S3 or the disk failed). `serving` is what the store runs afterwards."""

    status: str
    channel: str
    serving: str | None
    offered: str | None
    message: str
    model_bytes: int = 0
    seconds: float = 0.0
    bytes_received: int = 0  # everything read from S3 in this poll: signed metadata, pointer, manifest, model

    @property
    def ok(self) -> bool:
        return self.status in ("unchanged", "updated", "empty")

    def line(self, store_id: int | None = None) -> str:
        who = f"store={store_id} " if store_id is not None else ""
        return (f"{clock.stamp()} {who}channel={self.channel} status={self.status} serving={self.serving} "
                f"offered={self.offered} model_bytes={self.model_bytes} {self.seconds * 1000:.0f}ms: {self.message}")


class StoreClient:
    """Syncs one store folder with one channel. `on_stage(name)` is called as each step starts (`pointer`,
    `manifest`, `model`, `verify`, `swap`), for progress reporting and for tests that fail a step on purpose."""

    def __init__(self, objects: ObjectStore, channel: str, directory: str | Path, *, store_id: int | None = None,
                 on_stage: Callable[[str], None] | None = None, max_model_bytes: int = MAX_MODEL_BYTES,
                 trusted_root: bytes | None = None):
        self.objects = objects
        self.trusted_root = trusted_root
        self.channel = channel
        self.directory = Path(directory)
        self.store_id = store_id
        self._on_stage = on_stage or (lambda stage: None)
        self.stage = "idle"
        self.max_model_bytes = max_model_bytes

    def on_stage(self, stage: str) -> None:
        self.stage = stage
        self._on_stage(stage)

    # ---- local state -----------------------------------------------------------------------------------------
    def active(self) -> dict:
        return read_json(self.directory / ACTIVE)

    def current(self) -> Installed | None:
        return read_installed(self.directory, self.active().get("current"))

    def previous(self) -> Installed | None:
        return read_installed(self.directory, self.active().get("previous"))

    def _state(self) -> dict:
        return read_json(self.directory / STATE)

    def _save_state(self, **changes) -> None:
        state = {**self._state(), **changes}
        # Bookkeeping only: losing it to a power cut costs one extra download, so no fsync on every poll.
        write_atomic(self.directory / STATE, json.dumps(state, indent=2, sort_keys=True).encode(), durable=False)

    # ---- one sync --------------------------------------------------------------------------------------------
    def sync(self) -> SyncResult:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self.current()
        serving = current.version if current else None
        offered: str | None = None
        downloaded = 0
        trust = TrustedBucket(self.objects, self.directory, self.trusted_root)

        def result(status: str, message: str) -> SyncResult:
            outcome = SyncResult(status, self.channel, self.current().version if self.current() else None, offered,
                                 message, downloaded, time.perf_counter() - started,
                                 trust.bytes_received)
            try:
                self._save_state(last_poll_at=clock.stamp(), last_status=status, last_message=message[:1000])
            except OSError:
                pass
            return outcome

        keep = f"; keeps serving {serving}" if serving else "; no model installed yet"
        incoming = self.directory / INCOMING / uuid.uuid4().hex[:8]
        try:
            self.on_stage("metadata")
            state = self._state()
            followed = bool(current and state.get("channel") == self.channel
                            and state.get("pointer_version") == serving)
            if followed and trust.still_current(state.get("timestamp_etag"), state.get("metadata_expires")):
                return result("unchanged", f"{self.channel} still points at {serving} (signed timestamp unchanged)")
            trust.open()
            self.on_stage("pointer")
            key = pointer_key(self.channel)
            signed_pointer = trust.target(key)
            if signed_pointer is None:
                return result("empty", f"channel {self.channel} has no signed version yet "
                                       f"({self.objects.describe(key)})" + keep)
            if followed and state.get("pointer_sha256") == sha256_of(signed_pointer):
                self._remember_metadata(trust)
                return result("unchanged", f"{self.channel} still points at {serving}")
            body = trust.read(signed_pointer, "channel pointer", incoming)
            pointer = Pointer.from_json(body, f"{self.objects.describe(key)}")
            offered = pointer.version
            if pointer.channel != self.channel:
                raise IntegrityError(f"{key} names channel {pointer.channel!r}, not {self.channel!r}")
            self._check_not_behind(pointer, state, key)
            if current and pointer.version == serving and current.manifest.sha256 == pointer.sha256:
                self._remember(signed_pointer, pointer, trust)
                return result("unchanged", f"{self.channel} still points at {serving} (pointer rewritten)")

            if self._reuse_local(pointer, serving, trust):
                self._remember(signed_pointer, pointer, trust)
                return result("updated", f"now serving {pointer.version} (already on disk, verified), "
                                         f"previous {serving}")

            staging = self._download(pointer, trust, incoming)
            manifest = read_installed_folder(staging)
            downloaded = manifest.bytes
            self.on_stage("verify")
            Installed(manifest.version, staging, manifest).check()
            self.on_stage("swap")
            self._install(staging, manifest.version, serving)
            self._remember(signed_pointer, pointer, trust)
            return result("updated", f"now serving {manifest.version} ({manifest.bytes} bytes, signed, sha256 "
                                     f"{manifest.sha256[:12]}... verified, loads), previous {serving}")
        except FrozenChannel as exc:
            return result("frozen", f"{exc}" + keep)
        except (IntegrityError, ModelLoadError) as exc:
            return result("refused", f"{exc}" + keep)
        except BotoCoreError as exc:
            return result("error", self._unreachable(exc) + keep)
        except OSError as exc:
            return result("error", f"local disk problem in {self.directory} ({exc})" + keep)
        except Exception as exc:  # tuf's download errors (tuf is imported only once a sync runs)
            from tuf.api.exceptions import DownloadError, DownloadHTTPError

            if isinstance(exc, DownloadHTTPError) and exc.status_code == 403:
                return result("error", f"S3 refused the request while reading the {self.stage}: {exc} (check this "
                                       "store's S3 credentials and policy)" + keep)
            if isinstance(exc, DownloadHTTPError):
                return result("error", f"S3 answered HTTP {exc.status_code} while reading the {self.stage}: {exc}; "
                                       "the next poll tries again" + keep)
            if isinstance(exc, DownloadError):
                return result("error", self._unreachable(exc.__cause__ or exc) + keep)
            raise
        finally:
            shutil.rmtree(self.directory / INCOMING, ignore_errors=True)

    def _unreachable(self, exc: BaseException) -> str:
        return (f"S3 unreachable or the transfer broke while reading the {self.stage} "
                f"({type(exc).__name__}: {exc})")

    def _check_not_behind(self, pointer: Pointer, state: dict, key: str) -> None:
        """Moves are numbered and a rollback is a new move, so a pointer never goes back: one older than the
        move this store already followed is a stale copy (a lagging replica or cache) or a replay, refused."""
        seen, version = state.get("pointer_seq"), state.get("pointer_version")
        if state.get("channel") != self.channel or not isinstance(seen, int) or isinstance(seen, bool):
            return  # nothing followed on this channel yet (or bookkeeping this version did not write)
        if pointer.seq < seen or (pointer.seq == seen and pointer.version != version):
            raise IntegrityError(
                f"{self.objects.describe(key)} is move #{pointer.seq} (version {pointer.version}) but this "
                f"store already followed move #{seen} (version {version}): a stale or replayed pointer; refused. "
                f"If the channel was deliberately recreated, delete {self.directory / STATE} to follow it again"
            )

    def _reuse_local(self, pointer: Pointer, serving: str | None, trust: TrustedBucket) -> bool:
        """Swap to a version already on disk (the previous one, after a rollback) when it still checks out and
        its model is still the signed one."""
        local = read_installed(self.directory, pointer.version)
        if local is None or not pointer.matches(local.manifest):
            return False
        signed_model = trust.require(pointer.model_key, "model")
        if (signed_model.length, sha256_of(signed_model)) != (local.manifest.bytes, local.manifest.sha256):
            return False
        self.on_stage("verify")
        try:
            local.check()
        except (IntegrityError, ModelLoadError):
            return False  # damaged on disk: download it again
        self.on_stage("swap")
        self._activate(pointer.version, serving)
        return True

    def _download(self, pointer: Pointer, trust: TrustedBucket, incoming: Path) -> Path:
        """Download the version's manifest and model into a staging folder, each cut off at its signed length and
        checked against its signed sha256; returns the folder."""
        self.on_stage("manifest")
        source = f"{self.objects.describe(pointer.manifest_key)}"
        signed_manifest = trust.require(pointer.manifest_key, "manifest")
        signed_model = trust.require(pointer.model_key, "model")
        manifest = Manifest.from_json(trust.read(signed_manifest, "manifest", incoming / "manifest"), source)
        if not pointer.matches(manifest):
            raise IntegrityError(
                f"{source} (version {manifest.version}, sha256 {manifest.sha256[:12]}..., {manifest.bytes} bytes) "
                f"does not match the pointer (version {pointer.version}, sha256 {pointer.sha256[:12]}..., "
                f"{pointer.bytes} bytes); refused"
            )
        if (signed_model.length, sha256_of(signed_model)) != (manifest.bytes, manifest.sha256):
            raise IntegrityError(f"{source} describes {manifest.bytes} bytes with sha256 {manifest.sha256[:12]}..., "
                                 f"the signed model is {signed_model.length} bytes with sha256 "
                                 f"{sha256_of(signed_model)[:12]}...; refused")
        if manifest.bytes > self.max_model_bytes:
            raise IntegrityError(f"{source}: {manifest.bytes:,} bytes is over this store's limit of "
                                 f"{self.max_model_bytes:,} (--max-model-bytes); not downloaded")
        self.on_stage("model")
        staging = incoming / f"{manifest.version}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        trust.download(signed_model, staging / MODEL_FILE, "model")
        with open(staging / MANIFEST_FILE, "wb") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        with open(staging / MODEL_FILE, "rb+") as handle:
            os.fsync(handle.fileno())
        return staging

    def _install(self, staging: Path, version: str, previous: str | None) -> None:
        versions = self.directory / VERSIONS
        versions.mkdir(exist_ok=True)
        final = versions / version
        if final.exists():  # a damaged copy from an earlier attempt: never the one being served
            shutil.rmtree(final)
        os.rename(staging, final)
        _fsync_dir(versions)
        self._activate(version, previous)

    def _activate(self, version: str, previous: str | None) -> None:
        previous = previous if previous != version else self.active().get("previous")
        write_atomic(self.directory / ACTIVE, json.dumps(
            {"current": version, "previous": previous, "channel": self.channel, "activated_at": clock.stamp()},
            indent=2, sort_keys=True).encode())
        keep = {version, previous}
        for folder in (self.directory / VERSIONS).iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def _remember(self, signed_pointer, pointer: Pointer, trust: TrustedBucket) -> None:
        self._save_state(channel=self.channel, pointer_sha256=sha256_of(signed_pointer),
                         pointer_version=pointer.version, pointer_seq=pointer.seq)
        self._remember_metadata(trust)

    def _remember_metadata(self, trust: TrustedBucket) -> None:
        """The timestamp just verified and followed through: the next poll is a conditional GET of it."""
        etag = trust.timestamp_etag()
        if etag:
            self._save_state(timestamp_etag=etag, metadata_expires=trust.expires())

    # ---- the loop --------------------------------------------------------------------------------------------
    def run(self, every_s: float, stop: threading.Event | None = None, max_polls: int | None = None,
            jitter: float = 0.1, report: Callable[[SyncResult], None] | None = None,
            rng: random.Random | None = None) -> list[SyncResult]:
        """Sync every `every_s` seconds (+- `jitter` of it, so a fleet does not poll in lockstep) until `stop`
        is set or `max_polls` polls ran. Returns the results when it ends."""
        stop = stop or threading.Event()
        rng = rng or random.Random()
        results = []
        while not stop.is_set():
            try:
                outcome = self.sync()
            except Exception as exc:  # noqa: BLE001 - a polling daemon reports and polls again, never dies
                try:
                    serving = self.active().get("current")
                except Exception:  # noqa: BLE001 - the folder itself may be the problem
                    serving = None
                outcome = SyncResult("error", self.channel, serving, None, f"sync failed unexpectedly: "
                                     f"{type(exc).__name__}: {exc}; keeps serving {serving}, retrying at the next poll")
            results.append(outcome)
            if report:
                report(outcome)
            if max_polls is not None and len(results) >= max_polls:
                break
            stop.wait(max(0.0, every_s * (1 + rng.uniform(-jitter, jitter))))
        return results


def _installed_versions(directory: Path) -> list[str]:
    """The versions installed under `versions/` whose manifest reads (their models are checked when served)."""
    try:
        folders = sorted(p.name for p in (directory / VERSIONS).iterdir() if p.is_dir())
    except OSError:
        return []
    return [name for name in folders if read_installed(directory, name) is not None]


def serving_model(directory: str | Path) -> tuple[TFLiteForecaster, Manifest, str | None]:
    """The store's current model, checked and loaded; falls back to the previous one if the current file was
    damaged on disk. Returns (forecaster, manifest, note about a fallback or None)."""
    directory = Path(directory)
    active = read_json(directory / ACTIVE)
    if not active.get("current"):
        on_disk = _installed_versions(directory)
        if on_disk:  # a damaged or lost active.json, or a crash between the first install's rename and it
            state = "damaged" if (directory / ACTIVE).exists() else "missing"
            raise ModelLoadError(
                f"{directory / ACTIVE} is {state} (it names no current version) but {directory / VERSIONS} holds "
                f"version {', '.join(on_disk)}; run `shelfcast store sync --dir {directory}` to activate the "
                "channel's version again (from disk when it is one of them)")
        raise ModelLoadError(f"{directory} holds no model yet; run `shelfcast store sync --dir {directory}` first")
    problems = []
    for role in ("current", "previous"):
        installed = read_installed(directory, active.get(role))
        if installed is None:
            if active.get(role):
                problems.append(f"{role} version {active[role]} is missing from {directory / VERSIONS}")
            continue
        try:
            forecaster = installed.check()
        except (IntegrityError, ModelLoadError) as exc:
            problems.append(f"{role} version {installed.version}: {exc}")
            continue
        return forecaster, installed.manifest, ("; ".join(problems) + f"; serving {role} version "
                                                f"{installed.version}") if problems else None
    raise ModelLoadError(f"no usable model in {directory}: " + "; ".join(problems))


def parse_every(text: str) -> float:
    """`15m`, `30s`, `1h`, `900` (seconds) -> seconds."""
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"--every {text!r}: write a duration like 15m, 30s or 1h") from None
    if value <= 0:
        raise ValueError(f"--every {text!r} must be positive")
    return value


def assigned_channel(store_id: int, assignments: dict) -> str:
    """A store's channel from the fleet configuration `{"default": "stable", "channels": {"canary": [1, 2]}}`."""
    from shelfcast.contract.manifest import check_name

    if not isinstance(assignments, dict) or not isinstance(assignments.get("default"), str):
        raise ValueError('channel assignments need a "default" channel, e.g. {"default": "stable", '
                         '"channels": {"canary": [1, 2]}}')
    matches = [channel for channel, stores in (assignments.get("channels") or {}).items() if store_id in stores]
    if len(matches) > 1:
        raise ValueError(f"store {store_id} is assigned to several channels {sorted(matches)}; keep one")
    return check_name("channel", matches[0] if matches else assignments["default"])
