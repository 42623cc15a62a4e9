"""Signed delivery against the real SeaweedFS server: a store follows only moves signed with the delivery keys.

Every forgery here is written with the trainer's S3 credentials, which may write the whole bucket: pointer,
manifest and model agree with each other, and only the signatures are missing. The store refuses them and keeps
serving; it calls a bucket nobody re-signs frozen; it refuses metadata mixed from two releases; it follows key
rotations and the next promotion.
"""

import contextlib
import re
import uuid
from datetime import timedelta

import pytest

from shelfcast.contract.manifest import Pointer, pointer_key
from shelfcast.delivery.channels import move_pointer
from shelfcast.delivery.publish import make_manifest, publish_model
from shelfcast.delivery.signing import KeyRing, Lifetimes, SignedRepository, metadata_key, signature_status
from shelfcast.device.sync import StoreClient, serving_model

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def replaced(bucket, key: str, body: bytes, restore: bytes):
    """`key` holds `body` (a forgery or a replay) inside the block, `restore` again after it, whatever happens."""
    bucket.put(key, body)
    try:
        yield
    finally:
        bucket.put(key, restore)


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _publish(objects, tiny_tflite, name, version, data):
    return publish_model(objects, data, make_manifest(data, name=name, version=version,
                                                      input_spec=tiny_tflite["spec"].to_dict()))


@pytest.fixture
def signed_channel(trainer_store, signing, tiny_tflite):
    name, channel = f"demand-{_uid()}", f"stable-{_uid()}"
    manifest = _publish(trainer_store, tiny_tflite, name, "1", tiny_tflite["v1"])
    move_pointer(trainer_store, channel, manifest, action="promote", actor="test", signer=signing)
    return name, channel


def _store(objects, channel, folder, signing):
    return StoreClient(objects, channel, folder, trusted_root=signing.trusted_root)


def test_a_forgery_written_with_the_trainer_key_is_refused_and_the_store_keeps_serving(
        trainer_store, store_identity_store, signing, signed_channel, tiny_tflite, tmp_path):
    name, channel = signed_channel
    store = _store(store_identity_store, channel, tmp_path / "store", signing)
    assert store.sync().serving == "1"

    # Model, manifest and pointer that agree, written with bucket credentials but no signing key.
    forged = _publish(trainer_store, tiny_tflite, name, "2", tiny_tflite["v2"])
    move_pointer(trainer_store, channel, forged, action="promote", actor="attacker")
    result = store.sync()
    assert (result.status, result.serving) == ("unchanged", "1")  # the signed pointer is still move #1

    # A store that never saw move #1 downloads the forged pointer: not the signed bytes, refused.
    fresh = _store(store_identity_store, channel, tmp_path / "fresh-store", signing).sync()
    assert (fresh.status, fresh.serving) == ("refused", None), fresh.message
    assert "(channel pointer) is longer than its signed" in fresh.message
    # Padded to the signed length: refused by its sha256.
    signed_length = signing.targets().signed.targets[pointer_key(channel)].length
    pointer = Pointer.from_json(trainer_store.get(pointer_key(channel)).body)
    trainer_store.put(pointer_key(channel), pointer.to_json()[:signed_length].ljust(signed_length))
    fresh = _store(store_identity_store, channel, tmp_path / "fresh-store-2", signing).sync()
    assert (fresh.status, fresh.serving) == ("refused", None), fresh.message
    assert "(channel pointer) is not the signed file" in fresh.message
    trainer_store.put(pointer_key(channel), pointer.to_json())
    assert serving_model(tmp_path / "store")[1].version == "1"
    assert signature_status(trainer_store, channel).problem.startswith(f"s3://{trainer_store.bucket}/channels/")

    # A signed move goes through.
    good = _publish(trainer_store, tiny_tflite, name, "3", tiny_tflite["v2"])
    move_pointer(trainer_store, channel, good, action="promote", actor="test", signer=signing)
    assert store.sync().serving == "3"
    assert signature_status(trainer_store, channel).ok


def test_a_store_without_a_trusted_root_follows_nothing(store_identity_store, signed_channel, tmp_path):
    _, channel = signed_channel
    result = StoreClient(store_identity_store, channel, tmp_path / "store").sync()
    assert (result.status, result.serving) == ("refused", None)
    assert "--trusted-root" in result.message


