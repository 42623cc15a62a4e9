"""The channel protocol on a folder (`LocalObjects`: the same protocol as the bucket, atomic writes, no server):
moves are claimed once, a pointer never names a missing object, a promoter that dies after its claim is healed by
the next reader, and damaged log entries are refused. The same protocol against SeaweedFS is in
tests/integration/delivery/test_publish.py."""

from __future__ import annotations

import json
import threading

import pytest

from shelfcast.contract import clock
from shelfcast.contract.errors import IntegrityError, PromotionConflict, WriteConflict
from shelfcast.contract.manifest import Manifest, Pointer, log_key, pointer_key, sha256_hex
from shelfcast.contract.objects import LocalObjects, ObjectMissing
from shelfcast.delivery.channels import (
    Head,
    PromotionRefused,
    move_pointer,
    read_head,
    read_log,
    sign_move,
    write_decision,
)
from shelfcast.delivery.signing import move_targets

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


class Signer:
    """Records what a move asks to sign (the signatures themselves are tests/integration/delivery/test_signing.py)."""

    def __init__(self):
        self.signed = []

    def sign_targets(self, targets):
        self.signed.append(targets)


def test_a_move_records_who_why_and_what_it_replaced_and_signs_it(objects):
    first, _ = move_pointer(objects, CHANNEL, publish(objects, "1"), action="bootstrap", actor="ci",
                            now="2017-03-01T02:00:00Z")
    assert (first.reason, first.decision, first.previous_version, first.moved_at) == (
        "", None, None, "2017-03-01T02:00:00Z")
    signer, two = Signer(), publish(objects, "2")
    entry, previous = move_pointer(objects, CHANNEL, two, action="promote", actor="nightly", reason="best MAPE",
                                   decision="promotions/stable/decisions/d.json", expect="1", signer=signer)
    assert previous == first
    assert (entry.channel, entry.name, entry.version, entry.sha256, entry.bytes, entry.seq) == (
        CHANNEL, "demand", "2", two.sha256, two.bytes, 2)
    assert (entry.action, entry.actor, entry.reason, entry.previous_version, entry.decision) == (
        "promote", "nightly", "best MAPE", "1", "promotions/stable/decisions/d.json")
    assert Pointer.from_json(objects.get(log_key(CHANNEL, 2)).body) == entry == read_head(objects, CHANNEL).pointer
    assert signer.signed == [move_targets(objects, pointer_key(CHANNEL), entry.to_json(), two)]


def test_a_move_decided_against_another_head_is_refused_naming_both(objects):
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    with pytest.raises(PromotionConflict) as refused:
        move_pointer(objects, CHANNEL, publish(objects, "2"), action="promote", actor="test", expect=None)
    assert str(refused.value) == ("channel stable now serves 1, not None as when this promotion decided; another "
                                  "promotion moved it: re-run to decide again")
    assert read_head(objects, CHANNEL).version == "1"


def test_a_move_whose_entry_another_promoter_claimed_changes_nothing_and_says_who(objects):
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    rival = Pointer(CHANNEL, "demand", "9", "a" * 64, 5, 2, "r" * 32, "2017-03-02T02:00:00Z", "force", "oncall")
    objects.put_if_absent(log_key(CHANNEL, 2), rival.to_json())
    objects.put(pointer_key(CHANNEL), read_log(objects, CHANNEL)[0].to_json())
    ours = publish(objects, "2")

    class LateReader(LocalObjects):
        """Reads the head before the rival's claim is healed through (the claim lands between the two)."""
        def get(self, key):
            if key == log_key(CHANNEL, 2) and not getattr(self, "seen", False):
                self.seen = True
                raise ObjectMissing(key)
            return super().get(key)

    late = LateReader(objects.root)
    with pytest.raises(PromotionConflict) as taken:
        move_pointer(late, CHANNEL, ours, action="promote", actor="test")
    assert str(taken.value) == ("channel stable: move #2 was taken by another promotion (oncall: force to 9 at "
                                "2017-03-02T02:00:00Z); this one changed nothing")
    assert [e.version for e in read_log(objects, CHANNEL)] == ["1", "9"]


