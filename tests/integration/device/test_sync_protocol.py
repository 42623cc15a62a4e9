"""Every branch of one store sync against the real SeaweedFS server, each with its exact outcome: the status,
what is served and offered, the bytes counted, the steps taken, the bookkeeping written and the one-line
message the store reports. (tests/integration/device/test_sync.py covers crashes, broken transfers and the
CLI; these pin down what each path says and leaves behind, so that a changed word or branch is noticed.)"""

import json
import uuid
from hashlib import sha256

import pytest

from shelfcast.contract import clock
from shelfcast.contract.manifest import Pointer, pointer_key
from shelfcast.delivery.channels import move_pointer
from shelfcast.delivery.publish import make_manifest, publish_model
from shelfcast.delivery.signing import target_file
from shelfcast.device.sync import StoreClient
from tests.conftest import BUCKET

pytestmark = pytest.mark.integration

NOW = "2026-05-04T03:02:01Z"
FULL_SYNC = ["metadata", "pointer", "manifest", "model", "verify", "swap"]


@pytest.fixture(autouse=True)
def fixed_clock():
    with clock.use_clock(clock.SimulatedClock(NOW)):
        yield


class Channel:
    """A fresh model name and channel on the test bucket, published and moved by the trainer, signed."""

    def __init__(self, trainer_store, signing, tiny_tflite):
        self.trainer, self.signing, self.tiny = trainer_store, signing, tiny_tflite
        self.name, self.channel = f"demand-{uuid.uuid4().hex[:8]}", f"stable-{uuid.uuid4().hex[:8]}"
        self.key = pointer_key(self.channel)
        self.manifests = {}

    def publish(self, version, model="v1"):
        data = self.tiny[model]
        manifest = publish_model(self.trainer, data, make_manifest(
            data, name=self.name, version=version, input_spec=self.tiny["spec"].to_dict()))
        self.manifests[version] = manifest
        return manifest

    def forge(self, version, data):
        """A version written around the publisher (which refuses a model that does not load)."""
        manifest = make_manifest(data, name=self.name, version=version, input_spec=self.tiny["spec"].to_dict())
        self.trainer.put(manifest.model_key, data)
        self.trainer.put(manifest.key, manifest.to_json())
        self.manifests[version] = manifest
        return manifest

    def move(self, version, action="promote"):
        pointer, _ = move_pointer(self.trainer, self.channel, self.manifests[version], action=action, actor="test",
                                  signer=self.signing)
        return pointer

    def sign_pointer(self, pointer: Pointer) -> bytes:
        """Write and sign a pointer as it is, around `move_pointer` (what a buggy tool would do)."""
        body = pointer.to_json()
        self.trainer.put(self.key, body)
        self.signing.sign_targets({self.key: target_file(self.key, body)})
        return body

    def pointer(self, version, seq, **changes) -> Pointer:
        manifest = self.manifests[version]
        fields = dict(channel=self.channel, name=self.name, version=version, sha256=manifest.sha256,
                      bytes=manifest.bytes, seq=seq, move_id="forged", moved_at=NOW, action="promote", actor="test")
        return Pointer(**{**fields, **changes})


@pytest.fixture
def bucket(trainer_store, signing, tiny_tflite):
    return Channel(trainer_store, signing, tiny_tflite)


def client(objects, bucket, folder, **kwargs):
    stages = []
    made = StoreClient(objects, bucket.channel, folder, trusted_root=bucket.signing.trusted_root,
                       on_stage=stages.append, **kwargs)
    return made, stages


def outcome(result):
    return result.status, result.serving, result.offered, result.model_bytes


def state(folder):
    return json.loads((folder / "state.json").read_text())


