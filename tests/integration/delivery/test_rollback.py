"""Rollback against the real SeaweedFS server: the target must exist, match its checksum and load; otherwise the
rollback is refused and the channel keeps serving its version."""

import uuid

import pytest

from shelfcast.delivery.channels import PromotionRefused, read_head, read_log
from shelfcast.device.sync import StoreClient
from shelfcast.contract.manifest import model_key
from shelfcast.delivery.publish import make_manifest, move_channel, publish_model
from shelfcast.delivery.registry import MlflowRegistry
from shelfcast.delivery.rollback import rollback

pytestmark = pytest.mark.integration


@pytest.fixture
def served(trainer_store, tiny_tflite, signing):
    """A channel that served versions 1, 2, then 3 of a fresh model: (name, channel)."""
    name, channel = f"demand-{uuid.uuid4().hex[:8]}", f"stable-{uuid.uuid4().hex[:8]}"
    for version, key in (("1", "v1"), ("2", "v2"), ("3", "v1")):
        data = tiny_tflite[key]
        manifest = publish_model(trainer_store, data, make_manifest(data, name=name, version=version,
                                                                    input_spec=tiny_tflite["spec"].to_dict()))
        move_channel(trainer_store, channel, manifest, action="promote", actor="nightly", reason="", signer=signing)
    return name, channel


def _forge_version(trainer_store, name, version, stored, described, spec):
    """A version whose object is not what its manifest describes, written around the publisher (which refuses
    it), as a damaged bucket would hold it."""
    manifest = make_manifest(described, name=name, version=version, input_spec=spec.to_dict())
    trainer_store.put(model_key(name, version), stored)
    trainer_store.put(manifest.key, manifest.to_json())


def test_rollback_returns_to_the_previous_version_and_stores_follow(trainer_store, store_identity_store, served,
                                                                   tmp_path, signing):
    name, channel = served
    store = StoreClient(store_identity_store, channel, tmp_path / "store", trusted_root=signing.trusted_root)
    assert store.sync().serving == "3"
    result = rollback(trainer_store, channel, actor="oncall@hq", reason="MAPE doubled in store 4", signer=signing)
    assert (result.moved, result.version, result.previous_version, result.action) == (True, "2", "3", "rollback")
    last = read_log(trainer_store, channel)[-1]
    assert (last.seq, last.version, last.actor, last.reason) == (4, "2", "oncall@hq", "MAPE doubled in store 4")
    assert store.sync().serving == "2"

    again = rollback(trainer_store, channel, actor="oncall@hq", signer=signing)  # further back, never forward to 3
    assert again.version == "1" and read_head(trainer_store, channel).version == "1"
    assert store.sync().serving == "1"


def test_rollback_to_a_named_version(trainer_store, served):
    name, channel = served
    assert rollback(trainer_store, channel, to="1", actor="oncall").version == "1"
    with pytest.raises(PromotionRefused, match="already serves 1"):
        rollback(trainer_store, channel, to="1", actor="oncall")


@pytest.mark.parametrize("damage, message", [
    ("missing", "version 9 is not published"),
    ("corrupt", "does not match the manifest's .*corrupted"),
    ("unloadable", "does not load"),
])
def test_a_bad_rollback_target_is_refused_and_the_channel_keeps_its_version(trainer_store, served, tiny_tflite,
                                                                           damage, message):
    name, channel = served
    good = tiny_tflite["v2"]
    flipped = bytearray(good)
    flipped[100] ^= 0x55
    garbage = b"TFL3" + bytes(range(256)) * 4
    if damage == "corrupt":
        _forge_version(trainer_store, name, "9", bytes(flipped), good, tiny_tflite["spec"])
    elif damage == "unloadable":
        _forge_version(trainer_store, name, "9", garbage, garbage, tiny_tflite["spec"])
    before = read_head(trainer_store, channel)
    with pytest.raises(PromotionRefused, match=message) as refused:
        rollback(trainer_store, channel, to="9", actor="oncall")
    assert f"{channel} still serves 3" in str(refused.value)
    after = read_head(trainer_store, channel)
    assert (after.version, after.seq, after.etag) == ("3", before.seq, before.etag)


def test_rollback_of_a_channel_that_never_moved_is_refused(trainer_store):
    with pytest.raises(PromotionRefused, match="never been promoted"):
        rollback(trainer_store, f"empty-{uuid.uuid4().hex[:8]}", actor="oncall")


def test_rollback_moves_the_mlflow_alias_with_the_pointer(trainer_store, served, tmp_path):
    from mlflow import MlflowClient

    name, channel = served
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=(tmp_path / "artifacts").as_uri())
    registry = MlflowRegistry(client, name)
    result = rollback(trainer_store, channel, actor="oncall", registry=registry, aliases={channel: "champion"})
    assert result.alias == "champion" and result.alias_error is None
    assert registry.get_alias("champion") == "2"
    assert any("repaired alias 'champion': None -> 3" in note for note in result.notes)
