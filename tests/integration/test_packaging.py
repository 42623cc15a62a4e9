"""The distribution as a user installs it: `pip install .` (not editable) carries the flows and the default
thresholds, and the console script works from another folder, with no source checkout on `sys.path`."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so no build output lands in the checkout)."""
    folder = tmp_path_factory.mktemp("wheel")
    project = folder / "project"
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    for tree in ("src", "flows"):
        shutil.copytree(ROOT / tree, project / tree, ignore=ignore)
    for name in ("pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, project / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--no-build-isolation", "-w", str(folder)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [built] = folder.glob("shelfcast-*.whl")
    return built


def test_the_wheel_carries_every_package_the_flows_and_the_default_thresholds(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "shelfcast/monitor/thresholds.toml" in names
    assert {"shelfcast/flows/ingest.py", "shelfcast/flows/retrain.py", "shelfcast/flows/promote.py"} <= names
    packages = {str(p.parent.relative_to(ROOT / "src")) for p in (ROOT / "src").rglob("__init__.py")}
    missing = {p for p in packages if f"{p}/__init__.py" not in names}
    assert not missing, f"packages not listed in pyproject.toml [tool.setuptools] packages: {sorted(missing)}"


def test_a_plain_install_runs_from_another_folder(wheel, tmp_path):
    """A fresh virtual environment sees this environment's dependencies (one `.pth` line: no editable finder,
    which lives in a `.pth` file of its own) and installs shelfcast from the wheel alone."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    target = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                          text=True).strip())
    (target / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
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