def test_the_first_sync_downloads_checks_and_installs_the_pointers_version(store_identity_store, bucket, tmp_path):
    manifest = bucket.publish("1")
    bucket.move("1")
    folder = tmp_path / "fleet" / "store"  # parents made as needed
    store, stages = client(store_identity_store, bucket, folder, store_id=3)
    result = store.sync()
    assert outcome(result) == ("updated", "1", "1", manifest.bytes)
    assert result.message == (f"now serving 1 ({manifest.bytes} bytes, signed, sha256 {manifest.sha256[:12]}... "
                              "verified, loads), previous None")
    assert stages == FULL_SYNC and store.stage == "swap" and result.channel == bucket.channel
    assert 0 < result.seconds < 60
    # Everything read from S3, each once: the signed metadata (the copies kept in metadata/, the root aside: it
    # was provisioned), the pointer, the manifest and the model.
    metadata = sum((folder / "metadata" / f"{role}.json").stat().st_size for role in ("timestamp", "snapshot", "targets"))
    documents = len(bucket.trainer.get(bucket.key).body) + len(bucket.trainer.get(manifest.key).body)
    assert result.bytes_received == metadata + documents + manifest.bytes
    assert sorted(p.name for p in folder.iterdir()) == ["active.json", "metadata", "state.json", "versions"]
    installed = folder / "versions" / "1"
    assert sorted(p.name for p in installed.iterdir()) == ["manifest.json", "model.tflite"]
    assert (installed / "model.tflite").read_bytes() == bucket.tiny["v1"]
    assert (installed / "manifest.json").read_bytes() == manifest.to_json()
    assert json.loads((folder / "active.json").read_text()) == {
        "current": "1", "previous": None, "channel": bucket.channel, "activated_at": NOW}
    signed_pointer = bucket.trainer.get(bucket.key).body
    assert state(folder) == {
        "channel": bucket.channel, "pointer_sha256": sha256(signed_pointer).hexdigest(), "pointer_version": "1",
        "pointer_seq": 1, "timestamp_etag": bucket.trainer.head("metadata/timestamp.json").etag,
        "metadata_expires": state(folder)["metadata_expires"],
        "last_poll_at": NOW, "last_status": "updated", "last_message": result.message}
    assert state(folder)["metadata_expires"] > NOW
    assert result.line(3).startswith(f"{NOW} store=3 channel={bucket.channel} status=updated serving=1 offered=1 ")


def test_polls_take_the_cheapest_path_that_proves_nothing_changed(store_identity_store, bucket, tmp_path):
    bucket.publish("1")
    bucket.move("1")
    folder = tmp_path / "store"
    store, stages = client(store_identity_store, bucket, folder)
    store.sync()
    first_state = state(folder)

    stages.clear()
    polled = store.sync()  # the signed timestamp is the one verified: one conditional HEAD
    assert outcome(polled) == ("unchanged", "1", None, 0) and stages == ["metadata"]
    assert polled.message == f"{bucket.channel} still points at 1 (signed timestamp unchanged)"
    assert polled.bytes_received == 0
    assert state(folder) == {**first_state, "last_status": "unchanged", "last_message": polled.message}

    other = Channel(bucket.trainer, bucket.signing, bucket.tiny)  # another channel moves: a new timestamp
    other.publish("1")
    other.move("1")
    stages.clear()
    refreshed = store.sync()
    assert outcome(refreshed) == ("unchanged", "1", None, 0) and stages == ["metadata", "pointer"]
    assert refreshed.message == f"{bucket.channel} still points at 1"
    assert refreshed.bytes_received > 0
    timestamp = bucket.trainer.head("metadata/timestamp.json").etag
    assert timestamp != first_state["timestamp_etag"] and state(folder)["timestamp_etag"] == timestamp
    stages.clear()
    assert store.sync().message.endswith("(signed timestamp unchanged)") and stages == ["metadata"]

    bucket.move("1", action="force")  # the same version moved again: a new pointer, nothing to download
    stages.clear()
    rewritten = store.sync()
    assert outcome(rewritten) == ("unchanged", "1", "1", 0) and stages == ["metadata", "pointer"]
    assert rewritten.message == f"{bucket.channel} still points at 1 (pointer rewritten)"
    assert (state(folder)["pointer_seq"], state(folder)["pointer_sha256"]) == (
        2, sha256(bucket.trainer.get(bucket.key).body).hexdigest())


def test_a_store_that_stopped_before_its_bookkeeping_takes_the_full_path_once(store_identity_store, bucket,
                                                                              tmp_path, monkeypatch):
    """The swap happened, the pointer followed was never written down (a crash in `_remember`): the next poll
    must not trust the old bookkeeping's timestamp, it reads the pointer and finds its version served."""
    bucket.publish("1")
    bucket.publish("2", "v2")
    bucket.move("1")
    folder = tmp_path / "store"
    store, stages = client(store_identity_store, bucket, folder)
    store.sync()
    bucket.move("2")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(StoreClient, "_remember", crash)
    with pytest.raises(KeyboardInterrupt):
        store.sync()
    monkeypatch.undo()
    assert (store.active()["current"], state(folder)["pointer_version"]) == ("2", "1")
    stages.clear()
    result = store.sync()
    assert outcome(result) == ("unchanged", "2", "2", 0) and stages == ["metadata", "pointer"]
    assert result.message == f"{bucket.channel} still points at 2 (pointer rewritten)"
    assert (state(folder)["pointer_version"], state(folder)["pointer_seq"]) == ("2", 2)


