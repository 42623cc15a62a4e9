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


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    """Two real fused-LSTM `.tflite` models with random weights (nothing trained), for protocol tests: a dict with
    the `InputSpec` they take (14 days, window-mean scaling, calendar inputs) and the bytes of `v1` (float32) and
    `v2` (INT8). One conversion child, ~10 s."""
    import numpy as np

    from shelfcast.compress.export import ExportJob, export_many
    from shelfcast.features import InputSpec

    spec = InputSpec(lookback=14, scaling="window_mean", calendar=True)
    rng = np.random.default_rng(11)
    units, features = 4, spec.n_features
    weights = [rng.normal(0, 0.3, (features, 4 * units)), rng.normal(0, 0.3, (units, 4 * units)),
               np.zeros(4 * units), rng.normal(0, 0.3, (units, 1)), np.ones(1)]  # Keras LSTM + Dense layout
    weights = [w.astype(np.float32) for w in weights]
    folder = tmp_path_factory.mktemp("tiny-tflite")
    calibration = rng.uniform(0.0, 2.0, (32, spec.lookback, features)).astype(np.float32)
    paths = export_many([ExportJob(weights, units, spec, "float32", folder / "v1.tflite"),
                         ExportJob(weights, units, spec, "int8", folder / "v2.tflite", calibration)])
    for path in paths:
        if isinstance(path, Exception):
            raise path
    return {"spec": spec, "v1": paths[0].read_bytes(), "v2": paths[1].read_bytes()}
