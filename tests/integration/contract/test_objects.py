"""ObjectStore against the real SeaweedFS server: conditional writes, conditional reads, least privilege."""

import threading
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


def test_compare_and_swap_refuses_a_stale_etag(trainer_store):
    key = _key("channels/test")
    etag = trainer_store.put_if_match(key, b"v1", None)
    trainer_store.put_if_match(key, b"v2", etag)
    with pytest.raises(WriteConflict):
        trainer_store.put_if_match(key, b"v3", etag)
    assert trainer_store.get(key).body == b"v2"


@pytest.mark.parametrize("write", ["put_if_absent", "put_if_match"])
def test_concurrent_write_once_has_exactly_one_winner(trainer_store, write):
    """Eight writers released together by a barrier, six rounds, on one new key each round: exactly one
    write lands, every other writer is told, and the key holds the winner's bytes. This (`IfNoneMatch='*'`) is
    the lock the promotion log takes; concurrent `IfMatch` writes are not exclusive on SeaweedFS 4.48 (see
    `shelfcast.delivery.channels`), so no guarantee is claimed, or tested, for them."""
    writers, refused = 8, (AlreadyExists, WriteConflict)
    for round_ in range(6):
        key, barrier, won, lost = _key("promotions/test"), threading.Barrier(writers), [], []

        def attempt(body: bytes):
            barrier.wait(timeout=30)
            try:
                if write == "put_if_absent":
                    trainer_store.put_if_absent(key, body)
                else:
                    trainer_store.put_if_match(key, body, None)
                won.append(body)
            except refused:
                lost.append(body)

        threads = [threading.Thread(target=attempt, args=(f"writer-{i}".encode(),)) for i in range(writers)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert (len(won), len(lost)) == (1, writers - 1), (round_, won, lost)
        assert trainer_store.get(key).body == won[0]


def test_conditional_get_returns_none_when_unchanged(trainer_store):
    key = _key("channels/test")
    etag = trainer_store.put(key, b"x")
    assert trainer_store.get_if_changed(key, etag) is None
    trainer_store.put(key, b"y")
    assert trainer_store.get_if_changed(key, etag).body == b"y"


def test_missing_object_is_a_clear_error(trainer_store, tmp_path):
    with pytest.raises(ObjectMissing, match="does not exist"):
        trainer_store.get(_key("models/none"))
    assert trainer_store.head(_key("models/none")) is None
    with pytest.raises(ObjectMissing, match="does not exist"):  # a landing file another ingest archived meanwhile
        trainer_store.download(_key("landing/none"), tmp_path / "delivery")


def test_store_identity_reads_channels_but_not_landing_and_cannot_write(trainer_store, store_identity_store):
    channel, landing = _key("channels/test"), _key("landing")
    trainer_store.put(channel, b"pointer")
    trainer_store.put(landing, b"sales")
    assert store_identity_store.get(channel).body == b"pointer"
    for attempt in (lambda: store_identity_store.get(landing), lambda: store_identity_store.put(channel, b"evil")):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()
