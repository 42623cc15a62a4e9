"""The Prefect server (API and UI) as a local child process bound to 127.0.0.1, on its own SQLite database or
on a PostgreSQL database (through asyncpg).

`PREFECT_HOME` is the server's own folder, so it never touches a user's Prefect profile or another server's
database.
"""

from __future__ import annotations

import sys
from pathlib import Path

from shelfcast.stack.process import Service, http_ok, start_service


def prefect_env(home: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    """The server's environment, on `database_url` (`postgresql+asyncpg://...`) or `<home>/prefect.db`. The UI
    learns its API address from `PREFECT_UI_API_URL`; without it, the UI of a server on another port than 4200
    lists whatever server answers on 4200."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_UI_ENABLED": "true",
    }


def start_prefect_server(home: Path, port: int, timeout: float = 120.0, database_url: str | None = None) -> Service:
    """Start `prefect server start` on 127.0.0.1:`port` (on `database_url`, see `prefect_env`) and wait until
    `/api/health` answers."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
            "--analytics-off", "--no-background"]
    base = f"http://127.0.0.1:{port}"
    return start_service(
        "prefect",
        argv,
        home / "prefect-server.log",
        healthy=lambda: http_ok(f"{base}/api/health", timeout=2.0),
        env=prefect_env(home, port, database_url),
        timeout=timeout,
        urls={"ui": base, "api": f"{base}/api"},
    )
