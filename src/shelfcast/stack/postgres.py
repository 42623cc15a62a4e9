"""A local PostgreSQL server for the stack: one cluster, bound to 127.0.0.1, with the databases of the Prefect
server, MLflow's backend and the alert log.

The cluster is made once (`initdb`, UTF-8, C locale, password authentication only, a generated password kept in
`<folder>/password`, 0600) and started as a child process on TCP alone (no Unix socket). PostgreSQL refuses to
run as root: when this process is root the server runs as the unprivileged `postgres` user (the one Debian's
package creates), and its data folder, which that user must own and reach, lives in that user's home
(`/var/lib/postgresql/shelfcast/<key of folder>`), since a root-only folder above `folder` (a root home, a
pytest temporary folder) would bar it.

Binaries come from PATH or from `/usr/lib/postgresql/<version>/bin` (the newest), where Debian puts them.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shelfcast.config import postgres_database_url
from shelfcast.contract.errors import ServiceError
from shelfcast.stack.process import Service, start_service

SUPERUSER = "shelfcast"
SERVER_USER = "postgres"  # the account the server runs as when this process is root
DEBIAN_BINARIES = Path("/usr/lib/postgresql")  # <version>/bin under it
INSTALL_HINT = "install it with `apt-get install postgresql` (Debian, Ubuntu) or put its bin folder on PATH"


def bin_dir() -> Path:
    """The folder holding `postgres` and `initdb`: PATH first, then the newest `/usr/lib/postgresql/*/bin`."""
    found = shutil.which("postgres")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(DEBIAN_BINARIES.glob("*/bin"), key=lambda p: _version(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "postgres").exists() and (folder / "initdb").exists():
            return folder
    raise ServiceError(f"PostgreSQL is not installed (no `postgres` and `initdb` on PATH or under "
                       f"/usr/lib/postgresql/*/bin); {INSTALL_HINT}")


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None (this process's own) unless this process is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ServiceError(f"PostgreSQL refuses to run as root and there is no `{SERVER_USER}` user to run it as; "
                           f"create one (`useradd --system {SERVER_USER}`) or {INSTALL_HINT}") from None


def data_dir(folder: Path) -> Path:
    """Where the cluster of `folder` keeps its data (see the module docstring)."""
    account = server_account()
    folder = Path(folder).resolve()
    if account is None:
        return folder / "data"
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return Path(account.pw_dir) / "shelfcast" / key


@dataclass(frozen=True)
class Server:
    """How to reach a PostgreSQL server: `url` is `postgresql://USER:PASSWORD@HOST:PORT` (no database)."""

    url: str

    def database(self, name: str, driver: str = "") -> str:
        """The URL of database `name`, with a SQLAlchemy driver (`psycopg`, `asyncpg`) when given."""
        return postgres_database_url(self.url, name, driver)

    def ensure_databases(self, names) -> list[str]:
        """Create those of `names` that do not exist (C collation, so text time stamps sort in time order);
        returns the ones created."""
        import psycopg
        from psycopg import sql

        created = []
        with psycopg.connect(self.database("postgres"), autocommit=True, connect_timeout=10) as conn:
            for name in names:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                    continue
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' "
                                     "LC_CTYPE 'C'").format(sql.Identifier(name)))
                created.append(name)
        return created

    def accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.database("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


def _run_as(account: pwd.struct_passwd | None) -> dict:
    """`subprocess` arguments that run a child as `account` (with its group only), or as this process."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def init_cluster(folder: Path, binaries: Path) -> tuple[Path, str]:
    """Make the cluster of `folder` with `binaries` (`bin_dir`) unless it exists; returns (its data folder, the
    superuser's password)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "password"
    if not password_file.exists():
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    password = password_file.read_text().strip()
    data = data_dir(folder)
    if (data / "PG_VERSION").exists():
        return data, password
    account = server_account()
    data.parent.mkdir(parents=True, exist_ok=True)
    if account is not None:
        os.chown(data.parent, account.pw_uid, account.pw_gid)
    # initdb reads the password from a file its user can open: one beside the data folder, gone afterwards.
    pwfile = data.parent / f".{data.name}.pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    try:
        if account is not None:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        done = subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--no-locale", "-E", "UTF8"],
            capture_output=True, text=True, timeout=120, **_run_as(account),
        )
    finally:
        pwfile.unlink()
    if done.returncode != 0:
        raise ServiceError(f"initdb of {data} failed with code {done.returncode}:\n{done.stderr[-2000:]}")
    return data, password


def start_postgres(folder: Path, port: int, databases=(), timeout: float = 60.0,
                   settings: tuple[str, ...] = ()) -> Service:
    """Start the cluster of `folder` (made first when missing) on 127.0.0.1:`port`, wait until it takes
    connections, create `databases`. `settings` are extra `name=value` server settings (`-c`). The service's
    `urls["server"]` is the server's `postgresql://` URL, password included."""
    binaries = bin_dir()  # before anything is written: a machine without PostgreSQL is told so and keeps nothing
    data, password = init_cluster(folder, binaries)
    server = Server(f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}")
    argv = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories="]
    for setting in settings:
        argv += ["-c", setting]
    service = start_service("postgres", argv, Path(folder) / "postgres.log", healthy=server.accepts_connections,
                            timeout=timeout, urls={"server": server.url}, run_as=_run_as(server_account()))
    try:
        server.ensure_databases(databases)
    except BaseException:
        service.stop()
        raise
    return service