def test_a_store_moved_to_another_channel_follows_that_channel(store_identity_store, bucket, tmp_path):
    """The pilot channel moved before the store's last poll, so the signed timestamp is the one the store
    verified: only the bookkeeping's channel says that this poll must read a pointer."""
    bucket.publish("1")
    bucket.publish("2", "v2")
    pilot = Channel(bucket.trainer, bucket.signing, bucket.tiny)
    pilot.name, pilot.manifests = bucket.name, bucket.manifests
    pilot.move("2")
    bucket.move("1")
    folder = tmp_path / "store"
    client(store_identity_store, bucket, folder)[0].sync()
    moved, stages = client(store_identity_store, pilot, folder)
    result = moved.sync()
    assert outcome(result) == ("updated", "2", "2", bucket.manifests["2"].bytes) and stages == FULL_SYNC
    assert json.loads((folder / "active.json").read_text())["channel"] == pilot.channel
    assert (state(folder)["channel"], state(folder)["pointer_version"]) == (pilot.channel, "2")


def test_an_update_keeps_the_previous_version_and_a_rollback_swaps_to_it_from_disk(store_identity_store, bucket,
                                                                                  tmp_path):
    bucket.publish("1")
    two = bucket.publish("2", "v2")
    bucket.move("1")
    folder = tmp_path / "store"
    store, stages = client(store_identity_store, bucket, folder)
    store.sync()
    bucket.move("2")
    update = store.sync()
    assert outcome(update) == ("updated", "2", "2", two.bytes)
    assert update.message == (f"now serving 2 ({two.bytes} bytes, signed, sha256 {two.sha256[:12]}... verified, "
                              "loads), previous 1")
    assert json.loads((folder / "active.json").read_text()) == {
        "current": "2", "previous": "1", "channel": bucket.channel, "activated_at": NOW}

    bucket.move("1", action="rollback")
    stages.clear()
    back = store.sync()
    assert outcome(back) == ("updated", "1", "1", 0) and stages == ["metadata", "pointer", "verify", "swap"]
    assert back.message == "now serving 1 (already on disk, verified), previous 2"
    assert json.loads((folder / "active.json").read_text()) == {
        "current": "1", "previous": "2", "channel": bucket.channel, "activated_at": NOW}
    assert (state(folder)["pointer_version"], state(folder)["pointer_seq"]) == ("1", 3)
    assert (folder / "versions" / "1" / "model.tflite").read_bytes() == bucket.tiny["v1"]
    assert back.bytes_received < update.bytes_received  # the model was not read again


def serving_2_after_1(objects, bucket, folder):
    """A store that installed version 1, then 2 (1 stays on disk as the previous version)."""
    bucket.publish("1")
    bucket.publish("2", "v2")
    bucket.move("1")
    store, stages = client(objects, bucket, folder)
    store.sync()
    bucket.move("2")
    assert store.sync().serving == "2"
    return store, stages


def test_a_copy_on_disk_that_no_longer_checks_out_is_downloaded_again(store_identity_store, bucket, tmp_path):
    folder = tmp_path / "store"
    store, stages = serving_2_after_1(store_identity_store, bucket, folder)
    one = bucket.manifests["1"]
    damaged = bytearray(bucket.tiny["v1"])
    damaged[100] ^= 0xFF
    (folder / "versions" / "1" / "model.tflite").write_bytes(bytes(damaged))
    bucket.move("1", action="rollback")
    stages.clear()
    result = store.sync()
    # the copy on disk fails its check, so the version is downloaded and checked again
    assert outcome(result) == ("updated", "1", "1", one.bytes)
    assert stages == ["metadata", "pointer", "verify", "manifest", "model", "verify", "swap"]
    assert (folder / "versions" / "1" / "model.tflite").read_bytes() == bucket.tiny["v1"]
    assert json.loads((folder / "active.json").read_text())["previous"] == "2"