def test_a_pointer_written_through_by_a_healer_first_is_left_as_it_is(objects):
    """The pointer's compare-and-swap loses to a reader that healed the new entry through first: no error."""
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")

    class Healer(LocalObjects):
        def put_if_absent(self, key, body, content_type=""):
            etag = super().put_if_absent(key, body, content_type)
            if key.startswith("promotions/"):
                read_head(LocalObjects(self.root), CHANNEL)  # another reader heals the claim right away
            return etag

    entry, _ = move_pointer(Healer(objects.root), CHANNEL, publish(objects, "2"), action="promote", actor="test")
    assert read_head(objects, CHANNEL, heal=False).pointer == entry


def test_the_head_carries_its_channel_and_the_etag_it_was_read_with(objects):
    assert read_head(objects, CHANNEL) == Head(CHANNEL, None, None)
    assert (Head(CHANNEL, None, None).seq, Head(CHANNEL, None, None).version) == (0, None)
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    etag = objects.head(pointer_key(CHANNEL)).etag
    for heal in (True, False):
        head = read_head(objects, CHANNEL, heal=heal)
        assert (head.channel, head.etag, head.seq, head.version) == (CHANNEL, etag, 1, "1")


def test_damaged_documents_are_refused_naming_their_key(objects):
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    objects.put_if_absent(log_key(CHANNEL, 2), b"[]")
    with pytest.raises(IntegrityError) as pending:
        read_head(objects, CHANNEL)
    assert str(pending.value) == f"{objects.describe(log_key(CHANNEL, 2))} holds list, expected a JSON object"
    with pytest.raises(IntegrityError) as logged:
        read_log(objects, CHANNEL)
    assert str(logged.value) == f"{objects.describe(log_key(CHANNEL, 2))} holds list, expected a JSON object"
    objects.put(pointer_key(CHANNEL), b"{")
    with pytest.raises(IntegrityError, match=f"^{objects.describe(pointer_key(CHANNEL))} is not valid JSON"):
        read_head(objects, CHANNEL, heal=False)


def test_a_pointer_that_never_stops_moving_is_given_up_on(objects):
    move_pointer(objects, CHANNEL, publish(objects, "1"), action="promote", actor="test")
    move_pointer(objects, CHANNEL, publish(objects, "2"), action="promote", actor="test")
    objects.put(pointer_key(CHANNEL), read_log(objects, CHANNEL)[0].to_json())

    class Moving(LocalObjects):
        def put_if_match(self, key, body, etag, content_type=""):
            raise WriteConflict(f"{key} changed")

    with pytest.raises(PromotionConflict) as moving:
        read_head(Moving(objects.root), CHANNEL)
    assert str(moving.value) == "channel stable: the pointer kept moving while it was read; retry"


def test_only_the_move_now_in_the_pointer_is_signed(objects):
    manifest = publish(objects, "1")
    entry, _ = move_pointer(objects, CHANNEL, manifest, action="promote", actor="test")
    signer = Signer()
    sign_move(objects, signer, CHANNEL, entry.to_json(), manifest)
    sign_move(objects, signer, CHANNEL, b"an older move", manifest)  # a newer move is in the pointer: not signed
    assert signer.signed == [move_targets(objects, pointer_key(CHANNEL), entry.to_json(), manifest)]
    objects.delete(pointer_key(CHANNEL))  # claimed, not written through yet: the claim's bytes are signed
    sign_move(objects, signer, CHANNEL, entry.to_json(), manifest)
    assert len(signer.signed) == 2 and signer.signed[1] == signer.signed[0]


def test_a_decision_is_stored_once_under_its_moment_and_an_id(objects):
    with clock.use_clock(clock.SimulatedClock("2017-03-01T02:00:00Z")):
        key = write_decision(objects, CHANNEL, {"chosen": "7", "size": 5.5, "at_risk": {1}})
    prefix = "promotions/stable/decisions/20170301T020000Z-"
    assert key.startswith(prefix) and key.endswith(".json") and len(key) == len(prefix) + 12 + len(".json")
    body = objects.get(key).body.decode()
    assert json.loads(body) == {"at": "2017-03-01T02:00:00Z", "channel": "stable", "chosen": "7", "size": 5.5,
                                "at_risk": "{1}"}
    assert body.startswith('{\n  "at": "2017-03-01T02:00:00Z",\n  "channel": "stable",\n')
    other = write_decision(objects, CHANNEL, {}, at="2017-03-02T02:00:00Z")
    assert other.startswith("promotions/stable/decisions/20170302T020000Z-") and other != key
