"""Roll a channel back: move its pointer to an earlier version that still exists, matches its checksum and loads.

Without `--to`, the target is the newest version the channel served before the current one, skipping versions
that were themselves rolled back from (a second rollback goes further back, never forward to a bad model) unless
the channel moved to them again after that rollback (a version re-promoted once fixed is good again).
A target that is missing, corrupt or does not load is refused with the reason; the channel keeps its version.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from shelfcast.delivery.channels import PromotionRefused, read_head, read_log
from shelfcast.contract.manifest import Pointer
from shelfcast.delivery.publish import MoveResult, actor_name, fetch_verified, move_channel, try_reconcile
from shelfcast.delivery.registry import DEFAULT_ALIASES, Registry
from shelfcast.contract.errors import IntegrityError, ModelLoadError
from shelfcast.contract.objects import ObjectStore


def rollback_target(log: Sequence[Pointer], current: str) -> str | None:
    """The version a plain rollback returns to (see the module docstring), or None when there is none."""
    moves = sorted(log, key=lambda e: e.seq)
    rolled_back_from: set[str] = set()
    for entry in moves:  # oldest first: a move to a version clears it, a rollback away from one marks it
        rolled_back_from.discard(entry.version)
        if entry.action == "rollback" and entry.previous_version:
            rolled_back_from.add(entry.previous_version)
    for entry in reversed(moves):
        if entry.version != current and entry.version not in rolled_back_from:
            return entry.version
    return None


def rollback(
    objects: ObjectStore,
    channel: str,
    to: str | None = None,
    *,
    actor: str | None = None,
    reason: str = "",
    registry: Registry | None = None,
    aliases: Mapping[str, str] = DEFAULT_ALIASES,
    signer=None,
) -> MoveResult:
    """Move `channel` back to `to` (or the previous good version) after checking the target; see module doc."""
    actor = actor or actor_name()
    notes = try_reconcile(objects, registry, aliases)
    head = read_head(objects, channel)
    if head.pointer is None:
        raise PromotionRefused(f"channel {channel} has never been promoted; there is nothing to roll back")
    target = to or rollback_target(read_log(objects, channel), head.version)
    if target is None:
        raise PromotionRefused(f"channel {channel} has only ever served {head.version}; pass --to VERSION")
    if target == head.version:
        raise PromotionRefused(f"channel {channel} already serves {target}")
    try:
        manifest, _ = fetch_verified(objects, head.pointer.name, target)
    except (PromotionRefused, IntegrityError, ModelLoadError) as exc:
        raise PromotionRefused(
            f"rollback of {channel} to {target} refused: {exc}. {channel} still serves {head.version}"
        ) from exc
    result = move_channel(objects, channel, manifest, action="rollback", actor=actor,
                          reason=reason or f"rollback from {head.version}", registry=registry, aliases=aliases,
                          expect=head.version, signer=signer)
    result.notes = notes + result.notes
    return result