def test_a_copy_on_disk_whose_manifest_is_not_the_pointers_is_not_reused(store_identity_store, bucket, tmp_path):
    folder = tmp_path / "store"
    store, stages = serving_2_after_1(store_identity_store, bucket, folder)
    one = bucket.manifests["1"]
    local = folder / "versions" / "1" / "manifest.json"
    local.write_bytes(local.read_bytes().replace(b'"name": "' + bucket.name.encode(), b'"name": "other'))
    bucket.move("1", action="rollback")
    stages.clear()
    assert outcome(store.sync()) == ("updated", "1", "1", one.bytes) and stages == FULL_SYNC
    assert local.read_bytes() == one.to_json()


def test_a_copy_on_disk_that_is_not_the_signed_model_is_not_reused(store_identity_store, bucket, tmp_path):
    """The copy on disk matches the pointer, but the signed model target is other bytes: the store goes to the
    bucket, which refuses it there."""
    folder = tmp_path / "store"
    store, stages = serving_2_after_1(store_identity_store, bucket, folder)
    one = bucket.manifests["1"]
    bucket.move("1", action="rollback")
    bucket.signing.sign_targets({one.model_key: target_file(one.model_key, b"other bytes")})
    stages.clear()
    result = store.sync()
    assert outcome(result) == ("refused", "2", "1", 0) and stages == ["metadata", "pointer", "manifest"]
    assert "the signed model is 11 bytes" in result.message and store.active()["current"] == "2"


def test_an_empty_channel_is_reported_as_such(store_identity_store, bucket, tmp_path):
    store, stages = client(store_identity_store, bucket, tmp_path / "store")
    result = store.sync()
    assert outcome(result) == ("empty", None, None, 0) and result.ok and stages == ["metadata", "pointer"]
    assert result.message == (f"channel {bucket.channel} has no signed version yet (s3://{BUCKET}/{bucket.key}); "
                              "no model installed yet")
    assert state(tmp_path / "store") == {"last_poll_at": NOW, "last_status": "empty", "last_message": result.message}


def test_a_signed_pointer_of_another_channel_is_refused(store_identity_store, bucket, tmp_path):
    bucket.publish("1")
    bucket.sign_pointer(bucket.pointer("1", 1, channel="elsewhere"))
    store, stages = client(store_identity_store, bucket, tmp_path / "store")
    result = store.sync()
    assert outcome(result) == ("refused", None, "1", 0) and stages == ["metadata", "pointer"]
    assert result.message == (f"{bucket.key} names channel 'elsewhere', not '{bucket.channel}'; "
                              "no model installed yet")


def test_a_pointer_that_is_not_the_signed_one_is_refused_before_it_is_parsed(store_identity_store, bucket,
                                                                            tmp_path):
    bucket.publish("1")
    bucket.move("1")
    bucket.trainer.put(bucket.key, bucket.pointer("1", 7).to_json())  # overwritten, not signed
    result, = [client(store_identity_store, bucket, tmp_path / "store")[0].sync()]
    assert outcome(result) == ("refused", None, None, 0)
    assert result.message.startswith(f"s3://{BUCKET}/{bucket.key} (channel pointer) is not the signed file (")
    assert result.message.endswith("); refused; no model installed yet")


def test_a_signed_pointer_that_does_not_parse_names_its_object(store_identity_store, bucket, tmp_path):
    bucket.publish("1")
    bucket.sign_pointer(bucket.pointer("1", 0))
    result = client(store_identity_store, bucket, tmp_path / "store")[0].sync()
    assert outcome(result) == ("refused", None, None, 0)
    assert result.message == (f"s3://{BUCKET}/{bucket.key}: move number 0 is not valid; moves count from 1; "
                              "no model installed yet")


def test_a_pointer_whose_version_does_not_match_its_manifest_is_refused(store_identity_store, bucket, tmp_path):
    one = bucket.publish("1")
    bucket.move("1")
    folder = tmp_path / "store"
    store, stages = client(store_identity_store, bucket, folder)
    store.sync()
    # version 1 again, with other bytes: neither the copy on disk nor the manifest in the bucket is that
    bucket.sign_pointer(bucket.pointer("1", 2, sha256="b" * 64, bytes=one.bytes + 1))
    stages.clear()
    result = store.sync()
    assert outcome(result) == ("refused", "1", "1", 0) and stages == ["metadata", "pointer", "manifest"]
    assert result.message == (
        f"s3://{BUCKET}/{one.key} (version 1, sha256 {one.sha256[:12]}..., {one.bytes} bytes) does not match the "
        f"pointer (version 1, sha256 bbbbbbbbbbbb..., {one.bytes + 1} bytes); refused; keeps serving 1")
    assert state(folder)["pointer_seq"] == 1 and not (folder / ".incoming").exists()


