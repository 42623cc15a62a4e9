"""The distribution as a user installs it: `pip install .` (not editable) carries the flows and the default
thresholds, and the console script works from another folder, with no source checkout on `sys.path`."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_every_package_the_flows_and_the_default_thresholds(shelfcast_wheel):
    names = set(zipfile.ZipFile(shelfcast_wheel).namelist())
    assert "shelfcast/monitor/thresholds.toml" in names
    assert {"shelfcast/flows/ingest.py", "shelfcast/flows/retrain.py", "shelfcast/flows/promote.py"} <= names
    packages = {str(p.parent.relative_to(ROOT / "src")) for p in (ROOT / "src").rglob("__init__.py")}
    missing = {p for p in packages if f"{p}/__init__.py" not in names}
    assert not missing, f"packages not listed in pyproject.toml [tool.setuptools] packages: {sorted(missing)}"


def test_a_plain_install_runs_from_another_folder(installed_shelfcast, tmp_path):
    """The wheel installed into a fresh virtual environment (see `installed_shelfcast`) imports from there, not
    from this checkout, and its console script works from another folder."""
    python, env_dir = installed_shelfcast
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [python, "-c", "import shelfcast, shelfcast.flows.retrain, shelfcast.flows.serve; print(shelfcast.__file__)"],
        cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert Path(probe.stdout.strip()).is_relative_to(env_dir), probe.stdout
    shown = subprocess.run([env_dir / "bin" / "shelfcast", "--help"], cwd=elsewhere, capture_output=True, text=True,
                           env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for command in ("run", "ingest", "retrain", "serve", "promote", "store"):
        assert command in shown.stdout
