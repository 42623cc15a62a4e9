"""`shelfcast stack up|down|status`: the local stack (SeaweedFS S3, Prefect server, MLflow server, and with
`--postgres` a PostgreSQL server) on 127.0.0.1.

`up` starts what is not running yet, waits until each service is healthy, creates the bucket and records what
it started in a pid file (`<home>/stack/stack.json`). `down` stops exactly the processes that file names, after
checking that each pid still runs the command it started (a recycled pid is left alone). A port already taken
by something this stack did not start is an error that says which setting moves it.

Addresses and keys come from `Settings`: `s3_endpoint_url`, `prefect_api_url`, `mlflow_tracking_uri`, the
bucket and the trainer, store and uploader identities (secrets generated per installation unless set).

Databases: SQLite files in the services' folders and `<home>/alerts.db` by default. `LocalStack(settings,
postgres=True)` (`shelfcast stack up --postgres`) starts a PostgreSQL server of this home
(`shelfcast.stack.postgres`, on a free port chosen once) and records its URL in `Settings.local_postgres_file`:
from then on the Prefect server, MLflow's backend and the alert log of this home live in its databases, and every
later `up` starts it again. With `SHELFCAST_POSTGRES_URL` set, that server is used instead (its databases
created when missing) and none is started.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.contract import clock
from shelfcast.contract.errors import ServiceError
from shelfcast.stack.mlflow_server import start_mlflow_server
from shelfcast.stack.prefect_server import start_prefect_server
from shelfcast.stack.postgres import Server, data_dir, start_postgres
from shelfcast.stack.process import Service, free_port, http_ok, port_open, stop_pid
from shelfcast.stack.seaweedfs import Identity, access_identities, start_seaweedfs

SERVICES = ("seaweedfs", "prefect", "mlflow")
POSTGRES = "postgres"
MLFLOW_ARTIFACT_PREFIX = "mlflow"


def identities(settings: Settings) -> list[Identity]:
    """The bucket's S3 identities from the access roles (`shelfcast.delivery.access`): the trainer reads and writes
    the bucket (deleting in `landing/` only what ingest archived), a store reads only `channels/` and `models/`, the
    uploader only writes `landing/`."""
    keys = {role: settings.credentials(role) for role in ("trainer", "store", "uploader")}
    return access_identities(settings.bucket, keys)


def _port(url: str, what: str, setting: str) -> int:
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or not parsed.port:
        raise ServiceError(f"{what} address {url!r} is not a local 127.0.0.1:PORT address; the local stack only "
                           f"starts services on this machine (set SHELFCAST_{setting} to http://127.0.0.1:PORT...)")
    return parsed.port


@dataclass
class ServiceRecord:
    """One started service as the pid file remembers it."""

    name: str
    pid: int
    port: int
    urls: dict[str, str]
    log: str
    marker: str  # a string of its command line that identifies it (its data folder)
    started_at: str

    def running(self) -> bool:
        """True when the pid is alive and still runs the command this stack started."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        return self.marker in cmdline

    def healthy(self) -> bool:
        if self.name == POSTGRES:
            return self.running() and port_open(self.port)
        return self.running() and http_ok(health_url(self.name, self.urls), timeout=2.0)


def health_url(name: str, urls: dict[str, str]) -> str:
    return {"seaweedfs": urls.get("s3", ""), "prefect": urls.get("api", "") + "/health",
            "mlflow": urls.get("tracking", "") + "/health"}[name]


