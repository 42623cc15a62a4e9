"""Shared fixtures. Servers are real and started by the test session itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KAGGLE_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "demand-forecasting-kernels-only.zip"

TRAINER = ("shelfcast-trainer-test", "trainer-secret-test")
STORE = ("shelfcast-store-test", "store-secret-test")
BUCKET = "shelfcast-test"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real SeaweedFS S3 server with a trainer identity (everything) and a store identity (read-only,
    `channels/` and `models/` only). Yields the running `Service`; its S3 URL is `service.urls['s3']`."""
    from shelfcast.stack.seaweedfs import Identity, start_seaweedfs

    identities = [
        Identity("trainer", *TRAINER, ("Admin", "Read", "Write", "List", "Tagging")),
        Identity(
            "store",
            *STORE,
            (f"Read:{BUCKET}/channels/*", f"Read:{BUCKET}/models/*"),
        ),
    ]
    service = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), identities)
    yield service
    service.stop()


def _client(service, keys):
    from shelfcast.storage import make_s3_client

    return make_s3_client(service.urls["s3"], *keys)


@pytest.fixture(scope="session")
def trainer_store(seaweedfs):
    """An `ObjectStore` on the test bucket with the trainer identity; the bucket exists, versioning on."""
    import time

    from shelfcast.storage import ObjectStore

    store = ObjectStore(_client(seaweedfs, TRAINER), BUCKET)
    for attempt in range(40):
        try:
            store.ensure_bucket()
            break
        except Exception:
            if attempt == 39:
                raise
            time.sleep(0.25)
    return store


@pytest.fixture(scope="session")
def store_identity_store(seaweedfs, trainer_store):
    """The same bucket seen with the store identity (read-only on channels/ and models/)."""
    from shelfcast.storage import ObjectStore

    return ObjectStore(_client(seaweedfs, STORE), BUCKET)


@pytest.fixture(scope="session")
def small_sales():
    """A small synthetic panel: 2 stores x 3 items over 2 years."""
    from shelfcast.data.synthetic import generate_sales

    return generate_sales(stores=2, items=3, start="2015-01-01", end="2016-12-31", seed=7)
