"""Mutation testing of the protocol modules: how many small breaks of the code the fast tests notice.

mutmut (configured in pyproject.toml's `[tool.mutmut]`) copies `src/shelfcast` into `mutants/`, writes every
mutant of the five protocol modules there (an operator, a constant, a string, a call argument changed), and runs
the selected tests that cover each mutated function against it. A mutant is killed when a test fails, survives when
they all pass, and has no tests when no selected test runs its function (a survivor too: nothing would notice).
A mutant's unit tests run before its integration tests (tests/conftest.py orders them so under mutmut), so most
mutants are killed before a server starts.

    module     file                                 tests
    manifest   src/shelfcast/contract/manifest.py   tests/unit/contract/test_manifest.py
    channels   src/shelfcast/delivery/channels.py   tests/unit/delivery/test_channels.py, test_rollback.py
    client     src/shelfcast/device/sync.py         tests/unit/device/test_sync.py, and against a SeaweedFS server
                                                    tests/integration/device/test_sync_protocol.py, test_sync.py
    selection  src/shelfcast/delivery/selection.py  tests/unit/delivery/test_selection.py
    ingest     src/shelfcast/data/ingest.py         tests/unit/data/test_ingest.py

The score of a module is (killed + timed out) / (mutants - equivalent): a mutant that behaves exactly like the
code (`x or ""` when x is never empty, say) cannot be killed by any test, and is excluded once its reason is
written in `bench/mutation_equivalent.toml` (keyed by mutant name). Every surviving mutant is listed in the
result with its diff line and that reason, or `not-equivalent` when it is a gap the tests leave open (followed
by why, when the file says it with `equivalent = false`).

    nice -n 10 .venv/bin/python bench/mutation.py [--max-children 2] [--out bench/results/mutation.json]
        [--modules client ...]

`--modules` mutates only those modules; the others keep the counts of the run that measured them (each module
says which command measured it), so a change to one module is measured again without the hour the whole set
takes. Measure them all again when their tests change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shelfcast.bench.readme import write_result  # noqa: E402

MODULES = {
    "manifest": "src/shelfcast/contract/manifest.py",
    "channels": "src/shelfcast/delivery/channels.py",
    "client": "src/shelfcast/device/sync.py",
    "selection": "src/shelfcast/delivery/selection.py",
    "ingest": "src/shelfcast/data/ingest.py",
}
EQUIVALENT = ROOT / "bench" / "mutation_equivalent.toml"
TARGET_PCT = 85.0
# mutmut's exit codes of a mutant's test run (mutmut.stats.status_by_exit_code), folded into the four counts.
KILLED, SURVIVED, NO_TESTS = {1, 3}, {0}, {33, 5}
TIMEOUT = {36, -24, 24, 152, 255}


def mutant_pattern(path: str) -> str:
    """mutmut's name pattern for every mutant of a source file: `src/shelfcast/device/sync.py` ->
    `shelfcast.device.sync.*`."""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".") + ".*"


def run_mutmut(max_children: int, log: Path, labels: list[str]) -> float:
    """A fresh mutmut run (its cache in `mutants/` removed first) over the mutants of `labels`; returns its wall
    seconds. The session fixtures that build the same bytes every time keep them in `mutants/test-cache`."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    log.parent.mkdir()
    patterns = [] if set(labels) == set(MODULES) else [mutant_pattern(MODULES[label]) for label in labels]
    env = {**os.environ, "SHELFCAST_TEST_CACHE": str(log.parent / "test-cache")}
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children),
                               *patterns], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mutmut run failed ({done.returncode}); its output is in {log}")
    return seconds