def test_metadata_signed_with_other_keys_is_refused(trainer_store, store_identity_store, signing, signed_channel,
                                                    tmp_path):
    """Someone with bucket write access signs a whole new set of metadata with keys of their own."""
    _, channel = signed_channel
    store = _store(store_identity_store, channel, tmp_path / "store", signing)
    assert store.sync().serving == "1"
    original = trainer_store.get(metadata_key("timestamp")).body
    rogue = SignedRepository(trainer_store, KeyRing(tmp_path / "rogue-keys"))
    from tuf.api.metadata import Metadata, MetaFile, Timestamp

    from shelfcast.delivery.signing import generate_signer

    signer = generate_signer()
    current = Metadata.from_bytes(original)
    forged = Metadata(Timestamp(version=current.signed.version + 5, expires=current.signed.expires,
                                snapshot_meta=MetaFile(current.signed.snapshot_meta.version)))
    forged.sign(signer)
    with replaced(trainer_store, metadata_key("timestamp"), forged.to_bytes(), original):
        result = store.sync()
        assert (result.status, result.serving) == ("refused", "1"), result.message
        assert "UnsignedMetadataError" in result.message
    del rogue
    signing.refresh_timestamp()  # versions only go up: re-sign above the forged number
    assert store.sync().status in ("unchanged", "refused")


def test_an_expired_timestamp_is_a_frozen_channel_on_the_store_and_in_channels(
        trainer_store, store_identity_store, signing, signed_channel, tmp_path):
    _, channel = signed_channel
    store = _store(store_identity_store, channel, tmp_path / "store", signing)
    assert store.sync().serving == "1"
    stale = SignedRepository(trainer_store, signing.keys, Lifetimes(timestamp_s=1),
                             clock=lambda: signing.clock() - timedelta(hours=2))
    stale.refresh_timestamp()  # what a bucket looks like a day after the nightly run stopped re-signing
    result = store.sync()
    assert (result.status, result.serving, result.ok) == ("frozen", "1", False)
    assert "has expired" in result.message and "shelfcast keys refresh" in result.message
    assert "keeps serving 1" in result.message
    status = signature_status(trainer_store, channel)
    assert not status.ok and status.problem.startswith("FROZEN")
    signing.refresh_timestamp()
    assert store.sync().status == "unchanged" and signature_status(trainer_store, channel).ok


def test_a_timestamp_nobody_replaces_expires_on_the_cheap_poll_too(trainer_store, store_identity_store, signing,
                                                                   signed_channel, tmp_path):
    """The bucket keeps answering 304 for the timestamp the store verified (nobody re-signs it): the cheap poll
    stops trusting it when it expires."""
    import time

    _, channel = signed_channel
    short = SignedRepository(trainer_store, signing.keys, Lifetimes(timestamp_s=3))
    short.refresh_timestamp()
    store = _store(store_identity_store, channel, tmp_path / "store", signing)
    assert store.sync().serving == "1"
    cheap = store.sync()
    assert (cheap.status, cheap.bytes_received) == ("unchanged", 0) and "timestamp unchanged" in cheap.message
    time.sleep(4)
    frozen = store.sync()
    assert (frozen.status, frozen.serving) == ("frozen", "1"), frozen.message
    signing.refresh_timestamp()
    assert store.sync().status == "unchanged"


def test_a_mix_of_two_releases_is_refused(trainer_store, store_identity_store, signing, signed_channel, tiny_tflite,
                                          tmp_path):
    """The timestamp of an older release served next to the newer snapshot and targets (a stale cache or a
    replay): refused by version; and an older release's pointer beside newer metadata: refused by hash."""
    name, channel = signed_channel
    store = _store(store_identity_store, channel, tmp_path / "store", signing)
    assert store.sync().serving == "1"
    old_timestamp = trainer_store.get(metadata_key("timestamp")).body
    old_pointer = trainer_store.get(pointer_key(channel)).body
    manifest = _publish(trainer_store, tiny_tflite, name, "2", tiny_tflite["v2"])
    move_pointer(trainer_store, channel, manifest, action="promote", actor="test", signer=signing)
    assert store.sync().serving == "2"
    new_timestamp = trainer_store.get(metadata_key("timestamp")).body

    with replaced(trainer_store, metadata_key("timestamp"), old_timestamp, new_timestamp):
        replay = store.sync()
        assert (replay.status, replay.serving) == ("refused", "2"), replay.message
        assert "BadVersionNumberError" in replay.message

    fresh = _store(store_identity_store, channel, tmp_path / "fresh", signing)
    new_pointer = trainer_store.get(pointer_key(channel)).body
    trainer_store.put(pointer_key(channel), old_pointer)
    try:
        mixed = fresh.sync()
        assert (mixed.status, mixed.serving) == ("refused", None), mixed.message
        assert re.search(r"\(channel pointer\) is (not the signed file|longer than its signed)", mixed.message)
    finally:
        trainer_store.put(pointer_key(channel), new_pointer)
    assert fresh.sync().serving == "2"


