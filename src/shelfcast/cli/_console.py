"""The console every command prints to, and the one way a command fails.

An error is one red line on stderr saying what is wrong and how to fix it, and exit code 1 (2 for a usage
error, as Click does). `shelfcast --debug ...` (or `SHELFCAST_DEBUG=1`) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator, NoReturn

import typer

USAGE_EXIT = 2


def debug_enabled() -> bool:
    return os.environ.get("SHELFCAST_DEBUG", "").lower() in ("1", "true", "yes")


def get_console(stderr: bool = False, width: int = 160):
    """Rich console, soft-wrapped so each message stays one greppable line. Piped output (make run | tee, CI
    logs) gets Rich's 80 columns by default, too narrow for the tables, hence `width` there."""
    from rich.console import Console

    shown = Console(stderr=stderr, soft_wrap=True)
    return shown if shown.is_terminal else Console(stderr=stderr, soft_wrap=True, width=width)


def error_line(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    from shelfcast.contract.errors import ShelfcastError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ShelfcastError):
        return text
    if any("Connect" in cls.__name__ for cls in type(exc).__mro__):  # boto3, requests, httpx, the builtin
        return (f"{text}: a server is not reachable; start the local stack with `shelfcast stack up` or point the "
                "SHELFCAST_*_URL settings at the servers you run")
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


@contextlib.contextmanager
def stderr_to(log_path: Path) -> Iterator[Path]:
    """Send this process's stderr (file descriptor 2, so TensorFlow's C++ start-up lines, absl, oneDNN, the
    logs of Prefect and MLflow, and every child process's stderr with them) to `log_path` inside the block.
    The console (stdout) keeps what shelfcast itself prints; an error after the block is one line on stderr."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield log_path
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def report(problem: BaseException | str) -> None:
    """Print `problem` as one red line on stderr."""
    get_console(stderr=True).print(f"[red]error:[/red] {error_line(problem)}", markup=True, highlight=False)


def fail(problem: BaseException | str, code: int = 1) -> NoReturn:
    """Inside a command: print `problem` as one red line and exit with `code`."""
    report(problem)
    raise typer.Exit(code)
