"""The hashed locks: every pin carries a hash, the test lock adds only test packages, the store lock carries
nothing of the trainer, and the exact pins of pyproject.toml are the locked versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^([a-z0-9][a-z0-9-]*)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    entries = ENTRY.findall(text)
    pins = [line for line in text.splitlines() if "==" in line]
    assert len(entries) == len(pins), f"{name}: a pin without its sha256 hash"
    assert [e[0] for e in entries] == sorted(e[0] for e in entries), f"{name}: not sorted"
    return {package: version for package, version, _ in entries}


def test_the_test_lock_adds_only_what_the_tests_need():
    trainer, test = lock("requirements.lock"), lock("requirements-test.lock")
    assert not set(trainer) & set(test)
    assert {"pytest", "pytest-timeout", "moto", "import-linter"} <= set(test)
    assert not {"pytest", "moto", "import-linter", "pytest-timeout"} & set(trainer)
    assert {"tensorflow", "mlflow", "prefect", "tuf", "lightgbm"} <= set(trainer)


def test_the_store_lock_is_the_device_install_alone():
    trainer, store = lock("requirements.lock"), lock("requirements-store.lock")
    assert {"ai-edge-litert", "boto3", "numpy", "tuf"} <= set(store)
    assert not {"tensorflow", "mlflow", "prefect", "pandas", "typer", "rich", "keras"} & set(store)
    assert {package: trainer[package] for package in store if package in trainer} == {
        package: version for package, version in store.items() if package in trainer}  # one version each


def test_pyproject_pins_are_the_locked_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {**lock("requirements-test.lock"), **lock("requirements.lock")}
    extras = project["optional-dependencies"]
    for spec in project["dependencies"] + [s for extra in extras.values() for s in extra]:
        match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)$", spec)
        if match:
            assert locked[canonical(match[1])] == match[2], spec
