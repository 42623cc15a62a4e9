"""ObjectStore against the real SeaweedFS server: conditional writes, conditional reads, least privilege."""

import uuid

import pytest
from botocore.exceptions import ClientError

from shelfcast.contract.errors import WriteConflict
from shelfcast.contract.objects import AlreadyExists, ObjectMissing

pytestmark = pytest.mark.integration


def _key(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def test_put_if_absent_refuses_a_second_write(trainer_store):
    key = _key("models/test")
    trainer_store.put_if_absent(key, b"one")
    with pytest.raises(AlreadyExists):
        trainer_store.put_if_absent(key, b"two")
    assert trainer_store.get(key).body == b"one"


def test_compare_and_swap_has_exactly_one_winner(trainer_store):
    key = _key("channels/test")
    etag = trainer_store.put_if_match(key, b"v1", None)
    trainer_store.put_if_match(key, b"v2", etag)
    with pytest.raises(WriteConflict):
        trainer_store.put_if_match(key, b"v3", etag)
    assert trainer_store.get(key).body == b"v2"


def test_conditional_get_returns_none_when_unchanged(trainer_store):
    key = _key("channels/test")
    etag = trainer_store.put(key, b"x")
    assert trainer_store.get_if_changed(key, etag) is None
    trainer_store.put(key, b"y")
    assert trainer_store.get_if_changed(key, etag).body == b"y"


def test_missing_object_is_a_clear_error(trainer_store):
    with pytest.raises(ObjectMissing, match="does not exist"):
        trainer_store.get(_key("models/none"))
    assert trainer_store.head(_key("models/none")) is None


def test_store_identity_reads_channels_but_not_landing_and_cannot_write(trainer_store, store_identity_store):
    channel, landing = _key("channels/test"), _key("landing")
    trainer_store.put(channel, b"pointer")
    trainer_store.put(landing, b"sales")
    assert store_identity_store.get(channel).body == b"pointer"
    for attempt in (lambda: store_identity_store.get(landing), lambda: store_identity_store.put(channel, b"evil")):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()
