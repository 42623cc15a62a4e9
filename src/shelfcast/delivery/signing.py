"""Signed delivery metadata: what a store trusts is a signature by keys it knows, not whoever can write the bucket.

The bucket carries The Update Framework's four roles as static files beside `channels/` and `models/`
(python-tuf's Metadata API, consistent snapshots):

    metadata/<n>.root.json        the keys of every role and how many signatures each needs (root key, offline)
    metadata/<n>.targets.json     every channel pointer and every promoted version's manifest and model, each with
                                  its length and sha256 (targets key: promotion and rollback sign it)
    metadata/<n>.snapshot.json    the one targets version that belongs to this release (snapshot key)
    metadata/timestamp.json       the newest snapshot, re-signed every night with a short lifetime (timestamp key)

A promotion first moves the pointer (`shelfcast.delivery.channels`), then signs it: the new pointer bytes, the
version's manifest bytes and its model's sha256 become targets of a new targets version, which a new snapshot
and a new timestamp name. A store (`shelfcast.device.trust`) verifies the whole chain before it reads anything
else, so pointer, manifest and model written with the S3 credentials alone are refused, an old or mixed set of
metadata is refused (versions only go up, and every file is named by hash and version), and a bucket nobody
re-signs is noticed when its timestamp expires (`timestamp_lifetime_s`, a day by default).

Concurrent signers never lose each other's targets: every versioned file is written once (`IfNoneMatch='*'`),
a loser re-reads the newest targets and adds its change on top; the timestamp is replaced by compare-and-swap
and never made to name an older snapshot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from shelfcast.contract.errors import ConfigError, WriteConflict, ShelfcastError
from shelfcast.contract.objects import AlreadyExists, ObjectMissing, ObjectStore

METADATA_PREFIX = "metadata/"
ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
DEFAULT_LIFETIMES_S = {"root": 365 * 86400, "targets": 90 * 86400, "snapshot": 30 * 86400, "timestamp": 86400}
MAX_ATTEMPTS = 50


class SigningError(ShelfcastError, RuntimeError):
    """Delivery metadata could not be signed (a key is missing or does not match the bucket's root)."""


def metadata_key(role: str, version: int | None = None) -> str:
    return f"{METADATA_PREFIX}{role}.json" if version is None else f"{METADATA_PREFIX}{version}.{role}.json"


def _now() -> datetime:
    """The system clock, never a replay's simulated one: stores check expiry against their own system clock
    (python-tuf does), so what is signed must expire in real time."""
    from shelfcast.contract.clock import SystemClock

    return SystemClock().now().replace(microsecond=0)


def _serializer():
    from tuf.api.serialization.json import JSONSerializer

    return JSONSerializer(compact=True)


def write_private_key(path: Path, pem: bytes) -> None:
    """A private key file readable by its owner only (0600), written without a window where it is wider."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, path)


def load_signer(path: Path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        return CryptoSigner(load_pem_private_key(Path(path).read_bytes(), password=None))
    except OSError as exc:
        raise SigningError(f"signing key {path} cannot be read ({exc.strerror}); run `shelfcast keys init` or "
                           "point SHELFCAST_KEYS_DIR at the folder that holds it") from None
    except ValueError as exc:
        raise SigningError(f"signing key {path} is not a PEM private key ({exc})") from None


def generate_signer():
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner.generate_ed25519()


@dataclass
class KeyRing:
    """Where the private keys are: `<keys_dir>/<role>.key`. The root key is normally elsewhere (offline): it is
    only needed by `keys init` and `keys rotate`, passed as `root_key`."""

    keys_dir: Path
    root_key: Path | None = None

    def path(self, role: str) -> Path:
        if role == "root" and self.root_key is not None:
            return Path(self.root_key)
        return Path(self.keys_dir) / f"{role}.key"

    def signer(self, role: str):
        return load_signer(self.path(role))


@dataclass(frozen=True)
class Lifetimes:
    """Seconds each role's metadata stays valid after it is signed."""

    root_s: int = DEFAULT_LIFETIMES_S["root"]
    targets_s: int = DEFAULT_LIFETIMES_S["targets"]
    snapshot_s: int = DEFAULT_LIFETIMES_S["snapshot"]
    timestamp_s: int = DEFAULT_LIFETIMES_S["timestamp"]

    def expiry(self, role: str, now: datetime) -> datetime:
        return now + timedelta(seconds=getattr(self, f"{role}_s"))


class SignedRepository:
    """The signed metadata of one bucket, signed with the keys of a `KeyRing`."""

    def __init__(self, objects: ObjectStore, keys: KeyRing, lifetimes: Lifetimes | None = None,
                 clock: Callable[[], datetime] = _now):
        self.objects = objects
        self.keys = keys
        self.lifetimes = lifetimes or Lifetimes()
        self.clock = clock

    # ---- reading ---------------------------------------------------------------------------------------------
    def _read(self, key: str):
        from tuf.api.metadata import Metadata

        fetched = self.objects.get(key)
        return Metadata.from_bytes(fetched.body), fetched.etag

    def _newest(self, role: str, start: int) -> int:
        """The highest version of `role` written so far, at or after `start` (one HEAD per step)."""
        version = start
        while self.objects.exists(metadata_key(role, version + 1)):
            version += 1
        return version

    def initialized(self) -> bool:
        return self.objects.exists(metadata_key("root", 1))

    def root(self):
        newest = self._newest("root", 1)
        return self._read(metadata_key("root", newest))[0]

    def root_bytes(self) -> bytes:
        """The newest root metadata as a store is provisioned with it (`shelfcast keys show --root-out`)."""
        return self.root().to_bytes(_serializer())

    def timestamp(self):
        return self._read(metadata_key("timestamp"))

    def targets(self):
        """The newest signed targets (it may be ahead of the snapshot when a signer died half way)."""
        timestamp, _ = self.timestamp()
        snapshot = self._read(metadata_key("snapshot", self._newest("snapshot", timestamp.signed.snapshot_meta.version)))[0]
        version = self._newest("targets", snapshot.signed.meta["targets.json"].version)
        return self._read(metadata_key("targets", version))[0]

    # ---- init and rotation (root key) ------------------------------------------------------------------------
    def init(self) -> None:
        """Generate the four keys (into the key ring's paths, 0600) and write version 1 of every role."""
        from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

        if self.initialized():
            raise SigningError(f"{self.objects.describe(metadata_key('root', 1))} exists already: this bucket "
                               "has keys; use `shelfcast keys rotate` to change them")
        signers = {}
        for role in ROLES:
            path = self.keys.path(role)
            if path.exists():
                raise SigningError(f"{path} exists already; move it away or choose another --keys-dir")
            signers[role] = generate_signer()
        now = self.clock()
        root = Root(expires=self.lifetimes.expiry("root", now), consistent_snapshot=True)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        for role, signer in signers.items():
            write_private_key(self.keys.path(role), signer.private_bytes)
        root_md = Metadata(root)
        root_md.sign(signers["root"])
        targets = Metadata(Targets(expires=self.lifetimes.expiry("targets", now)))
        targets.sign(signers["targets"])
        snapshot = Metadata(Snapshot(expires=self.lifetimes.expiry("snapshot", now)))
        snapshot.sign(signers["snapshot"])
        timestamp = Metadata(Timestamp(expires=self.lifetimes.expiry("timestamp", now)))
        timestamp.sign(signers["timestamp"])
        self.objects.put_if_absent(metadata_key("root", 1), root_md.to_bytes(_serializer()), "application/json")
        self.objects.put_if_absent(metadata_key("targets", 1), targets.to_bytes(_serializer()), "application/json")
        self.objects.put_if_absent(metadata_key("snapshot", 1), snapshot.to_bytes(_serializer()), "application/json")
        self.objects.put_if_match(metadata_key("timestamp"), timestamp.to_bytes(_serializer()), None)

    def rotate(self, roles: tuple[str, ...]) -> int:
        """Replace the keys of `roles` with new ones: a new root version signed by the old root key and (when
        the root key itself changes) the new one, so stores that trust the old root follow it. The online roles'
        files are re-signed with their new keys. Returns the new root version."""
        from tuf.api.metadata import Metadata

        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise ConfigError(f"rotate which keys? {sorted(unknown) or 'none given'}; choose among {', '.join(ROLES)}")
        current = self.root()
        old_root = self.keys.signer("root")
        if old_root.public_key.keyid not in current.signed.roles["root"].keyids:
            raise SigningError(f"{self.keys.path('root')} is not this bucket's root key "
                               f"({self.objects.describe(METADATA_PREFIX)}); pass the offline root key with --root-key")
        new_signers = {role: generate_signer() for role in roles}
        signed = current.signed
        for role, signer in new_signers.items():
            for keyid in list(signed.roles[role].keyids):
                signed.revoke_key(keyid, role)
            signed.add_key(signer.public_key, role)
        signed.version += 1
        signed.expires = self.lifetimes.expiry("root", self.clock())
        new_root = Metadata(signed)
        new_root.sign(old_root, append=True)
        if "root" in new_signers:
            new_root.sign(new_signers["root"], append=True)
        # The new keys are on disk before the root that names them is public: a crash leaves unused keys, never a
        # bucket whose keys nobody holds.
        backups = {}
        for role, signer in new_signers.items():
            path = self.keys.path(role)
            if path.exists():
                backups[role] = path.with_name(f"{path.name}.v{signed.version - 1}")
                os.replace(path, backups[role])
            write_private_key(path, signer.private_bytes)
        try:
            self.objects.put_if_absent(metadata_key("root", signed.version), new_root.to_bytes(_serializer()),
                                       "application/json")
        except AlreadyExists:
            for role, backup in backups.items():
                os.replace(backup, self.keys.path(role))
            raise WriteConflict(f"root version {signed.version} was written by someone else meanwhile; "
                                    "re-run `shelfcast keys rotate`") from None
        # Online roles re-signed under the new root (versions go up, so stores take them).
        self.sign_targets({}, force=True)
        return signed.version

    # ---- promotion and the nightly refresh (online keys) -----------------------------------------------------
    def sign_targets(self, changes: dict, force: bool = False) -> int:
        """Add or replace targets (`path -> TargetFile`) in a new targets version, then publish a snapshot and a
        timestamp naming it. With no changes and `force`, the targets are re-signed as they are (a new key, or
        near expiry). Returns the targets version that is now public."""
        from tuf.api.metadata import Metadata

        signer = self.keys.signer("targets")
        for _ in range(MAX_ATTEMPTS):
            current = self.targets()
            signed = current.signed
            if not force and all(signed.targets.get(path) == target for path, target in changes.items()):
                version = signed.version
                break
            signed.targets.update(changes)
            signed.version += 1
            signed.expires = self.lifetimes.expiry("targets", self.clock())
            document = Metadata(signed)
            document.sign(signer)
            try:
                self.objects.put_if_absent(metadata_key("targets", signed.version), document.to_bytes(_serializer()),
                                           "application/json")
            except AlreadyExists:
                continue  # another signer took this version: add the change on top of theirs
            version = signed.version
            break
        else:
            raise WriteConflict("the targets metadata kept changing while it was signed; retry")
        self.publish_snapshot(force=force)
        return version

    def publish_snapshot(self, force: bool = False) -> int:
        from tuf.api.metadata import Metadata, MetaFile, Snapshot

        signer = self.keys.signer("snapshot")
        for _ in range(MAX_ATTEMPTS):
            timestamp, _ = self.timestamp()
            newest_snapshot = self._newest("snapshot", timestamp.signed.snapshot_meta.version)
            snapshot = self._read(metadata_key("snapshot", newest_snapshot))[0]
            targets_version = self._newest("targets", snapshot.signed.meta["targets.json"].version)
            if targets_version == snapshot.signed.meta["targets.json"].version and not force:
                version = newest_snapshot
                break
            document = Metadata(Snapshot(version=newest_snapshot + 1, expires=self.lifetimes.expiry("snapshot", self.clock()),
                                         meta={"targets.json": MetaFile(targets_version)}))
            document.sign(signer)
            try:
                self.objects.put_if_absent(metadata_key("snapshot", newest_snapshot + 1),
                                           document.to_bytes(_serializer()), "application/json")
            except AlreadyExists:
                continue
            version = newest_snapshot + 1
            break
        else:
            raise WriteConflict("the snapshot metadata kept changing while it was signed; retry")
        self.refresh_timestamp()
        return version

    def refresh_timestamp(self) -> int:
        """Sign a new timestamp naming the newest snapshot, valid for `timestamp_s` from now (the nightly run
        calls this: a bucket whose timestamp is not re-signed goes stale on every store). Returns its version."""
        from tuf.api.metadata import Metadata, MetaFile, Timestamp

        signer = self.keys.signer("timestamp")
        for _ in range(MAX_ATTEMPTS):
            current, etag = self.timestamp()
            snapshot_version = self._newest("snapshot", current.signed.snapshot_meta.version)
            document = Metadata(Timestamp(version=current.signed.version + 1,
                                          expires=self.lifetimes.expiry("timestamp", self.clock()),
                                          snapshot_meta=MetaFile(snapshot_version)))
            document.sign(signer)
            try:
                self.objects.put_if_match(metadata_key("timestamp"), document.to_bytes(_serializer()), etag)
            except WriteConflict:
                continue
            # SeaweedFS can let two `IfMatch` writes on one ETag both succeed (see shelfcast.delivery.channels):
            # read back, and sign again if a concurrent signer's older snapshot landed last.
            if self.timestamp()[0].signed.snapshot_meta.version < snapshot_version:
                continue
            return current.signed.version + 1
        raise WriteConflict("the timestamp kept changing while it was signed; retry")

    def refresh(self) -> dict:
        """The nightly re-signing: targets and snapshot when less than half their lifetime is left, the timestamp
        always. Returns the expiry of each online role."""
        now = self.clock()
        targets = self.targets()
        if targets.signed.expires - now < timedelta(seconds=self.lifetimes.targets_s / 2):
            self.sign_targets({}, force=True)
        else:
            timestamp, _ = self.timestamp()
            snapshot = self._read(metadata_key("snapshot", timestamp.signed.snapshot_meta.version))[0]
            if snapshot.signed.expires - now < timedelta(seconds=self.lifetimes.snapshot_s / 2):
                self.publish_snapshot(force=True)
            else:
                self.refresh_timestamp()
        return self.expiries()

    def refresh_if_due(self, fraction_left: float = 0.5) -> bool:
        """`refresh()` when the timestamp has less than `fraction_left` of its lifetime left; True when it
        signed. The hourly ingest calls this, so the timestamp never runs out between two nightly runs that
        start a little later each (a one-day lifetime re-signed once a day would lapse for minutes)."""
        timestamp, _ = self.timestamp()
        if timestamp.signed.expires - self.clock() >= timedelta(seconds=self.lifetimes.timestamp_s * fraction_left):
            return False
        self.refresh()
        return True

    def expiries(self) -> dict:
        timestamp, _ = self.timestamp()
        snapshot = self._read(metadata_key("snapshot", timestamp.signed.snapshot_meta.version))[0]
        targets = self._read(metadata_key("targets", snapshot.signed.meta["targets.json"].version))[0]
        root = self.root()
        return {"root": (root.signed.version, root.signed.expires),
                "targets": (targets.signed.version, targets.signed.expires),
                "snapshot": (snapshot.signed.version, snapshot.signed.expires),
                "timestamp": (timestamp.signed.version, timestamp.signed.expires)}


def target_file(path: str, data: bytes | None = None, *, length: int | None = None, sha256: str | None = None,
                **custom):
    """A target with its length and sha256, from its bytes or (for a model too big to hold) the manifest's."""
    from hashlib import sha256 as _sha256

    from tuf.api.metadata import TargetFile

    if data is not None:
        length, sha256 = len(data), _sha256(data).hexdigest()
    return TargetFile(length, {"sha256": sha256}, path, unrecognized_fields={"custom": custom} if custom else None)


def move_targets(objects: ObjectStore, pointer_key: str, pointer_body: bytes, manifest) -> dict:
    """The targets one channel move signs: the pointer as written, the version's manifest as it is in the bucket
    (read back: a store gets those exact bytes), and its model by the manifest's sha256 and length."""
    from shelfcast.contract.manifest import Manifest

    try:
        manifest_body = objects.get(manifest.key).body
    except ObjectMissing:
        raise SigningError(f"{objects.describe(manifest.key)} is missing; publish the version first") from None
    stored = Manifest.from_json(manifest_body, objects.describe(manifest.key))
    if (stored.sha256, stored.bytes) != (manifest.sha256, manifest.bytes):
        raise SigningError(f"{objects.describe(manifest.key)} describes other bytes than the version being "
                           "moved; refusing to sign it")
    return {
        pointer_key: target_file(pointer_key, pointer_body),
        manifest.key: target_file(manifest.key, manifest_body),
        manifest.model_key: target_file(manifest.model_key, length=manifest.bytes, sha256=manifest.sha256),
    }


def repository_from_settings(settings, objects: ObjectStore) -> SignedRepository:
    keys = KeyRing(settings.signing_keys_dir, settings.root_key_file)
    return SignedRepository(objects, keys, Lifetimes(timestamp_s=settings.timestamp_lifetime_s))


def signer_for(settings, objects: ObjectStore) -> SignedRepository | None:
    """The signer promotions use: None only when this bucket was never given keys (`shelfcast keys init`), in
    which case stores follow nothing; a bucket with keys and no key files here is an error."""
    repository = repository_from_settings(settings, objects)
    if not repository.initialized():
        return None
    for role in ONLINE_ROLES:
        if not repository.keys.path(role).exists():
            raise SigningError(f"{objects.describe(METADATA_PREFIX)} is signed but {repository.keys.path(role)} "
                               "is missing; point SHELFCAST_KEYS_DIR at the online keys")
    return repository


@dataclass(frozen=True)
class SignatureStatus:
    """What a store would conclude about a channel from the bucket as it is now (read, not verified: the trainer's
    view, for `shelfcast channels`)."""

    channel: str
    problem: str | None
    timestamp_expires: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        if self.problem:
            return f"channel {self.channel}: ALERT {self.problem}"
        return (f"channel {self.channel}: pointer signed; signed metadata fresh until "
                f"{self.timestamp_expires:%Y-%m-%dT%H:%M:%SZ}")


def signature_status(objects: ObjectStore, channel: str, now: datetime | None = None) -> SignatureStatus:
    from hashlib import sha256

    from shelfcast.contract.manifest import pointer_key

    now = now or _now()
    repository = SignedRepository(objects, KeyRing(Path(".")))
    if not repository.initialized():
        return SignatureStatus(channel, f"{objects.describe(METADATA_PREFIX)} holds no signed metadata: stores "
                                        "follow nothing; run `shelfcast keys init` and promote")
    timestamp, _ = repository.timestamp()
    expires = timestamp.signed.expires
    if expires <= now:
        return SignatureStatus(channel, f"FROZEN: the signed timestamp expired at {expires:%Y-%m-%dT%H:%M:%SZ}; "
                                        "every store refuses to move and reports the channel frozen; run "
                                        "`shelfcast keys refresh` (the nightly run should have)", expires)
    key = pointer_key(channel)
    target = repository.targets().signed.targets.get(key)
    try:
        body = objects.get(key).body
    except ObjectMissing:
        body = None
    if body is None:
        return SignatureStatus(channel, None, expires) if target is None else SignatureStatus(
            channel, f"{objects.describe(key)} is signed but missing", expires)
    if target is None or target.hashes.get("sha256") != sha256(body).hexdigest():
        return SignatureStatus(channel, f"{objects.describe(key)} is not the signed pointer (written without "
                                        "the signing keys, or its signing did not finish): stores keep their "
                                        "model; promote or roll back to sign a move", expires)
    return SignatureStatus(channel, None, expires)