def test_a_manifest_whose_model_is_not_the_signed_model_is_refused(store_identity_store, bucket, tmp_path):
    """The manifest and pointer describe one file, the signed model target another (a signer that signed the
    wrong bytes): refused before the model is read."""
    one = bucket.publish("1")
    bucket.move("1")
    bucket.signing.sign_targets({one.model_key: target_file(one.model_key, b"other bytes")})
    store, stages = client(store_identity_store, bucket, tmp_path / "store")
    result = store.sync()
    assert outcome(result) == ("refused", None, "1", 0) and stages == ["metadata", "pointer", "manifest"]
    assert result.message == (
        f"s3://{BUCKET}/{one.key} describes {one.bytes} bytes with sha256 {one.sha256[:12]}..., the signed model "
        f"is 11 bytes with sha256 {sha256(b'other bytes').hexdigest()[:12]}...; refused; no model installed yet")


def test_a_model_over_the_stores_limit_is_refused_from_its_manifest(store_identity_store, bucket, tmp_path):
    one = bucket.publish("1")
    bucket.move("1")
    limit = one.bytes - 1
    store, stages = client(store_identity_store, bucket, tmp_path / "store", max_model_bytes=limit)
    result = store.sync()
    assert outcome(result) == ("refused", None, "1", 0) and stages == ["metadata", "pointer", "manifest"]
    assert result.message == (f"s3://{BUCKET}/{one.key}: {one.bytes:,} bytes is over this store's limit of "
                              f"{limit:,} (--max-model-bytes); not downloaded; no model installed yet")
    assert not (tmp_path / "store" / "versions").exists()
    exact = client(store_identity_store, bucket, tmp_path / "store", max_model_bytes=one.bytes)[0].sync()
    assert outcome(exact) == ("updated", "1", "1", one.bytes)


def test_a_signed_model_that_does_not_load_is_refused_after_its_download(store_identity_store, bucket, tmp_path):
    garbage = bucket.forge("1", b"TFL3" + bytes(range(256)) * 8)
    bucket.move("1")
    folder = tmp_path / "store"
    store, stages = client(store_identity_store, bucket, folder)
    result = store.sync()
    assert outcome(result) == ("refused", None, "1", garbage.bytes)  # downloaded, then refused
    assert stages == ["metadata", "pointer", "manifest", "model", "verify"]
    assert "does not load" in result.message and result.message.endswith("; no model installed yet")
    assert not (folder / "versions").exists() and not (folder / ".incoming").exists()


def test_wrong_store_credentials_are_reported_with_the_fix(seaweedfs, bucket, tmp_path):
    from shelfcast.contract.objects import ObjectStore, make_s3_client
    from tests.conftest import STORE

    bucket.publish("1")
    bucket.move("1")
    objects = ObjectStore(make_s3_client(seaweedfs.urls["s3"], STORE[0], "not-the-secret", max_attempts=1), BUCKET)
    store, stages = client(objects, bucket, tmp_path / "store")
    result = store.sync()
    assert outcome(result) == ("error", None, None, 0) and stages == ["metadata"]
    # (a refused newer root reads as "no newer root" to TUF; the timestamp is the first read that must succeed)
    assert result.message == (f"S3 refused the request while reading the metadata: s3://{BUCKET}/metadata/"
                              "timestamp.json: SignatureDoesNotMatch (check this store's S3 credentials and policy); "
                              "no model installed yet")


def test_expired_metadata_is_reported_as_a_frozen_channel(trainer_store, bucket, tmp_path):
    """A bucket of its own, signed a year before the store's clock: every role has expired."""
    from datetime import datetime, timezone

    from shelfcast.contract.objects import ObjectStore
    from shelfcast.delivery.signing import KeyRing, SignedRepository

    objects = ObjectStore(trainer_store.client, f"frozen-{uuid.uuid4().hex[:8]}")
    objects.ensure_bucket(wait_s=10)
    signer = SignedRepository(objects, KeyRing(tmp_path / "keys"),
                              clock=lambda: datetime(2020, 1, 1, tzinfo=timezone.utc))
    signer.init()
    store = StoreClient(objects, "stable", tmp_path / "store", trusted_root=signer.root_bytes())
    result = store.sync()
    assert outcome(result) == ("frozen", None, None, 0) and not result.ok
    assert result.message.startswith(f"the signed delivery metadata in s3://{objects.bucket}/metadata/ has expired (")
    assert result.message.endswith("so the channel may be frozen; fix: run `shelfcast keys refresh` (the nightly "
                                   "run does) and check who can write the bucket; no model installed yet")


