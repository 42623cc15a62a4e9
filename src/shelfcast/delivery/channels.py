"""Channel pointers and the promotion log: how a channel moves so that two promotions never interleave.

A move is decided by claiming the next log entry, `promotions/<channel>/log/<seq>.json`, with
`IfNoneMatch='*'`: of two promoters that read the same head, exactly one creates entry `seq + 1`, the other gets
`PromotionConflict` and changes nothing. Only then is `channels/<channel>/latest.json` rewritten with the same
document, by compare-and-swap (`IfMatch` on the ETag read with the head).

Why the log entry and not the pointer's ETag is the lock: SeaweedFS 4.48 let two concurrent `IfMatch` writes
with the same ETag both succeed (3 of 30 rounds of 8 writers, measured here), while `IfNoneMatch='*'` had
exactly one winner in 100 rounds of 16 writers. AWS S3 honours both; the protocol is correct on either.

A promoter that dies after claiming an entry but before rewriting the pointer leaves a committed move that
stores do not see yet: whoever reads the head next (`read_head`, called by every promotion, rollback and
status) finds the entry past the pointer and writes it through. Before claiming, a mover checks that the
version's model and manifest exist with the right size, so a pointer never names a missing object.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shelfcast.contract import clock
from shelfcast.contract.manifest import (
    Manifest,
    Pointer,
    decision_key,
    log_key,
    log_prefix,
    pointer_key,
)
from shelfcast.contract.errors import IntegrityError, PromotionConflict, WriteConflict, ShelfcastError
from shelfcast.contract.objects import AlreadyExists, ObjectMissing, ObjectStore

MAX_HEAL_STEPS = 1000
ANY = object()  # `expect=ANY`: move whatever the head is


class PromotionRefused(ShelfcastError, RuntimeError):
    """A promotion or rollback was refused by a rule or a failed check; the channel did not move."""


@dataclass(frozen=True)
class Head:
    """A channel's current pointer (None before its first promotion) and the ETag it was read with."""

    channel: str
    pointer: Pointer | None
    etag: str | None

    @property
    def seq(self) -> int:
        return self.pointer.seq if self.pointer else 0

    @property
    def version(self) -> str | None:
        return self.pointer.version if self.pointer else None


def _read_pointer(objects: ObjectStore, channel: str) -> tuple[Pointer | None, str | None]:
    key = pointer_key(channel)
    try:
        fetched = objects.get(key)
    except ObjectMissing:
        return None, None
    return Pointer.from_json(fetched.body, objects.describe(key)), fetched.etag


def read_head(objects: ObjectStore, channel: str, heal: bool = True) -> Head:
    """The channel's head. With `heal`, committed log entries past the pointer are written through first."""
    key = pointer_key(channel)
    for _ in range(MAX_HEAL_STEPS):
        pointer, etag = _read_pointer(objects, channel)
        seq = pointer.seq if pointer else 0
        if not heal:
            return Head(channel, pointer, etag)
        try:
            pending = objects.get(log_key(channel, seq + 1))
        except ObjectMissing:
            return Head(channel, pointer, etag)
        Pointer.from_json(pending.body, objects.describe(log_key(channel, seq + 1)))
        try:
            objects.put_if_match(key, pending.body, etag)
        except WriteConflict:
            pass  # another reader wrote it through (or the channel moved on): read again
    raise PromotionConflict(f"channel {channel}: the pointer kept moving while it was read; retry")


def read_log(objects: ObjectStore, channel: str) -> list[Pointer]:
    """Every move of the channel, oldest first."""
    entries = []
    for info in objects.list(log_prefix(channel)):
        entries.append(Pointer.from_json(objects.get(info.key).body, objects.describe(info.key)))
    return sorted(entries, key=lambda e: e.seq)


def ensure_published(objects: ObjectStore, manifest: Manifest) -> None:
    """Both objects of the version exist and the model has the manifest's size (cheap HEAD checks)."""
    for key in (manifest.key, manifest.model_key):
        if objects.head(key) is None:
            raise PromotionRefused(f"{objects.describe(key)} does not exist; publish version {manifest.version} first")
    info = objects.head(manifest.model_key)
    if info.size != manifest.bytes:
        raise IntegrityError(f"{objects.describe(manifest.model_key)} has {info.size} bytes, its manifest says "
                             f"{manifest.bytes}; refusing to point a channel at it")


def move_pointer(
    objects: ObjectStore,
    channel: str,
    manifest: Manifest,
    *,
    action: str,
    actor: str,
    reason: str = "",
    decision: str | None = None,
    expect=ANY,
    now: str | None = None,
    signer=None,
) -> tuple[Pointer, Pointer | None]:
    """Move `channel` to `manifest`'s version; returns (new entry, previous pointer).

    `expect` (a version or None) refuses the move when the head is not what the caller decided against.
    Raises `PromotionConflict` when another promotion claimed the move first; nothing changed then.
    `signer` (a `shelfcast.delivery.signing.SignedRepository`) signs the new pointer, manifest and model: stores
    follow only signed moves, so a move without it is seen by no store until a signed one.
    """
    head = read_head(objects, channel)
    if expect is not ANY and head.version != expect:
        raise PromotionConflict(
            f"channel {channel} now serves {head.version}, not {expect} as when this promotion decided; "
            "another promotion moved it: re-run to decide again"
        )
    ensure_published(objects, manifest)
    entry = Pointer(
        channel=channel, name=manifest.name, version=manifest.version, sha256=manifest.sha256,
        bytes=manifest.bytes, seq=head.seq + 1, move_id=uuid.uuid4().hex, moved_at=now or clock.stamp(),
        action=action, actor=actor, reason=reason, previous_version=head.version, decision=decision,
    )
    body = entry.to_json()
    claim = log_key(channel, entry.seq)
    try:
        objects.put_if_absent(claim, body, "application/json")
    except AlreadyExists:
        winner = Pointer.from_json(objects.get(claim).body, objects.describe(claim))
        if winner.move_id != entry.move_id:  # not our own write answered twice by a retry
            raise PromotionConflict(
                f"channel {channel}: move #{entry.seq} was taken by another promotion ({winner.actor}: "
                f"{winner.action} to {winner.version} at {winner.moved_at}); this one changed nothing"
            ) from None
    # The move is committed in the log; make stores see it.
    try:
        objects.put_if_match(pointer_key(channel), body, head.etag)
    except WriteConflict:
        read_head(objects, channel)  # someone wrote it through already, or will be healed now
    if signer is not None:
        sign_move(objects, signer, channel, body, manifest)
    return entry, head.pointer


def sign_move(objects: ObjectStore, signer, channel: str, body: bytes, manifest: Manifest) -> None:
    """Sign a committed move. The pointer signed is the channel's pointer as it is now in the bucket when it is
    this move (a later move signs itself), so a store never gets a signature for bytes it cannot download."""
    from shelfcast.delivery.signing import move_targets

    key = pointer_key(channel)
    try:
        now = objects.get(key).body
    except ObjectMissing:
        now = body
    if now != body:
        return  # a newer move is already in the pointer; its promoter signs it
    signer.sign_targets(move_targets(objects, key, body, manifest))


def write_decision(objects: ObjectStore, channel: str, record: dict, at: str | None = None) -> str:
    """Store one selection record (immutable) and return its key."""
    import json

    at = at or clock.stamp()
    key = decision_key(channel, at, uuid.uuid4().hex[:12])
    objects.put_if_absent(key, json.dumps({"at": at, "channel": channel, **record}, indent=2, default=str).encode(),
                          "application/json")
    return key



