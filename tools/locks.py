"""Write the hashed locks from pyproject.toml's extras at the versions the locks pin now.

    requirements.lock        the trainer: the base, `trainer` and `bench` extras
    requirements-test.lock   what the tests add on top of the trainer (`test` extra), nothing of the trainer again
    requirements-store.lock  a store device: the base and the `store` extra (no TensorFlow, Prefect or MLflow)

Every line is `name==version` with the sha256 of the distribution pip picks for the project's machines and CI
(Linux x86_64, CPython 3.11), so `pip install --require-hashes -r ...` installs exactly those files or nothing.
Versions come from the current locks (change a pin there, or in pyproject.toml, and run `make locks`); pip's own
resolver (`pip install --dry-run --report`) closes each set and reads the hashes from the package index.

    .venv/bin/python tools/locks.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"trainer": ROOT / "requirements.lock", "test": ROOT / "requirements-test.lock",
         "store": ROOT / "requirements-store.lock"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def current_pins() -> dict[str, str]:
    """Every `name==version` of the locks as they are (the versions to keep)."""
    pins: dict[str, str] = {}
    for path in LOCKS.values():
        if path.exists():
            for line in path.read_text().splitlines():
                if match := PIN.match(line.strip()):
                    pins[canonical(match[1])] = match[2]
    return pins


def requirements(*extras: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return found


def resolve(specs: list[str], pins: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """{canonical name: (name, version, sha256)} of everything `specs` install, pinned by `pins`."""
    with tempfile.TemporaryDirectory(prefix="shelfcast-locks-") as tmp:
        constraints, report = Path(tmp) / "pins.txt", Path(tmp) / "report.json"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--report", str(report), "-c", str(constraints), *specs],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"pip could not resolve {specs}: {done.stderr[-3000:]}")
        installs = json.loads(report.read_text())["install"]
    out = {}
    for item in installs:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise SystemExit(f"{name} {version}: the index gave no sha256 ({item['download_info'].get('url')})")
        out[canonical(name)] = (name, version, hashes["sha256"])
    return out


def render(title: str, packages: dict[str, tuple[str, str, str]]) -> str:
    lines = [f"# {title}", "# Written by tools/locks.py (`make locks`) for Linux x86_64, CPython 3.11; install with",
             "# `pip install --require-hashes -r` this file. Edit pins here or in pyproject.toml, then rerun it.", ""]
    for key in sorted(packages):
        name, version, sha256 = packages[key]
        lines.append(f"{canonical(name)}=={version} \\\n    --hash=sha256:{sha256}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a lock differs from what would be written")
    args = parser.parse_args(argv)
    pins = current_pins()
    trainer = resolve(requirements("trainer", "bench"), pins)
    everything = resolve(requirements("trainer", "bench", "test"), pins)
    changed = {k: (trainer[k][1], everything[k][1]) for k in trainer if everything[k][1] != trainer[k][1]}
    if changed:
        raise SystemExit(f"the test extra moves trainer pins {changed}: pin them in requirements.lock")
    test = {k: v for k, v in everything.items() if k not in trainer}
    store = resolve(requirements("store"), pins)
    texts = {"trainer": render("The trainer: shelfcast's base, trainer and bench extras.", trainer),
             "test": render("What the tests add on top of requirements.lock (install both).", test),
             "store": render("A store device: shelfcast[store] (install shelfcast itself with --no-deps).", store)}
    stale = [name for name, text in texts.items() if not LOCKS[name].exists() or LOCKS[name].read_text() != text]
    if args.check:
        print("locks up to date" if not stale else f"stale locks: {', '.join(str(LOCKS[n].name) for n in stale)}")
        return 1 if stale else 0
    for name, text in texts.items():
        LOCKS[name].write_text(text)
        print(f"{LOCKS[name].name}: {text.count('--hash=')} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