def test_a_signed_pointer_behind_the_move_followed_is_refused_naming_its_object(store_identity_store, bucket,
                                                                              tmp_path):
    folder = tmp_path / "store"
    store, stages = serving_2_after_1(store_identity_store, bucket, folder)
    bucket.sign_pointer(bucket.pointer("1", 1))  # move #1 again: a replay, re-signed by mistake
    result = store.sync()
    assert outcome(result) == ("refused", "2", "1", 0)
    assert result.message == (
        f"s3://{BUCKET}/{bucket.key} is move #1 (version 1) but this store already followed move #2 (version 2): a "
        f"stale or replayed pointer; refused. If the channel was deliberately recreated, delete "
        f"{folder / 'state.json'} to follow it again; keeps serving 2")


def test_a_version_whose_manifest_or_model_is_not_signed_is_refused(store_identity_store, bucket, tmp_path):
    one = bucket.publish("1")  # published, never moved: nothing of it is signed
    bucket.sign_pointer(bucket.pointer("1", 1))
    store, stages = client(store_identity_store, bucket, tmp_path / "store")
    unsigned = store.sync()
    assert outcome(unsigned) == ("refused", None, "1", 0) and stages == ["metadata", "pointer", "manifest"]
    assert unsigned.message == (f"s3://{BUCKET}/{one.key} (manifest) is not signed by the delivery keys; refused; "
                                "no model installed yet")
    bucket.signing.sign_targets({one.key: target_file(one.key, bucket.trainer.get(one.key).body)})
    model_unsigned = store.sync()
    assert outcome(model_unsigned) == ("refused", None, "1", 0)
    assert model_unsigned.message == (f"s3://{BUCKET}/{one.model_key} (model) is not signed by the delivery keys; "
                                      "refused; no model installed yet")


def test_a_manifest_changed_after_signing_is_refused(store_identity_store, bucket, tmp_path):
    one = bucket.publish("1")
    bucket.move("1")
    body = bucket.trainer.get(one.key).body
    bucket.trainer.put(one.key, body.replace(b'"format": "tflite"', b'"format": "tfl1te"'))  # same length
    result = client(store_identity_store, bucket, tmp_path / "store")[0].sync()
    assert outcome(result) == ("refused", None, "1", 0)
    assert result.message.startswith(f"s3://{BUCKET}/{one.key} (manifest) is not the signed file (")
    assert result.message.endswith("); refused; no model installed yet")


def test_a_signed_manifest_that_does_not_parse_names_its_object(store_identity_store, bucket, tmp_path):
    one = bucket.publish("1")
    bucket.trainer.put(one.key, b"[]")
    bucket.signing.sign_targets({one.key: target_file(one.key, b"[]"),
                                 one.model_key: target_file(one.model_key, bucket.tiny["v1"])})
    bucket.sign_pointer(bucket.pointer("1", 1))
    result = client(store_identity_store, bucket, tmp_path / "store")[0].sync()
    assert outcome(result) == ("refused", None, "1", 0)
    assert result.message == (f"s3://{BUCKET}/{one.key} holds list, expected a JSON object; "
                              "no model installed yet")


def test_an_installed_model_that_does_not_fit_its_manifest_names_its_file(tmp_path, tiny_tflite):
    from dataclasses import replace

    from shelfcast.contract.errors import ModelLoadError
    from shelfcast.device.sync import Installed

    data, spec = tiny_tflite["v1"], replace(tiny_tflite["spec"], lookback=7)
    manifest = make_manifest(data, name="demand", version="1", input_spec=spec.to_dict())
    (tmp_path / "model.tflite").write_bytes(data)
    with pytest.raises(ModelLoadError) as refused:
        Installed("1", tmp_path, manifest).check()
    features = spec.n_features
    assert str(refused.value) == (
        f"{tmp_path / 'model.tflite'}: the model takes input (1, 14, {features}), the manifest's input spec needs "
        f"(1, 7, {features}); the manifest and the model do not belong together")
