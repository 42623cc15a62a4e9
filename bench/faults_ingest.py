"""Fault cases of ingest and the sales table, against a real SeaweedFS server started here (one bucket per case).

Each case is what an adversarial operator tried: two ingests of the same keys at once, the same file twice at
once, a kill -9 in the middle of a large file, S3 gone between the table commit and the ledger, out-of-range
and non-integer sales, a BOM, a header-only re-export of the history, a file full of new series, empty and
binary files, a 200 MB file and a daily file after it (the peak memory of each ingest process). `run(workdir)`
returns one {name, expected, observed, passed} per case.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd

TODAY = date(2020, 1, 1)


class Stack:
    """SeaweedFS on a free port, with the project's identities; `bucket(name)` points the settings at a new one."""

    def __init__(self, workdir: Path):
        from shelfcast.config import Settings
        from shelfcast.stack.local import identities
        from shelfcast.stack.process import free_port
        from shelfcast.stack.seaweedfs import start_seaweedfs

        self.port = free_port()
        os.environ["SHELFCAST_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{self.port}"
        os.environ["SHELFCAST_HOME"] = str(workdir / "home")
        self.data_dir = workdir / "weed"
        self.service = start_seaweedfs(self.data_dir, identities(Settings()), self.port)
        self.count = 0

    def bucket(self):
        from shelfcast import wiring
        from shelfcast.config import Settings
        from shelfcast.data.sales import SalesTable
        from shelfcast.stack.local import ensure_bucket

        self.count += 1
        os.environ["SHELFCAST_BUCKET"] = f"faults-{os.getpid()}-{self.count}"
        settings = Settings()
        ensure_bucket(settings)
        return settings, SalesTable(wiring.bucket(settings))

    def restart(self):
        from shelfcast.config import Settings
        from shelfcast.stack.local import identities
        from shelfcast.stack.seaweedfs import start_seaweedfs

        self.service = start_seaweedfs(self.data_dir, identities(Settings()), self.port)

    def stop(self):
        self.service.stop()


def case(name: str, expected: str, observed: str, passed: bool) -> dict:
    return {"name": name, "expected": expected, "observed": observed, "passed": bool(passed)}


def landing_of(settings):
    from shelfcast import wiring
    from shelfcast.data.ingest import open_landing

    return open_landing("landing/", wiring.bucket(settings))


def ingest(store, settings, **options):
    from shelfcast.data.ingest import IngestOptions, ingest_landing

    return ingest_landing(store, landing_of(settings), IngestOptions(today=TODAY, **options))


# ---- the cases -----------------------------------------------------------------------------------------------
def overlapping_ingests(stack: Stack, workdir: Path, rounds: int = 4) -> dict:
    from shelfcast.bench.overlap import run_together, settings_env
    from shelfcast.data.ingest import frame_to_csv
    from shelfcast.data.synthetic import generate_sales

    settings, store = stack.bucket()
    sales = generate_sales(stores=4, items=5, start="2017-05-01", end="2017-05-28", seed=21)
    days = sorted(sales["date"].unique())
    doubled, retried, accepted_twice = 0, 0, 0
    for round_ in range(rounds):
        part = sales[sales["date"].isin(days[round_ * 7:(round_ + 1) * 7])]
        other = part.assign(sales=part["sales"] + 1000 * (part.index % 2))
        folders = []
        for name, frame in (("hourly", part), ("manual", other)):
            folder = workdir / f"overlap-{round_}-{name}"
            folder.mkdir(parents=True)
            (folder / f"{name}-{round_}.csv").write_bytes(frame_to_csv(frame))
            folders.append(str(folder))
        reports = run_together(settings_env(), folders, TODAY)
        retried += sum(r["commit_attempts"] > 1 for r in reports)
        accepted_twice += int(all(r["rows_accepted"] > 0 for r in reports))
        doubled += len(store.verify()[1])
    rows_total, keys = store.verify()
    passed = doubled == 0 and accepted_twice == 0 and rows_total == len(sales) and retried > 0
    return case(
        f"two ingests of different files with the same keys, started together, {rounds} rounds",
        "every key committed once; the loser checks again against the new version (duplicates or rejects)",
        f"{rows_total} rows for {len(sales)} keys, {doubled} doubled, both files accepted rows in "
        f"{accepted_twice}/{rounds} rounds, {retried} commit(s) lost a race and were checked again", passed)


def same_file_twice(stack: Stack, workdir: Path, rounds: int = 3) -> dict:
    from shelfcast.bench.overlap import run_together, settings_env
    from shelfcast.data.ingest import frame_to_csv
    from shelfcast.data.synthetic import generate_sales

    settings, store = stack.bucket()
    sales = generate_sales(stores=2, items=3, start="2017-06-01", end="2017-06-10", seed=22)
    outcomes = []
    for round_ in range(rounds):
        part = sales[sales["date"].dt.day == round_ + 1]
        folders = []
        for copy in ("a", "b"):
            folder = workdir / f"same-{round_}-{copy}"
            folder.mkdir(parents=True)
            (folder / f"sales-{round_}.csv").write_bytes(frame_to_csv(part))
            folders.append(str(folder))
        outcomes.append(sorted(r["action"] for r in run_together(settings_env(), folders, TODAY)))
    rows_total, keys = store.verify()
    passed = all(o == ["ingested", "unchanged"] for o in outcomes) and not keys and rows_total == 6 * rounds
    return case(f"the same file ingested by two runs at once, {rounds} rounds",
                "one run ingests it, the other reports it unchanged; rows once",
                f"outcomes {outcomes}; {rows_total} rows, {len(keys)} doubled", passed)


KILLED_INGEST = """
import os, sys
from datetime import date
from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.data.ingest import IngestOptions, ingest_landing, open_landing
from shelfcast.data.sales import SalesTable
objects = wiring.bucket(Settings())
ingest_landing(SalesTable(objects), open_landing("landing/", objects), IngestOptions(today=date(2020, 1, 1),
               max_file_bytes=10**9))
"""


def killed_mid_file(stack: Stack, workdir: Path) -> dict:
    """kill -9 of a real ingest process at several moments of a large file, then a rerun."""
    from shelfcast.data.ingest import deliver_days, deliver_range
    from shelfcast.data.synthetic import generate_sales

    settings, store = stack.bucket()
    sales = generate_sales(stores=10, items=50, start="2016-01-01", end="2016-12-31", seed=23)
    landing = landing_of(settings)
    deliver_range(landing, sales, "2016-01-01", "2016-12-29", kind="history")
    deliver_days(landing, sales, sorted(sales["date"].unique())[-2:])
    delays, kills = [0.4, 0.7, 1.0, 1.3, 1.6, 2.0, 2.5], 0  # the ingest takes about 2 s after a 1 s start
    for delay in delays:
        child = subprocess.Popen([sys.executable, "-c", KILLED_INGEST], env=os.environ.copy(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.wait()
    ingest(store, settings, max_file_bytes=10**9)
    rows_total, keys = store.verify()
    loaded = store.load()
    same = len(loaded) == len(sales) and (loaded["sales"].to_numpy() ==
                                          sales.sort_values(["store", "item", "date"])["sales"].to_numpy()).all()
    pending = ingest(store, settings, max_file_bytes=10**9)
    return case(f"kill -9 of an ingest of {len(sales):,} rows, {len(delays)} times at different moments, then a rerun",
                "after the rerun every row exactly once, nothing pending",
                f"{kills} kill(s); {rows_total:,} rows for {len(sales):,} keys, {len(keys)} doubled, values equal: "
                f"{bool(same)}, pending after: {len(pending)}", kills > 0 and same and not keys and not pending)


def s3_gone_before_ledger(stack: Stack, workdir: Path) -> dict:
    """The server stops after a file's rows reached the table and before its ledger entry (real server, stopped
    from an object-store wrapper at that exact request)."""
    from shelfcast import wiring
    from shelfcast.data.ingest import IngestOptions, deliver_days, ingest_landing
    from shelfcast.contract.objects import ObjectStore
    from shelfcast.data.sales import SalesTable
    from shelfcast.data.synthetic import generate_sales

    settings, store = stack.bucket()
    sales = generate_sales(stores=2, items=3, start="2017-03-01", end="2017-03-05", seed=24)
    deliver_days(landing_of(settings), sales, sorted(sales["date"].unique()))
    service = stack.service

    class StopAtLedger(ObjectStore):
        def put_if_absent(self, key, body, content_type="application/octet-stream"):
            if key.startswith("ledger/") and service.alive():
                service.stop()
            return super().put_if_absent(key, body, content_type)

    objects = wiring.bucket(settings)
    failed = ""
    try:
        ingest_landing(SalesTable(StopAtLedger(objects.client, objects.bucket, attempts=1)), landing_of(settings),
                       IngestOptions(today=TODAY))
    except Exception as exc:  # noqa: BLE001 - the outage is the point
        failed = type(exc).__name__
    stack.restart()
    reports = ingest(store, settings)
    rows_total, keys = store.verify()
    first_version = reports[0].table_version if reports else -1
    passed = failed and rows_total == len(sales) and not keys and len(store.ledger_history()) == 5
    return case("S3 stops between a file's table commit and its ledger entry, then a rerun",
                "the first run fails; the rerun finds the rows committed, writes only the entry; nothing twice",
                f"first run: {failed or 'no error'}; rerun: {[r.action for r in reports]}, first file at table "
                f"version {first_version}; {rows_total} rows for {len(sales)} keys, {len(keys)} doubled", passed)


def hostile_values(stack: Stack, workdir: Path) -> dict:
    settings, store = stack.bucket()
    landing_of(settings).deliver("sales-2017-01-02.csv", (
        "date,store,item,sales\n2017-01-02,1,1,9223372036854775808\n2017-01-02,1,2,99999999999999999999\n"
        "2017-01-02,1,3,1e12\n2017-01-02,1,4,7\n").encode())
    (report,) = ingest(store, settings)
    rejected = pd.read_csv(io.BytesIO(store.objects.get(report.quarantine[0]).body))
    reasons = dict(zip(rejected["line"], rejected["reason"]))
    stored = store.load()["sales"].tolist()
    passed = (stored == [7] and "plausible maximum" in reasons.get(2, "") and "plausible maximum" in reasons.get(3, "")
              and "not a whole number" in reasons.get(4, "") and set(rejected["source"]) == {report.name})
    return case("sales 9223372036854775808, 99999999999999999999 and 1e12 in a daily file",
                "each row rejected with file, line and the fix; only the valid row stored, exactly",
                f"stored {stored}; line 2: {reasons.get(2, '')[:70]}...; line 4: {reasons.get(4, '')[:60]}...",
                passed)


def bom_file(stack: Stack, workdir: Path) -> dict:
    settings, store = stack.bucket()
    landing_of(settings).deliver("excel.csv", b"\xef\xbb\xbfdate,store,item,sales\r\n2017-01-02,1,1,5\r\n")
    (report,) = ingest(store, settings)
    return case("a UTF-8 CSV with a byte order mark (Excel's export)", "ingested like any other file",
                f"{report.action}, {report.rows_accepted} row(s) accepted {report.error}",
                report.action == "ingested" and report.rows_accepted == 1)


def header_only_reexport(stack: Stack, workdir: Path) -> dict:
    from shelfcast.data.ingest import IngestOptions, approve, deliver_range, restore
    from shelfcast.data.synthetic import generate_sales

    settings, store = stack.bucket()
    sales = generate_sales(stores=3, items=4, start="2016-01-01", end="2017-12-31", seed=25)
    landing = landing_of(settings)
    key = deliver_range(landing, sales, "2016-01-01", "2017-12-31", kind="history")
    name = key.removeprefix("landing/")
    ingest(store, settings)
    landing.deliver(name, b"date,store,item,sales\n")
    (held,) = ingest(store, settings)
    kept = len(store.load())
    approved = approve(store, name, "ops", "testing the hold", IngestOptions(today=TODAY))
    emptied = len(store.load())
    entry = store.ledger_history()[-1]
    restored = restore(store, name, 1, "ops", "the re-export was broken", IngestOptions(today=TODAY))
    back = len(store.load())
    passed = (held.action == "held" and kept == len(sales) and emptied == 0 and entry.approved_by == "ops"
              and restored.action == "restored" and back == len(sales))
    return case(f"a header-only re-export of the ingested {len(sales):,}-row history under its name",
                "held in the quarantine, history untouched; `approve` records who and why; `restore` brings it back",
                f"{held.action}; rows kept {kept:,}; after approval by {entry.approved_by!r}: {emptied}; after "
                f"restore: {back:,}", passed)


def too_many_series(stack: Stack, workdir: Path) -> dict:
    settings, store = stack.bucket()
    landing = landing_of(settings)
    landing.deliver("a.csv", b"date,store,item,sales\n2017-01-02,1,1,5\n")
    ingest(store, settings)
    catalog, etag = store.catalog()
    store.save_catalog(catalog.with_ids(range(1, 101), range(1, 101)), etag)
    wide = pd.DataFrame([(s, i) for s in range(1, 101) for i in range(1, 101)], columns=["store", "item"])
    landing.deliver("wide.csv", wide.assign(date="2017-01-03", sales=1)[["date", "store", "item", "sales"]]
                    .to_csv(index=False).encode())
    (report,) = ingest(store, settings, max_new_series=1000)
    series = len(store.known_series())
    return case("a file that would add 9,999 new series (limit 1,000)", "held with the reason; catalogue unchanged",
                f"{report.action}: {report.error[:90]}...; catalogue {series} series",
                report.action == "held" and series == 1)


def empty_and_binary(stack: Stack, workdir: Path) -> dict:
    settings, store = stack.bucket()
    landing = landing_of(settings)
    landing.deliver("empty.csv", b"")
    landing.deliver("binary.csv", bytes(range(256)) * 64)
    reports = {r.name: r for r in ingest(store, settings)}
    passed = all(r.action == "quarantined" for r in reports.values()) and store.verify()[0] == 0
    return case("an empty file and a binary file", "both quarantined with a reason, nothing stored",
                "; ".join(f"{n}: {r.error[:60]}" for n, r in reports.items()), passed)


MEASURED_INGEST = """
import json
from datetime import date
from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.data.ingest import IngestOptions, ingest_landing, open_landing
from shelfcast.data.sales import SalesTable
objects = wiring.bucket(Settings())
reports = ingest_landing(SalesTable(objects), open_landing("landing/", objects),
                         IngestOptions(today=date(2030, 1, 1), max_file_bytes=10**9, max_new_series=10**6))
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0] / 1024
print(json.dumps({"actions": [r.action for r in reports], "rows": sum(r.rows_accepted for r in reports),
                  "peak_rss_mb": peak}))
"""


def huge_file(stack: Stack, workdir: Path, mb: int = 200, limit_mb: int = 600) -> dict:
    """A history file of about 200 MB (under the 256 MB limit) ingested by a real process from the bucket, then a
    small daily file on top of it: each process's peak resident memory (the issue measured 6.2 GB, then 17 GB)."""
    import json

    import numpy as np
    from ingest_scale import csv_bytes, sized_file

    settings, store = stack.bucket()
    source = workdir / "huge.csv"
    rows = sized_file(source, mb)
    landing = landing_of(settings)
    landing.objects.upload(source, "landing/history.csv")
    last_day = np.datetime64("2000-01-01").astype(int) + rows // 2500 - 1  # sized_file: 2,500 rows a day
    runs = []
    for step in range(2):
        if step == 1:  # the next day of the same 2,500 series
            landing.deliver("sales-next.csv", csv_bytes(np.array([last_day + 1]), np.arange(1, 51), np.arange(1, 51),
                                                        seed=1))
        done = subprocess.run([sys.executable, "-c", MEASURED_INGEST], env=os.environ.copy(), capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1])
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    total, doubled = store.verify()
    peaks = [r["peak_rss_mb"] for r in runs]
    return case(f"a {source.stat().st_size / 1e6:.0f} MB history file ({rows:,} rows), then a daily file on top",
                f"both ingested, rows once, each process's peak RSS <= {limit_mb} MB",
                f"{runs[0]['actions']} then {runs[1]['actions']}; {total:,} rows, {len(doubled)} doubled; peak "
                f"{peaks[0]:.0f} MB, then {peaks[1]:.0f} MB",
                runs[0]["actions"] == ["ingested"] and runs[1]["actions"] == ["ingested"]
                and total == rows + 2500 and not doubled and max(peaks) <= limit_mb)


CASES = [overlapping_ingests, same_file_twice, killed_mid_file, s3_gone_before_ledger, hostile_values, bom_file,
         header_only_reexport, too_many_series, empty_and_binary, huge_file]


def run(workdir: Path) -> list[dict]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("SHELFCAST_")}
    stack = Stack(workdir)
    results = []
    try:
        for fn in CASES:
            try:
                results.append(fn(stack, workdir))
            except Exception as exc:  # noqa: BLE001 - a case that crashes is a failed case, with its error
                results.append(case(fn.__name__.replace("_", " "), "the case runs", f"{type(exc).__name__}: {exc}"[:400],
                                    False))
            if not stack.service.alive():
                stack.restart()
    finally:
        stack.stop()
        for key in [k for k in os.environ if k.startswith("SHELFCAST_")]:
            os.environ.pop(key)
        os.environ.update(saved)
    return results
