"""Run leases: how the next run tells a killed run from one still running, and cleans up after it.

A run (an ingest, a night) holds a lease for its whole life: a JSON file under `<home>/runs/` that its process
keeps locked (`flock`). The kernel drops the lock when the process ends, however it ends (SIGKILL, OOM, a power
cut), and never while it lives, so a lease whose lock can be taken belongs to a run that is gone without
finishing: a clean end deletes its lease. `abandoned(home, kind)` hands such leases to the next run, which marks
the run crashed where it was recorded (Prefect, MLflow) and removes its work folder.

A lease is written under a temporary name, locked, then renamed into place, so nobody ever sees an unlocked
lease of a live run. Leases are per host (the home folder and the process are); a run on another host holds its
own. Two runs reaping at once both mark the same run crashed: marking is idempotent.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from shelfcast.contract import clock


def leases_dir(home: Path) -> Path:
    return Path(home) / "runs"


@dataclass
class Lease:
    """A held lease: `facts` is what the next run needs to clean up (run ids, the work folder)."""

    path: Path
    kind: str
    run_id: str
    facts: dict = field(default_factory=dict)
    _handle: object = field(default=None, repr=False)

    def update(self, **facts) -> None:
        """Record more facts (the MLflow run id once it exists); the lock stays held."""
        self.facts.update(facts)
        handle = self._handle
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(self.describe()))
        handle.flush()
        os.fsync(handle.fileno())

    def describe(self) -> dict:
        return {"kind": self.kind, "run_id": self.run_id, **self.facts}

    def release(self) -> None:
        """The run ended (well or with an error it recorded itself): nothing for the next run to clean."""
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)
        self._handle.close()
        self._handle = None

    def abandon(self) -> None:
        """The run ends without having recorded its end (the server it records to is down): leave the lease,
        unlocked, for the next run to mark it crashed."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold(home: Path, kind: str, run_id: str, **facts) -> Lease:
    """Take the lease of run `run_id` of `kind` (`ingest`, `night`) until `release()` or the process ends."""
    folder = leases_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{kind}-{_safe(run_id)}.json"
    temporary = folder / f".{final.name}.{uuid.uuid4().hex}"
    handle = open(temporary, "w+", encoding="utf-8")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    facts = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": clock.stamp(), **facts}
    lease = Lease(final, kind, run_id, facts, handle)
    lease.update()
    os.replace(temporary, final)  # the lock belongs to the open file, so it survives the rename
    return lease


def abandoned(home: Path, kind: str) -> Iterator[Lease]:
    """The leases of `kind` whose run is gone: each is yielded locked by this process, so no other reaper
    handles it meanwhile; call `release()` once its run is marked crashed and its folder removed (a lease not
    released stays for the next run to try again)."""
    folder = leases_dir(home)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"{kind}-*.json")):
        try:
            handle = open(path, "r+", encoding="utf-8")
        except FileNotFoundError:  # released or reaped meanwhile
            continue
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its run is alive
            handle.close()
            continue
        if not path.exists():  # reaped by another run between our open and our lock
            handle.close()
            continue
        try:
            info = json.loads(handle.read() or "{}")
        except json.JSONDecodeError:
            info = {}
        facts = {k: v for k, v in info.items() if k not in ("kind", "run_id")}
        yield Lease(path, kind, str(info.get("run_id", path.stem.removeprefix(f"{kind}-"))), facts, handle)


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id) or "run"
