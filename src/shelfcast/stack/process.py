"""Start a local service as a child process, wait for it to be healthy, and stop exactly what was started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shelfcast.contract.errors import ServiceError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that are free right now (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when `url` answers with any HTTP status below 500 (an S3 403 counts as alive)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Service:
    """A started child process with its log file."""

    name: str
    process: subprocess.Popen
    log_path: Path
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        stop_pid(self.process.pid, timeout)
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """Stop a process group started by `start_service`: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, timeout / 2), (signal.SIGTERM, timeout / 2), (signal.SIGKILL, 2)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # A zombie child of this process still answers kill(0); reap it if it is ours.
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not _exists(pid):
                    return
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def start_service(
    name: str,
    argv: list[str],
    log_path: Path,
    healthy: Callable[[], bool],
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    urls: dict[str, str] | None = None,
    cwd: Path | None = None,
    run_as: dict | None = None,
) -> Service:
    """Start `argv` in its own process group (in `cwd`), logging to `log_path`, and wait until `healthy()`.
    `run_as` holds `subprocess.Popen`'s `user`, `group` and `extra_groups` for a child that must not run as root."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        cwd=cwd,
        **(run_as or {}),
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServiceError(f"{name} exited with code {process.returncode} while starting; log {log_path}:\n{tail}")
        if healthy():
            return Service(name, process, log_path, urls or {})
        time.sleep(0.25)
    stop_pid(process.pid)
    raise ServiceError(f"{name} was not healthy after {timeout:.0f}s; see {log_path}")