def test_root_and_timestamp_rotation_keep_stores_serving_and_following(trainer_store, seaweedfs, signing,
                                                                       tiny_tflite, tmp_path):
    """Its own bucket (rotation changes the bucket's keys for everyone): two stores provisioned with root v1
    follow a timestamp-key rotation, then a root-key rotation, and the promotion after each."""
    from shelfcast.contract.objects import ObjectStore, make_s3_client
    from tests.conftest import TRAINER

    bucket = f"rot-{_uid()}"
    objects = ObjectStore(make_s3_client(seaweedfs.urls["s3"], *TRAINER), bucket)
    objects.ensure_bucket()
    repository = SignedRepository(objects, KeyRing(tmp_path / "keys", root_key=tmp_path / "offline" / "root.key"))
    repository.init()
    root_v1 = repository.root_bytes()
    name, channel = "demand", "stable"
    stores = [StoreClient(objects, channel, tmp_path / f"store-{i}", trusted_root=root_v1) for i in range(2)]

    def promote(version, data):
        move_pointer(objects, channel, _publish(objects, tiny_tflite, name, version, data), action="promote",
                     actor="test", signer=repository)

    promote("1", tiny_tflite["v1"])
    assert [s.sync().serving for s in stores] == ["1", "1"]
    old_timestamp_key = (tmp_path / "keys" / "timestamp.key").read_bytes()
    assert repository.rotate(("timestamp",)) == 2
    assert (tmp_path / "keys" / "timestamp.key").read_bytes() != old_timestamp_key
    assert [s.sync().status for s in stores] == ["unchanged", "unchanged"]
    promote("2", tiny_tflite["v2"])
    assert [s.sync().serving for s in stores] == ["2", "2"]

    assert repository.rotate(("root",)) == 3
    assert [s.sync().status for s in stores] == ["unchanged", "unchanged"]
    promote("3", tiny_tflite["v1"])
    assert [s.sync().serving for s in stores] == ["3", "3"]
    assert all((tmp_path / f"store-{i}" / "metadata" / "root_history" / "3.root.json").exists() for i in range(2))

    # The old timestamp key no longer signs anything stores accept.
    from shelfcast.delivery.signing import write_private_key

    write_private_key(tmp_path / "keys" / "timestamp.key", old_timestamp_key)
    repository.refresh_timestamp()
    refused = stores[0].sync()
    assert (refused.status, refused.serving) == ("refused", "3"), refused.message


def test_concurrent_signed_moves_on_different_channels_are_all_signed(trainer_store, store_identity_store, signing,
                                                                    tiny_tflite, tmp_path):
    """Six promoters move six channels at the same instant (a barrier), three rounds: every move's targets end
    up in the published metadata, so every channel's store follows its last move."""
    import threading

    name = f"demand-{_uid()}"
    channels = [f"race-{_uid()}-{i}" for i in range(6)]
    manifests = [_publish(trainer_store, tiny_tflite, name, str(v), tiny_tflite["v1" if v % 2 else "v2"])
                 for v in range(1, 4)]
    stores = [_store(store_identity_store, channel, tmp_path / channel, signing) for channel in channels]
    for round_index, manifest in enumerate(manifests):
        barrier, errors = threading.Barrier(len(channels)), []

        def promote(channel):
            barrier.wait()
            try:
                move_pointer(trainer_store, channel, manifest, action="promote", actor="racer", signer=signing)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=promote, args=(channel,)) for channel in channels]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert all(signature_status(trainer_store, channel).ok for channel in channels), round_index
        assert [store.sync().serving for store in stores] == [manifest.version] * len(channels)


def test_a_damaged_local_root_falls_back_to_the_provisioned_one(store_identity_store, signing, signed_channel,
                                                               tmp_path):
    _, channel = signed_channel
    store = _store(store_identity_store, channel, tmp_path / "store", signing)
    assert store.sync().serving == "1"
    trusted = (tmp_path / "store" / "metadata" / "root.json").resolve()
    trusted.write_bytes(b"{ damaged")
    (tmp_path / "store" / "state.json").unlink()  # no shortcut: the full check runs
    result = store.sync()
    assert (result.status, result.serving) == ("unchanged", "1"), result.message
    bare = StoreClient(store_identity_store, channel, tmp_path / "store")  # nothing provisioned to fall back to
    trusted.write_bytes(b"{ damaged")
    (tmp_path / "store" / "state.json").unlink()
    refused = bare.sync()
    assert (refused.status, refused.serving) == ("refused", "1"), refused.message
    assert "does not verify" in refused.message


def test_the_timestamp_is_re_signed_when_half_its_lifetime_is_gone(trainer_store, signing):
    version = signing.timestamp()[0].signed.version
    assert not signing.refresh_if_due() and signing.timestamp()[0].signed.version == version  # fresh: untouched
    later = SignedRepository(trainer_store, signing.keys, clock=lambda: signing.clock() + timedelta(hours=13))
    assert later.refresh_if_due() and signing.timestamp()[0].signed.version > version