def mutant_diff(name: str, path: str) -> tuple[str, str]:
    """The original line and the mutated line of a mutant (the first changed pair of its function's diff)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(ROOT)  # mutmut reads `mutants/<path>` relative to the working directory
    try:
        diff = get_diff_for_mutant(name, path=path).splitlines()
    finally:
        os.chdir(cwd)
    removed = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    return (removed[0] if removed else ""), (added[0] if added else "")


def status(exit_code) -> str:
    if exit_code in KILLED:
        return "killed"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in NO_TESTS:
        return "no tests"
    if exit_code in TIMEOUT:
        return "timeout"
    return "not checked" if exit_code is None else f"exit {exit_code}"


def summarise(reasons: dict[str, dict], labels: list[str]) -> tuple[list[dict], list[dict]]:
    """Per module of `labels`: its counts and score; and every surviving mutant with its diff line and reason
    (`reasons`: the entries of `bench/mutation_equivalent.toml`)."""
    modules, survivors = [], []
    for label in labels:
        path = MODULES[label]
        meta = json.loads((ROOT / "mutants" / f"{path}.meta").read_text())
        statuses = {name: status(code) for name, code in meta["exit_code_by_key"].items()}
        counts = {s: sum(v == s for v in statuses.values())
                  for s in ("killed", "survived", "no tests", "timeout", "not checked")}
        unexpected = {s for s in statuses.values() if s not in counts}
        if unexpected:
            raise SystemExit(f"{path}: mutants ended as {sorted(unexpected)}; see `mutmut results`")
        equivalent = 0
        for name, state in sorted(statuses.items()):
            if state not in ("survived", "no tests"):
                continue
            original, mutated = mutant_diff(name, path)
            entry = reasons.get(name, {"equivalent": False})
            is_equivalent = entry.get("equivalent", True)
            equivalent += is_equivalent
            gap = f"not-equivalent: {entry['reason']}" if "reason" in entry else "not-equivalent"
            survivors.append({"module": label, "mutant": name, "status": state, "original": original,
                              "mutated": mutated, "equivalent": is_equivalent,
                              "reason": entry["reason"] if is_equivalent else gap})
        total, detected = len(statuses), counts["killed"] + counts["timeout"]
        modules.append({"module": label, "file": path, "mutants": total, "killed": counts["killed"],
                        "survived": counts["survived"], "no_tests": counts["no tests"],
                        "timeout": counts["timeout"], "not_checked": counts["not checked"],
                        "equivalent": equivalent,
                        "score_pct": round(100 * detected / max(1, total - equivalent), 1)})
    return modules, survivors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at a time")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mutation.json")
    parser.add_argument("--report-only", action="store_true",
                        help="summarise the results already in mutants/ without running mutmut again")
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), metavar="MODULE",
                        help=f"mutate only these ({', '.join(MODULES)}); the others keep their counts from --out")
    args = parser.parse_args(argv)
    labels = [label for label in MODULES if label in (args.modules or MODULES)]
    previous = json.loads(args.out.read_text()) if args.out.exists() else None
    if args.modules and (previous is None or {m["module"] for m in previous["modules"]} != set(MODULES)):
        raise SystemExit(f"--modules needs a whole earlier result in {args.out}: run without --modules first")

    command = "nice -n 10 .venv/bin/python bench/mutation.py" + (
        f" --max-children {args.max_children}" if args.max_children != 2 else "") + (
        f" --modules {' '.join(labels)}" if args.modules else "")
    if args.report_only:
        seconds = previous["wall_seconds"] if previous else None
    else:
        seconds = run_mutmut(args.max_children, ROOT / "mutants" / "mutmut-run.log", labels)
    reasons = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    measured, survivors = summarise(reasons, labels)
    for module in measured:
        module["measured_by"] = command
        module["wall_seconds"] = None if seconds is None else round(seconds, 1)
    kept = [] if not args.modules else [
        {"measured_by": previous["command"], "wall_seconds": previous["wall_seconds"], **m}
        for m in previous["modules"] if m["module"] not in labels]
    if args.modules:
        survivors += [s for s in previous["survivors"] if s["module"] not in labels]
    by_label = {m["module"]: m for m in measured + kept}
    modules = [by_label[label] for label in MODULES]
    survivors.sort(key=lambda s: (list(MODULES).index(s["module"]), s["mutant"]))
    stale = sorted(set(reasons) - {s["mutant"] for s in survivors})
    total = sum(m["mutants"] for m in modules)
    detected = sum(m["killed"] + m["timeout"] for m in modules)
    equivalent = sum(m["equivalent"] for m in modules)
    tests = subprocess.run([sys.executable, "-c", "import tomllib; print(' '.join(tomllib.load(open("
                            "'pyproject.toml', 'rb'))['tool']['mutmut']['pytest_add_cli_args_test_selection']))"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    doc = {
        "command": command,
        "tool": f"mutmut {metadata.version('mutmut')}",
        "tests": tests,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "max_children": args.max_children,
        "wall_seconds": None if seconds is None else round(seconds, 1),
        "target_pct": TARGET_PCT,
        "mutants": total,
        "killed": sum(m["killed"] for m in modules),
        "timeout": sum(m["timeout"] for m in modules),
        "survived": sum(m["survived"] for m in modules),
        "no_tests": sum(m["no_tests"] for m in modules),
        "not_checked": sum(m["not_checked"] for m in modules),  # an interrupted run: counted as not detected
        "equivalent": equivalent,
        "score_pct": round(100 * detected / max(1, total - equivalent), 1),
        "modules": modules,
        "survivors": survivors,
        "stale_equivalent_reasons": stale,
    }
    write_result(args.out, doc)
    for m in modules:
        print(f"{m['module']:10s} {m['score_pct']:5.1f}%  {m['killed']} killed, {m['survived']} survived, "
              f"{m['no_tests']} without tests, {m['timeout']} timeouts, {m['equivalent']} equivalent "
              f"of {m['mutants']}")
    print(f"overall    {doc['score_pct']:5.1f}% (target {TARGET_PCT:.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
