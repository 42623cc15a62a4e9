"""A store reads nothing unbounded: a 100 MB pointer, a 150 MB model behind a manifest (and signature) claiming
4,680 bytes, or a 100 MB timestamp are cut off at their cap and refused, with the store's peak resident memory
(VmHWM of a fresh process running one sync) under 100 MB and no more than cap + 1 bytes read from S3."""

import pytest

from shelfcast.contract.manifest import Pointer, model_key, pointer_key
from shelfcast.delivery.publish import make_manifest
from shelfcast.delivery.signing import metadata_key, target_file
from shelfcast.device.probe import sync_in_child
from tests.conftest import BUCKET, STORE, signed_channel

pytestmark = pytest.mark.integration

PEAK_RSS_LIMIT_MB = 100
MB = 1024 * 1024


def _sync_in_child(seaweedfs, channel, folder, root_file) -> dict:
    return sync_in_child(seaweedfs.urls["s3"], BUCKET, STORE, channel, folder, root_file)


@pytest.fixture
def serving_store(trainer_store, signing, tiny_tflite, tmp_path, seaweedfs):
    """A channel whose store already serves version 1; returns (name, channel, store folder, root file)."""
    name, channel = signed_channel(trainer_store, signing, tiny_tflite)
    root_file = tmp_path / "root.json"
    root_file.write_bytes(signing.trusted_root)
    first = _sync_in_child(seaweedfs, channel, tmp_path / "store", root_file)
    assert first["serving"] == "1", first
    return name, channel, tmp_path / "store", root_file


def test_a_100_mb_pointer_is_cut_off_at_its_signed_length(trainer_store, signing, seaweedfs, serving_store):
    name, channel, folder, root_file = serving_store
    signed = signing.targets().signed.targets[pointer_key(channel)].length
    pointer = Pointer.from_json(trainer_store.get(pointer_key(channel)).body)
    huge = pointer.to_json() + b" " * (100 * MB)
    trainer_store.put(pointer_key(channel), huge)
    # The signature even says so (a signer fooled into signing it): still cut at the store's document cap.
    signing.sign_targets({pointer_key(channel): target_file(pointer_key(channel), huge)})
    result = _sync_in_child(seaweedfs, channel, folder, root_file)
    assert (result["status"], result["serving"]) == ("refused", "1"), result
    assert "over the 1,048,576 a store reads for it" in result["message"]
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
    assert result["bytes_received"] < 64 * 1024, result  # signed metadata only: the pointer was never fetched

    trainer_store.put(pointer_key(channel), huge)  # unsigned, where the small pointer is signed
    signing.sign_targets({pointer_key(channel): target_file(pointer_key(channel), pointer.to_json())})
    result = _sync_in_child(seaweedfs, channel, folder.parent / "new-store", root_file)
    assert (result["status"], result["serving"]) == ("refused", None), result
    assert f"is longer than its signed {signed:,} bytes" in result["message"]
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
    assert result["bytes_received"] < 64 * 1024, result
    trainer_store.put(pointer_key(channel), pointer.to_json())


def test_a_150_mb_model_behind_a_4680_byte_manifest_is_cut_off(trainer_store, signing, seaweedfs, serving_store,
                                                              tiny_tflite):
    name, channel, folder, root_file = serving_store
    claimed = b"\0" * 4680
    manifest = make_manifest(claimed, name=name, version="2", input_spec=tiny_tflite["spec"].to_dict())
    trainer_store.put(model_key(name, "2"), b"\1" * (150 * MB))  # the manifest is signed, the object replaced
    trainer_store.put(manifest.key, manifest.to_json())
    pointer = Pointer(channel, name, "2", manifest.sha256, manifest.bytes, 2, "m2", "2026-01-01T00:00:00Z",
                      "promote", "test")
    trainer_store.put(pointer_key(channel), pointer.to_json())
    from shelfcast.delivery.signing import move_targets

    signing.sign_targets(move_targets(trainer_store, pointer_key(channel), pointer.to_json(), manifest))
    result = _sync_in_child(seaweedfs, channel, folder, root_file)
    assert (result["status"], result["serving"]) == ("refused", "1"), result
    assert "is longer than its signed 4,680 bytes; download cut off there" in result["message"]
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
    assert result["bytes_received"] < 4680 + 1 + 64 * 1024, result


def test_a_100_mb_timestamp_is_cut_off(trainer_store, signing, seaweedfs, serving_store):
    name, channel, folder, root_file = serving_store
    original = trainer_store.get(metadata_key("timestamp")).body
    trainer_store.put(metadata_key("timestamp"), original + b" " * (100 * MB))
    try:
        result = _sync_in_child(seaweedfs, channel, folder, root_file)
    finally:
        trainer_store.put(metadata_key("timestamp"), original)
    assert (result["status"], result["serving"]) == ("refused", "1"), result
    assert "larger than a store accepts" in result["message"]
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
    assert result["bytes_received"] < 64 * 1024, result
