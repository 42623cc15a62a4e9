"""The delivery documents a store trusts: manifests and pointers round-trip exactly, and every damaged or
forged document is refused with an `IntegrityError` that names its source and what is wrong."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from shelfcast.contract.errors import IntegrityError
from shelfcast.contract.manifest import (
    SCHEMA,
    Manifest,
    Pointer,
    check_name,
    decision_key,
    log_key,
    manifest_key,
    model_key,
    pointer_key,
    sha256_hex,
)

pytestmark = pytest.mark.unit

SHA = sha256_hex(b"model bytes")
MANIFEST = Manifest(name="demand", version="7", sha256=SHA, bytes=5768, input_spec={"lookback": 56},
                    metrics={"mape_pct": 13.1}, mlflow_run_id="run-1", created_at="2017-03-01T02:00:00Z",
                    details={"variant": "LSTM-16+INT8"})
POINTER = Pointer(channel="stable", name="demand", version="7", sha256=SHA, bytes=5768, seq=3, move_id="m" * 32,
                  moved_at="2017-03-01T02:00:00Z", action="promote", actor="nightly-retrain", reason="best",
                  previous_version="6")


def _with(document, **changes) -> bytes:
    data = {**asdict(document), **changes}
    return json.dumps({k: v for k, v in data.items() if v is not _DROP}).encode()


_DROP = object()


def test_keys_of_the_protocol():
    assert model_key("demand", "7") == "models/demand/7/model.tflite"
    assert manifest_key("demand", "7") == "models/demand/7/manifest.json"
    assert pointer_key("canary") == "channels/canary/latest.json"
    assert log_key("canary", 12) == "promotions/canary/log/0000000012.json"
    assert decision_key("stable", "2017-03-01T02:00:00Z", "abc") == "promotions/stable/decisions/20170301T020000Z-abc.json"
    with pytest.raises(ValueError, match="start at 1"):
        log_key("canary", 0)


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", "-lead", "x" * 129, "sp ace", "é"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ValueError, match="is not allowed"):
        check_name("channel", name)


def test_documents_round_trip_exactly():
    assert Manifest.from_json(MANIFEST.to_json()) == MANIFEST
    assert Pointer.from_json(POINTER.to_json()) == POINTER
    assert POINTER.matches(MANIFEST)
    assert not replace(POINTER, sha256=sha256_hex(b"other")).matches(MANIFEST)
    assert not replace(POINTER, bytes=5767).matches(MANIFEST)


def test_unknown_fields_from_a_newer_writer_are_ignored():
    assert Manifest.from_json(_with(MANIFEST, signed_by="ci")) == MANIFEST


@pytest.mark.parametrize("data, message", [
    (b"", "is not valid JSON"),
    (b"\x89PNG\r\n\x1a\n", "is not valid JSON"),
    (b"[1, 2]", "holds list, expected a JSON object"),
    (_with(MANIFEST, sha256=_DROP), "lacks the field 'sha256'"),
    (_with(MANIFEST, bytes="5768"), "field 'bytes' is '5768'"),
    (_with(MANIFEST, bytes=True), "field 'bytes' is True"),
    (_with(MANIFEST, bytes=0), "are not valid"),
    (_with(MANIFEST, bytes=-1), "are not valid"),
    (_with(MANIFEST, sha256="0" * 63), "are not valid"),
    (_with(MANIFEST, sha256=SHA.upper()), "are not valid"),
    (_with(MANIFEST, format="onnx"), "is not 'tflite'"),
    (_with(MANIFEST, schema=SCHEMA + 1), "upgrade shelfcast[store]"),
    (_with(MANIFEST, input_spec=[56]), "field 'input_spec'"),
])
def test_a_damaged_manifest_is_refused_naming_the_source(data, message):
    with pytest.raises(IntegrityError) as refused:
        Manifest.from_json(data, "s3://b/models/demand/7/manifest.json")
    assert str(refused.value).startswith("s3://b/models/demand/7/manifest.json")
    assert message in str(refused.value)


@pytest.mark.parametrize("changes, message", [
    ({"version": "../../../etc"}, "version '../../../etc' is not allowed"),
    ({"channel": "a/b"}, "channel 'a/b' is not allowed"),
    ({"name": ".."}, "model name '..' is not allowed"),
    ({"seq": "3"}, "field 'seq' is '3'"),
    ({"seq": False}, "field 'seq' is False"),
    ({"move_id": _DROP}, "lacks the field 'move_id'"),
    ({"bytes": 0}, "are not valid"),
    ({"sha256": "not-a-digest"}, "are not valid"),
    ({"seq": 0}, "move number 0"),
])
def test_a_damaged_or_forged_pointer_is_refused(changes, message):
    with pytest.raises(IntegrityError) as refused:
        Pointer.from_json(_with(POINTER, **changes), "s3://b/channels/stable/latest.json")
    assert str(refused.value).startswith("s3://b/channels/stable/latest.json")
    assert message in str(refused.value)


def test_each_key_names_the_kind_of_the_unsafe_segment():
    for make, message in ((lambda: model_key("a/b", "7"), "model name 'a/b'"),
                          (lambda: model_key("demand", ".."), "version '..'"),
                          (lambda: manifest_key("", "7"), "model name ''"),
                          (lambda: manifest_key("demand", "7/../8"), "version '7/../8'"),
                          (lambda: pointer_key("../x"), "channel '../x'"),
                          (lambda: log_key("a b", 1), "channel 'a b'"),
                          (lambda: decision_key("-x", "2017-03-01T02:00:00Z", "abc"), "channel '-x'")):
        with pytest.raises(ValueError) as refused:
            make()
        assert str(refused.value) == (f"{message} is not allowed; use 1-128 letters, digits, '.', '_' or '-', "
                                      "starting with a letter or digit")
    assert check_name("version", "1.0_rc-2") == "1.0_rc-2"
    with pytest.raises(ValueError, match=r"^version 7 is not allowed"):
        check_name("version", 7)
    assert decision_key("stable", "2017-03-01T02:00:00+00:00", "d1") == "promotions/stable/decisions/20170301T020000Z-d1.json"
    assert log_key("stable", 1) == "promotions/stable/log/0000000001.json"


def test_documents_are_written_sorted_and_indented_by_two():
    text = POINTER.to_json().decode()
    assert text.startswith('{\n  "action": "promote",\n  "actor": "nightly-retrain",\n  "bytes": 5768,\n')
    assert text.endswith('\n  "version": "7"\n}')
    assert MANIFEST.to_json() == json.dumps(asdict(MANIFEST), indent=2, sort_keys=True).encode()


def test_the_smallest_model_and_the_default_sources_in_messages():
    assert Manifest.from_json(_with(MANIFEST, bytes=1)).bytes == 1
    assert Pointer.from_json(_with(POINTER, bytes=1, seq=1)).seq == 1
    with pytest.raises(IntegrityError, match=r"^manifest.json is not valid JSON"):
        Manifest.from_json(b"{")
    with pytest.raises(IntegrityError, match=r"^latest.json is not valid JSON"):
        Pointer.from_json(b"{")
    with pytest.raises(IntegrityError, match=r"^s3://b/channels/stable/latest.json holds list"):
        Pointer.from_json(b"[]", "s3://b/channels/stable/latest.json")
