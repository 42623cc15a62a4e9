"""The store side installs as `shelfcast[store]` (numpy, boto3, ai-edge-litert): its modules and the `shelfcast
store` command must never import the trainer's stack. Each check runs a fresh interpreter in which importing
any trainer package raises."""

import subprocess
import sys

import pytest

from shelfcast.device import TRAINER_ONLY_PACKAGES

pytestmark = pytest.mark.unit

# Prepended to every child: a meta-path finder that refuses the trainer's packages, and a check at exit that none
# of them was loaded some other way (e.g. by a .pth file at start-up).
BLOCKER = f"""
import atexit, importlib.abc, sys
BLOCKED = {TRAINER_ONLY_PACKAGES!r}
class RefuseTrainerPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the store side imported {{name}}, which shelfcast[store] does not install")
sys.meta_path.insert(0, RefuseTrainerPackages())
def _check():
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
    if loaded:
        print("LOADED:", loaded, file=sys.stderr)
        sys.stderr.flush()
        import os
        os._exit(3)
atexit.register(_check)
"""

def store_modules() -> list[str]:
    """Every module of the two packages a store installs: the device app and the contract it shares."""
    import pkgutil

    import shelfcast.contract
    import shelfcast.device

    return sorted(f"{package.__name__}.{info.name}" for package in (shelfcast.device, shelfcast.contract)
                  for info in pkgutil.iter_modules(package.__path__) if info.name != "__main__")


STORE_MODULES = store_modules()


def run_store(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=timeout)


def run_store_command(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`shelfcast store ...` through the console script's entry point, with the trainer packages refused."""
    import os

    code = f"import sys\nfrom shelfcast.cli import main\nsys.argv = ['shelfcast', *{args!r}]\nmain()\n"
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_the_blocker_does_block():
    result = run_store("import pandas\n")
    assert result.returncode != 0 and "the store side imported pandas" in result.stderr


def test_store_modules_import_without_the_trainer_stack():
    assert {"shelfcast.device.sync", "shelfcast.device.trust", "shelfcast.contract.clock"} <= set(STORE_MODULES)
    result = run_store("".join(f"import {m}\n" for m in STORE_MODULES) + "print('ok')\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_store_command_runs_without_the_trainer_stack(tmp_path):
    help_text = run_store_command(["store", "sync", "--help"])
    assert help_text.returncode == 0, help_text.stderr[-3000:]
    assert "--every" in help_text.stdout and "--store-id" in help_text.stdout

    (tmp_path / "recent.csv").write_text("date,store,item,sales\n2018-01-01,1,1,5\n")
    empty = run_store_command(["store", "predict", "--dir", str(tmp_path / "none"), "--sales", str(tmp_path / "recent.csv")])
    assert empty.returncode == 2 and "holds no model yet; run `shelfcast store sync" in empty.stderr, empty.stderr


def test_forecasting_does_not_load_the_signature_checks():
    """`shelfcast store predict` runs on every forecast: tuf and cryptography load only when a sync runs."""
    result = run_store("import sys\nimport shelfcast.device.forecast, shelfcast.device.sync, shelfcast.device.cli\n"
                       "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tuf', 'securesystemslib', "
                       "'cryptography')))\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
