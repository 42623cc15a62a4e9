"""The architecture contracts of pyproject.toml ([tool.importlinter]): layers with no import running back up,
no cycles between packages, and a device and shared contract that load nothing of the trainer.

The distribution installs `flows/` as `shelfcast.flows`; the check runs on a copy of the sources laid out as
they are installed, so the flows are part of the graph."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300,
    )


def installed_layout(folder: Path) -> Path:
    shutil.copytree(ROOT / "src" / "shelfcast", folder / "shelfcast", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "flows", folder / "shelfcast" / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


def test_every_architecture_contract_is_kept(tmp_path):
    done = lint(installed_layout(tmp_path))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout or "broken" not in done.stdout.split("Contracts:")[-1], done.stdout[-2000:]


def test_the_contracts_catch_an_import_that_runs_back_up(tmp_path):
    tree = installed_layout(tmp_path)
    (tree / "shelfcast" / "contract" / "upward.py").write_text("import shelfcast.delivery.channels\n")
    (tree / "shelfcast" / "device" / "heavy.py").write_text("import pandas\n")
    done = lint(tree)
    assert done.returncode != 0
    assert "shelfcast.contract is not allowed to import shelfcast.delivery" in done.stdout, done.stdout[-3000:]
    assert "shelfcast.device.heavy -> pandas" in done.stdout, done.stdout[-3000:]
