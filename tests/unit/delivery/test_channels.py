"""The channel protocol on a folder (`LocalObjects`: the same protocol as the bucket, atomic writes, no server):
moves are claimed once, a pointer never names a missing object, a promoter that dies after its claim is healed by
the next reader, and damaged log entries are refused. The same protocol against SeaweedFS is in
tests/integration/delivery/test_publish.py."""

from __future__ import annotations

import threading

import pytest

from shelfcast.contract.errors import IntegrityError, PromotionConflict
from shelfcast.contract.manifest import Manifest, log_key, pointer_key, sha256_hex
from shelfcast.contract.objects import LocalObjects
from shelfcast.delivery.channels import PromotionRefused, move_pointer, read_head, read_log

pytestmark = pytest.mark.unit

CHANNEL = "stable"


def publish(objects, version: str, data: bytes = b"") -> Manifest:
    """A version's two objects as publish writes them (the protocol needs only that they exist, sized right)."""
    data = data or f"model {version}".encode()
    manifest = Manifest(name="demand", version=version, sha256=sha256_hex(data), bytes=len(data), input_spec={})
    objects.put_if_absent(manifest.model_key, data)
    objects.put_if_absent(manifest.key, manifest.to_json())
    return manifest


@pytest.fixture
def objects(tmp_path):
    return LocalObjects(tmp_path / "bucket")


def test_moves_are_numbered_and_logged_and_the_pointer_is_the_newest_entry(objects):
    for version in ("1", "2", "3"):
        move_pointer(objects, CHANNEL, publish(objects, version), action="promote", actor="test")
    head = read_head(objects, CHANNEL)
    assert (head.seq, head.version) == (3, "3")
    assert [(e.seq, e.version, e.previous_version) for e in read_log(objects, CHANNEL)] == [
        (1, "1", None), (2, "2", "1"), (3, "3", "2")]


def test_a_pointer_never_names_a_version_that_is_not_published(objects):
    missing = Manifest(name="demand", version="9", sha256=sha256_hex(b"x"), bytes=1, input_spec={})
    with pytest.raises(PromotionRefused, match="publish version 9 first"):
        move_pointer(objects, CHANNEL, missing, action="promote", actor="test")
    short = publish(objects, "8", b"eight bytes")
    objects.put(short.model_key, b"cut")  # the model object no longer has the manifest's size
    with pytest.raises(IntegrityError, match="has 3 bytes, its manifest says 11"):
        move_pointer(objects, CHANNEL, short, action="promote", actor="test")
    assert read_head(objects, CHANNEL).pointer is None and read_log(objects, CHANNEL) == []


@pytest.mark.parametrize("movers", [2, 6])
def test_movers_released_together_have_exactly_one_winner_each_round(objects, movers):
    """Promoters that decided against the same head and move at the same moment: one moves, the others change
    nothing, in every round (a mover that reads the head after the winner's move is refused by `expect`)."""
    for round_number in range(3):
        versions = [publish(objects, f"{round_number}-{i}") for i in range(movers)]
        decided_against = read_head(objects, CHANNEL).version  # every mover decided on the same head
        barrier, outcomes = threading.Barrier(movers), []

        def move(manifest):
            barrier.wait()
            try:
                move_pointer(objects, CHANNEL, manifest, action="promote", actor=manifest.version,
                             expect=decided_against)
                outcomes.append(("moved", manifest.version))
            except PromotionConflict:
                outcomes.append(("conflict", manifest.version))

        threads = [threading.Thread(target=move, args=(m,)) for m in versions]
        [t.start() for t in threads]
        [t.join() for t in threads]
        winners = [v for outcome, v in outcomes if outcome == "moved"]
        head = read_head(objects, CHANNEL)
        assert len(winners) == 1 and head.version == winners[0], outcomes
        assert head.seq == len(read_log(objects, CHANNEL)) == round_number + 1


def test_a_move_claimed_but_not_written_through_is_completed_by_the_next_reader(objects):
    """A promoter that died between its claim (the log entry) and the pointer: the move is committed."""
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    entry, _ = move_pointer(objects, CHANNEL, publish(objects, "2"), action="promote", actor="test")
    objects.put(pointer_key(CHANNEL), read_log(objects, CHANNEL)[0].to_json())  # as if the write-through never ran
    assert read_head(objects, CHANNEL, heal=False).version == "1"
    assert read_head(objects, CHANNEL).version == "2"  # healed
    assert read_head(objects, CHANNEL, heal=False).pointer == entry


def test_the_first_move_of_a_channel_crashing_after_its_claim_is_healed(objects):
    manifest = publish(objects, "1")
    move_pointer(objects, CHANNEL, manifest, action="bootstrap", actor="test")
    objects.delete(pointer_key(CHANNEL))  # the claim exists, the pointer was never written
    assert read_head(objects, CHANNEL).version == "1"


def test_two_healers_at_once_write_the_same_pointer(objects):
    """Four readers released together on a channel whose newest move was claimed but not written through, five
    rounds: every one of them returns the healed head (the ones that lose the write read again, none fails)."""
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    for round_ in range(2, 7):
        move_pointer(objects, CHANNEL, publish(objects, str(round_)), action="promote", actor="test")
        objects.put(pointer_key(CHANNEL), read_log(objects, CHANNEL)[-2].to_json())  # the write-through lost
        barrier, heads, errors = threading.Barrier(4), [], []

        def heal():
            barrier.wait()
            try:
                heads.append(read_head(objects, CHANNEL).pointer)
            except Exception as exc:  # noqa: BLE001 - a healer that fails is what this test looks for
                errors.append(exc)

        threads = [threading.Thread(target=heal) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert errors == [] and [(p.seq, p.version) for p in heads] == [(round_, str(round_))] * 4
        assert read_head(objects, CHANNEL, heal=False).pointer == read_log(objects, CHANNEL)[-1]


def test_a_damaged_log_entry_past_the_pointer_is_refused_not_followed(objects):
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    objects.put_if_absent(log_key(CHANNEL, 2), b'{"channel": "stable", "version": "../../etc"')
    with pytest.raises(IntegrityError, match="is not valid JSON"):
        read_head(objects, CHANNEL)
    assert read_head(objects, CHANNEL, heal=False).version == "1"  # the pointer itself is untouched
