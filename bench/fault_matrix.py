"""Every fault case of every area against the real stack: runs each `bench/faults_<area>.py` it finds and writes
`bench/results/faults.json`, a list of {name, expected, observed, passed}; the README table is rendered from it.

Each module defines `run(workdir: pathlib.Path) -> list[dict]` and starts (and stops) whatever real servers its
cases need. A module that raises counts as one failed case naming the error, so nothing is skipped silently.

    .venv/bin/python bench/fault_matrix.py [--only ingest] [--out bench/results/faults.json]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def areas(only: list[str] | None = None) -> list[str]:
    names = sorted(path.stem.removeprefix("faults_") for path in HERE.glob("faults_*.py"))
    return [name for name in names if not only or name in only]


def run_area(area: str, workdir: Path) -> list[dict]:
    """The cases of one area, each tagged with it; a crash of the module is a failed case of its own."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"faults_{area}")  # by name, so its worker processes can import it too
        cases = module.run(workdir)
    except Exception as exc:  # noqa: BLE001 - one broken area must not hide the others' results
        traceback.print_exc()
        cases = [{"name": f"{area}: the fault module runs", "expected": "run() returns its cases",
                  "observed": f"{type(exc).__name__}: {exc}"[:400], "passed": False}]
    for case in cases:
        case["passed"] = bool(case["passed"])
        print(f"[{'pass' if case['passed'] else 'FAIL'}] {case['name']}: {case['observed']}", flush=True)
    print(f"{area}: {sum(c['passed'] for c in cases)}/{len(cases)} passed in {time.perf_counter() - started:.0f}s")
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="an area (faults_<area>.py); repeatable")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "faults.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from shelfcast.bench.readme import write_result

    cases = []
    with tempfile.TemporaryDirectory(prefix="shelfcast-faults-") as tmp:
        for area in areas(args.only):
            workdir = Path(tmp) / area
            workdir.mkdir()
            cases += run_area(area, workdir)
    write_result(args.out, cases)
    failed = [c["name"] for c in cases if not c["passed"]]
    print(f"{len(cases) - len(failed)}/{len(cases)} cases passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