@dataclass
class StackState:
    services: dict[str, ServiceRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "StackState":
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls({name: ServiceRecord(**record) for name, record in data.get("services", {}).items()})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": {n: asdict(r) for n, r in self.services.items()}}, indent=1))
        os.replace(tmp, path)


class LocalStack:
    """The local services for one `Settings` (one home folder, one set of ports): three, and PostgreSQL first
    when `postgres` asks for it or this home already runs on it (module docstring)."""

    def __init__(self, settings: Settings, postgres: bool = False):
        self.settings = settings
        self.root = Path(settings.stack_dir).resolve()
        self.pid_file = self.root / "stack.json"
        self.ports = {
            "seaweedfs": _port(settings.s3_endpoint_url or "", "S3", "S3_ENDPOINT_URL"),
            "prefect": _port(settings.prefect_api_url, "Prefect API", "PREFECT_API_URL"),
            "mlflow": _port(settings.mlflow_tracking_uri, "MLflow", "MLFLOW_TRACKING_URI"),
        }
        self.services = SERVICES
        if not settings.postgres_url and (postgres or settings.local_postgres_file.exists()):
            self.services = (POSTGRES,) + SERVICES
            known = settings.database_server
            self.ports[POSTGRES] = urlparse(known).port if known else free_port()
        self.dirs = {name: self.root / name for name in self.services}

    # ---- status ---------------------------------------------------------------------------------------------
    def state(self) -> StackState:
        return StackState.load(self.pid_file)

    def status(self) -> dict[str, dict]:
        """Per service: started by this stack or not, pid, running, healthy, URLs."""
        state = self.state()
        report = {}
        for name in self.services:
            record = state.services.get(name)
            if record is None:
                report[name] = {"started": False, "running": False, "healthy": False, "pid": None,
                                "port": self.ports[name], "port_in_use": port_open(self.ports[name]), "urls": {}}
                continue
            running = record.running()
            report[name] = {"started": True, "running": running, "healthy": running and record.healthy(),
                            "pid": record.pid, "port": record.port, "port_in_use": port_open(record.port),
                            "urls": record.urls, "log": record.log}
        return report

    # ---- up -------------------------------------------------------------------------------------------------
    def up(self, on_step=lambda message: None) -> dict[str, ServiceRecord]:
        """Start every service not already running from this stack; returns the records of all of them."""
        state = self.state()
        for name in self.services:
            record = state.services.get(name)
            if record is not None and not record.running():
                del state.services[name]  # stale entry (machine rebooted, process killed)
            elif record is not None:
                on_step(f"{name} already running (pid {record.pid})")
        for name in self.services:
            if name not in state.services and port_open(self.ports[name]):
                if name == POSTGRES:
                    raise ServiceError(
                        f"port {self.ports[name]} for postgres is in use by a process this stack did not start; stop "
                        f"it, or delete {self.settings.local_postgres_file} (the data stays) for another port")
                setting = {"seaweedfs": "S3_ENDPOINT_URL", "prefect": "PREFECT_API_URL",
                           "mlflow": "MLFLOW_TRACKING_URI"}[name]
                raise ServiceError(
                    f"port {self.ports[name]} for {name} is in use by a process this stack did not start; stop it or "
                    f"move {name} with SHELFCAST_{setting}=http://127.0.0.1:<free port>... (`shelfcast stack status`)"
                )
        started: list[Service] = []
        try:
            if POSTGRES in self.services and POSTGRES not in state.services:
                on_step(f"starting PostgreSQL on 127.0.0.1:{self.ports[POSTGRES]}")
                service = start_postgres(self.dirs[POSTGRES], self.ports[POSTGRES], self.databases())
                started.append(service)
                state.services[POSTGRES] = self._record(service, POSTGRES)
                state.save(self.pid_file)
                _write_private(self.settings.local_postgres_file, service.urls["server"])
            elif self.settings.postgres_url:
                Server(self.settings.database_server).ensure_databases(self.databases())
            if "seaweedfs" not in state.services:
                on_step(f"starting SeaweedFS S3 on 127.0.0.1:{self.ports['seaweedfs']}")
                service = start_seaweedfs(self.dirs["seaweedfs"], identities(self.settings), self.ports["seaweedfs"])
                started.append(service)
                state.services["seaweedfs"] = self._record(service, "seaweedfs")
                state.save(self.pid_file)
            self.ensure_bucket()
            self.ensure_signing(on_step)
            pending = [n for n in ("prefect", "mlflow") if n not in state.services]
            for name in pending:
                on_step(f"starting {name} on 127.0.0.1:{self.ports[name]}")
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = {name: pool.submit(self._start, name) for name in pending}
                errors = []
                for name, future in futures.items():
                    try:
                        service = future.result()
                    except ServiceError as exc:
                        errors.append(exc)
                        continue
                    started.append(service)
                    state.services[name] = self._record(service, name)
                    state.save(self.pid_file)
            if errors:
                raise errors[0]
        except BaseException:
            for service in started:
                service.stop()
                state.services.pop(service.name, None)
            state.save(self.pid_file)
            raise
        for name in self.services:
            urls = {"server": f"127.0.0.1:{self.ports[name]}"} if name == POSTGRES else state.services[name].urls
            on_step(f"{name} healthy at {urls}")
        return state.services

    def databases(self) -> tuple[str, ...]:
        s = self.settings
        return s.prefect_database, s.mlflow_database, s.alerts_database

    def _start(self, name: str) -> Service:
        s = self.settings
        if name == "prefect":
            return start_prefect_server(self.dirs["prefect"], self.ports["prefect"],
                                        database_url=s.database_url(s.prefect_database, "asyncpg"))
        return start_mlflow_server(
            self.dirs["mlflow"], self.ports["mlflow"], f"s3://{s.bucket}/{MLFLOW_ARTIFACT_PREFIX}",
            s.s3_endpoint_url, *s.credentials("trainer"),
            backend_store_uri=s.database_url(s.mlflow_database, "psycopg"),
        )

    def _record(self, service: Service, name: str) -> ServiceRecord:
        # What identifies each in its command line: its data folder, else (Prefect; MLflow on PostgreSQL) its port.
        marker = f"--port {self.ports[name]}"
        if name == "seaweedfs" or (name == "mlflow" and POSTGRES not in self.services):
            marker = str(self.dirs[name])
        elif name == POSTGRES:
            marker = str(data_dir(self.dirs[name]))
        urls = {} if name == POSTGRES else service.urls  # the server URL holds the password: not in the pid file
        return ServiceRecord(name=name, pid=service.pid, port=self.ports[name], urls=urls, log=str(service.log_path),
                             marker=marker, started_at=clock.stamp())

    def ensure_bucket(self) -> None:
        ensure_bucket(self.settings)

    def ensure_signing(self, on_step=lambda message: None) -> None:
        """A local bucket without delivery keys gets them (`shelfcast keys init`), so that what the main job
        promotes is something stores follow. Its root key stays in the keys folder: fine for a laptop; a real
        bucket is initialised by an operator who moves the root key offline."""
        from shelfcast.delivery.signing import repository_from_settings

        repository = repository_from_settings(self.settings, wiring.bucket(self.settings))
        if repository.initialized() or any(repository.keys.path(role).exists() for role in ("root", "targets")):
            return
        repository.init()
        on_step(f"signed delivery metadata created (keys in {self.settings.signing_keys_dir}; "
                "stores need `shelfcast keys show --root-out root.json`)")

    # ---- down -----------------------------------------------------------------------------------------------
    def down(self, on_step=lambda message: None) -> list[str]:
        """Stop the services this stack started (MLflow and Prefect together, then S3 and PostgreSQL); returns
        their names."""
        state = self.state()
        stopped = []
        for group in (("mlflow", "prefect"), ("seaweedfs", POSTGRES)):
            running = []
            for name in group:
                record = state.services.get(name)
                if record is None:
                    continue
                if record.running():
                    on_step(f"stopping {name} (pid {record.pid})")
                    running.append(record)
                else:
                    on_step(f"{name} (pid {record.pid}) is not running any more; forgetting it")
                    del state.services[name]
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda record: stop_pid(record.pid), running))
            for record in running:
                stopped.append(record.name)
                del state.services[record.name]
            state.save(self.pid_file)
        return stopped


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def ensure_bucket(settings: Settings, timeout: float = 30.0) -> None:
    """Create the bucket (versioning on, deletes limited by the bucket policy) with the trainer identity; the S3
    gateway may need a moment."""
    from shelfcast.delivery.access import apply_local_policy

    try:
        objects = wiring.bucket(settings)
        objects.ensure_bucket(wait_s=timeout)
        apply_local_policy(objects)  # deletes only where the IAM policies allow them
    except Exception as exc:  # noqa: BLE001 - the gateway answered errors for the whole timeout
        raise ServiceError(f"could not create bucket {settings.bucket!r}: {exc}") from exc


def ui_addresses(settings: Settings) -> dict[str, str]:
    """Where to look: the UIs, the S3 endpoint and, on PostgreSQL, its server (without the password)."""
    addresses = {
        "Prefect UI": settings.prefect_api_url.removesuffix("/api"),
        "MLflow UI": settings.mlflow_tracking_uri,
        "S3 endpoint": settings.s3_endpoint_url or "AWS S3",
        "bucket": f"s3://{settings.bucket}/",
    }
    server = settings.database_server
    if server:
        parsed = urlparse(server)
        addresses["PostgreSQL"] = f"postgresql://{parsed.username}@{parsed.hostname}:{parsed.port}"
    return addresses
