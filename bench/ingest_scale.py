"""How ingest and the nightly load scale, the sales table against the store it replaced, in one run.

Three measures, each arm in a fresh interpreter that reports its own peak resident memory (VmHWM):

1. files:         rows per second and peak memory ingesting one file of 5, 50 and 200 MB into an empty store;
2. one_more_file: seconds to ingest one more small daily file after 10, 1,000 and 10,000 files;
3. load:          seconds and peak memory of a 365-day load of 500, 5,000 and 20,000 series, with the bytes of
                  the frame returned and the interpreter's resident memory just before the load.

The reference arm is the Parquet-by-date store of commit fef7c37, read from git history into a temporary
package (`shelfcast_reference`, see `shelfcast.bench.reference`) at the start of the run. Stores are local folders (`LocalObjects`, the same
code path as S3 without the network). Histories are built directly in the state the ingests would leave,
instead of by ingesting thousands of files one by one (see `history_built` in the JSON): for the sales table
one commit holding every file's rows and its two application transactions followed by a checkpoint (what the
nightly compaction leaves), a ledger entry per file and every file in the archive (the landing empty); for the
reference the landing folder with every file, one Parquet part and one ledger entry per file and the catalogue
JSON.

    nice -n 10 .venv/bin/python bench/ingest_scale.py [--quick] [--out bench/results/ingest_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shelfcast.bench.reference import REFERENCE_COMMIT, write_reference  # noqa: E402
TODAY = "2030-01-01"
ARMS = ("sales table", "reference")


# ---- the reference arm ---------------------------------------------------------------------------------------
def modules(arm: str):
    """(ingest module, store class) of an arm."""
    if arm == "reference":
        from shelfcast_reference import ingest, sales

        return ingest, sales.SalesStore
    from shelfcast.data import ingest, sales

    return ingest, sales.SalesTable


# ---- data ----------------------------------------------------------------------------------------------------
def csv_bytes(days: np.ndarray, stores: np.ndarray, items: np.ndarray, seed: int) -> bytes:
    """`date,store,item,sales` text for every (day, store, item) of the grids given."""
    day, store, item = (a.ravel() for a in np.meshgrid(days, stores, items, indexing="ij"))
    sales = np.random.default_rng(seed).integers(0, 200, len(day))
    dates = pd.to_datetime(day, unit="D").strftime("%Y-%m-%d").to_numpy()
    body = "\n".join(f"{d},{s},{i},{v}" for d, s, i, v in zip(dates, store, item, sales))
    return ("date,store,item,sales\n" + body + "\n").encode()


def sized_file(path: Path, mb: int) -> int:
    """A history file of about `mb` MB (50 stores x 50 items, as many days as it takes); returns its rows."""
    per_day = 50 * 50
    days = max(1, int(mb * 1e6 / (per_day * 19.5)))
    start = np.datetime64("2000-01-01").astype(int)
    with open(path, "wb") as out:
        out.write(b"date,store,item,sales\n")
        for first in range(0, days, 200):
            chunk = np.arange(start + first, start + min(days, first + 200))
            out.write(csv_bytes(chunk, np.arange(1, 51), np.arange(1, 51), seed=first).split(b"\n", 1)[1])
    return days * per_day


# ---- children: one measurement each ------------------------------------------------------------------------
def child_ingest(arm: str, landing: str, bucket: str) -> dict:
    from datetime import date

    from shelfcast.contract.objects import LocalObjects

    import deltalake  # noqa: F401 - imported before the clock starts in both arms, like pandas and boto3
    import pyarrow.csv  # noqa: F401
    import pyarrow.dataset  # noqa: F401

    ingest, Store = modules(arm)
    options = ingest.IngestOptions(today=date.fromisoformat(TODAY), max_file_bytes=10**10)
    if arm != "reference":
        options.max_new_series = 10**9
    store = Store(LocalObjects(bucket))
    started = time.perf_counter()
    reports = ingest.ingest_landing(store, ingest.Landing(LocalObjects(landing)), options)
    seconds = time.perf_counter() - started
    assert all(r.action == "ingested" for r in reports), [(r.action, r.error) for r in reports]
    return {"seconds": seconds, "rows": sum(r.rows_accepted for r in reports), "files": len(reports)}


def child_load(arm: str, bucket: str, start: str, end: str) -> dict:
    from datetime import date

    from shelfcast.contract.objects import LocalObjects

    import deltalake  # noqa: F401 - loaded before the baseline is taken, in both arms
    import pyarrow.dataset  # noqa: F401

    _, Store = modules(arm)
    store = Store(LocalObjects(bucket))
    before = vm("VmRSS")
    started = time.perf_counter()
    frame = store.load(date.fromisoformat(start), date.fromisoformat(end))
    return {"seconds": time.perf_counter() - started, "rows": len(frame), "baseline_rss_mb": before,
            "frame_mb": frame.memory_usage(deep=True, index=False).sum() / 1e6}


def vm(field: str) -> float:
    return [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":")][0] / 1024


def run_child(reference_dir: Path, name: str, **kwargs) -> dict:
    """Run `child_<name>(**kwargs)` in a fresh interpreter; its result plus its peak resident memory."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(reference_dir), str(ROOT / "src")]))
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import ingest_scale as b; "
            f"r = b.child_{name}(**json.loads(sys.argv[1])); r['peak_rss_mb'] = b.vm('VmHWM'); print(json.dumps(r))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"child {name} {kwargs} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- building histories ------------------------------------------------------------------------------------
def daily_history(files: int) -> list[tuple[str, bytes]]:
    """`files` daily files of 10 items each: store s's file of day d is `store-SSSS-DAY.csv` (100 stores a day)."""
    out = []
    start = np.datetime64("2010-01-01").astype(int)
    for n in range(files):
        day, store = start + n // 100, 1 + n % 100
        name = f"store-{store:04d}-{pd.Timestamp(day, unit='D'):%Y-%m-%d}.csv"
        out.append((name, csv_bytes(np.array([day]), np.array([store]), np.arange(1, 11), seed=n)))
    return out


def build_history(arm: str, files: list[tuple[str, bytes]], landing: Path, bucket: Path) -> None:
    """The state `len(files)` ingests leave (see the module docstring), written directly."""
    import hashlib
    import io

    from shelfcast.contract.objects import LocalObjects
    from shelfcast.data.sales import source_id

    ingest, Store = modules(arm)
    objects, landing_objects = LocalObjects(bucket), LocalObjects(landing)
    store = Store(objects)
    frames, entries = [], []
    for seq, (name, body) in enumerate(files):
        etag = landing_objects.put(name, body)
        sha = hashlib.sha256(body).hexdigest()
        frame = pd.read_csv(io.BytesIO(body), parse_dates=["date"])
        source = source_id(name)
        entry = ingest.LedgerEntry(source=source, name=name, seq=1, sha256=sha, bytes=len(body), landing_etag=etag,
                                   action="ingested", data_sha16=sha[:16], rows_read=len(frame),
                                   rows_accepted=len(frame), finished_at=f"{seq:08d}")
        entries.append(entry)
        frames.append(frame.assign(source=source))
    rows = pd.concat(frames, ignore_index=True)
    if arm == "reference":
        for frame, entry in zip(frames, entries):
            entry.parts = store.write_parts(frame.drop(columns="source"), entry.source, entry.sha16)
            objects.put(entry.key(), entry.to_json())
        catalog = ingest.Catalog.from_rows(rows)
        store.save_catalog(catalog, None)
        return
    from deltalake import CommitProperties, Transaction, write_deltalake

    from shelfcast.data.sales import Catalog, sales_arrow

    dt = store.table()
    data = sales_arrow(rows.drop(columns="source"), "x").set_column(4, "source", [rows["source"].tolist()])
    transactions = [t for e in entries for t in (Transaction(f"src:{e.source}", 1),
                                                  Transaction(f"sha:{e.source}~{e.sha16}", 1))]
    write_deltalake(dt, data.cast(data.schema), mode="append",
                    commit_properties=CommitProperties(app_transactions=transactions))
    dt.update_incremental()
    entry_version = dt.version()
    dt.create_checkpoint()
    for entry, (name, body) in zip(entries, files):
        entry.table_version = entry_version
        store.commit(entry)
        objects.put(store.archive_key(entry.source, 1, entry.sha16, entry.landing_etag), body)  # ingest's move
        landing_objects.delete(name)
    store.save_catalog(Catalog(frozenset(rows["store"]), frozenset(rows["item"])), None)
    series = rows.groupby(["store", "item"], as_index=False)["date"].min().rename(columns={"date": "first_date"})
    store.add_series(series, "history")
    assert not ingest.pending(ingest.Landing(landing_objects)), "the built history leaves files pending"


def build_load_history(arm: str, series: int, bucket: Path) -> tuple[str, str]:
    """365 days of `series` series (100 items a store), as daily deliveries would leave them; returns the range."""
    from shelfcast.contract.objects import LocalObjects

    ingest, Store = modules(arm)
    store = Store(LocalObjects(bucket))
    days = pd.date_range("2016-01-01", periods=365, freq="D")
    stores, items = np.arange(1, series // 100 + 1), np.arange(1, 101)
    rng = np.random.default_rng(series)
    if arm == "reference":
        for n, day in enumerate(days):
            s, i = (a.ravel() for a in np.meshgrid(stores, items, indexing="ij"))
            frame = pd.DataFrame({"date": day, "store": s, "item": i, "sales": rng.integers(0, 200, len(s))})
            name = f"sales-{day:%Y-%m-%d}.csv"
            entry = ingest.LedgerEntry(source=name, name=name, seq=1, sha256=f"{n:016x}" * 4, bytes=1, landing_etag="e",
                                       action="ingested", data_sha16=f"{n:016x}")
            entry.parts = store.write_parts(frame, name, entry.sha16)
            store.objects.put(entry.key(), entry.to_json())
    else:
        from deltalake import write_deltalake

        from shelfcast.data.sales import sales_arrow

        for month in range(12):  # monthly commits, then the nightly compaction
            month_days = days[days.month == month + 1]
            d, s, i = (a.ravel() for a in np.meshgrid(month_days, stores, items, indexing="ij"))
            frame = pd.DataFrame({"date": d, "store": s, "item": i, "sales": rng.integers(0, 200, len(d))})
            write_deltalake(store.table(), sales_arrow(frame, f"month-{month}"), mode="append")
        store.maintain(retention_days=0)
    return f"{days[0]:%Y-%m-%d}", f"{days[-1]:%Y-%m-%d}"


# ---- the run -----------------------------------------------------------------------------------------------
def measure_files(work: Path, reference_dir: Path, sizes: list[int], reference_max_mb: int) -> list[dict]:
    records = []
    for mb in sizes:
        source = work / f"file-{mb}mb" / "history.csv"
        source.parent.mkdir(parents=True)
        rows = sized_file(source, mb)
        real_mb = source.stat().st_size / 1e6
        for arm in ARMS:
            record = {"impl": arm, "mb": round(real_mb, 1), "rows": rows}
            if arm == "reference" and mb > reference_max_mb:
                record.update(rows_per_s=None, peak_rss_mb=None,
                              note=f"not run: the reference grows past this machine's memory share on files "
                                   f"over {reference_max_mb} MB (issue 10: 6.2 GB at 197 MB)")
                records.append(record)
                continue
            landing = work / f"landing-{arm}-{mb}"  # each arm its own: the sales table archives what it ingests
            landing.mkdir()
            os.link(source, landing / source.name)
            result = run_child(reference_dir, "ingest", arm=arm, landing=str(landing),
                               bucket=str(work / f"bucket-{arm}-{mb}"))
            assert result["rows"] == rows, result
            record.update(rows_per_s=round(rows / result["seconds"]), seconds=round(result["seconds"], 2),
                          peak_rss_mb=round(result["peak_rss_mb"], 1))
            keep(records, record)
    return records


def keep(records: list[dict], record: dict) -> None:
    """One measured arm: kept for the JSON, printed as it comes (the whole run takes minutes)."""
    records.append(record)
    print(record, flush=True)


def measure_one_more(work: Path, reference_dir: Path, counts: list[int]) -> list[dict]:
    records = []
    for count in counts:
        history = daily_history(count)
        last_day = np.datetime64("2010-01-01").astype(int) + (count - 1) // 100
        history.append((f"store-0001-{pd.Timestamp(last_day + 1, unit='D'):%Y-%m-%d}.csv",  # a known store's next day
                        csv_bytes(np.array([last_day + 1]), np.array([1]), np.arange(1, 11), seed=-1 % 2**31)))
        for arm in ARMS:
            landing, bucket = work / f"more-{arm}-{count}" / "landing", work / f"more-{arm}-{count}" / "bucket"
            started = time.perf_counter()
            build_history(arm, history[:count], landing, bucket)
            built_s = time.perf_counter() - started
            name, body = history[count]
            (landing / name).write_bytes(body)
            result = run_child(reference_dir, "ingest", arm=arm, landing=str(landing), bucket=str(bucket))
            assert result["files"] == 1 and result["rows"] == 10, result
            record = {"impl": arm, "files_before": count, "seconds": round(result["seconds"], 3),
                      "history_build_s": round(built_s, 1)}
            keep(records, record)
    return records


def measure_load(work: Path, reference_dir: Path, series_counts: list[int]) -> list[dict]:
    records = []
    for series in series_counts:
        for arm in ARMS:
            bucket = work / f"load-{arm}-{series}"
            start, end = build_load_history(arm, series, bucket)
            result = run_child(reference_dir, "load", arm=arm, bucket=str(bucket), start=start, end=end)
            assert result["rows"] == 365 * series, result
            record = {"impl": arm, "series": series, "rows": result["rows"], "seconds": round(result["seconds"], 2),
                      "peak_rss_mb": round(result["peak_rss_mb"], 1), "frame_mb": round(result["frame_mb"], 1),
                      "baseline_rss_mb": round(result["baseline_rss_mb"], 1),
                      "peak_over_frame": round(result["peak_rss_mb"] / result["frame_mb"], 2),
                      "load_rss_over_frame": round((result["peak_rss_mb"] - result["baseline_rss_mb"])
                                                   / result["frame_mb"], 2)}
            keep(records, record)
    return records


def targets(doc: dict) -> list[dict]:
    """The issue's targets, each with what was measured."""
    ours = lambda key: [r for r in doc[key] if r["impl"] == "sales table"]  # noqa: E731
    more = {r["files_before"]: r["seconds"] for r in ours("one_more_file")}
    big = max(ours("files"), key=lambda r: r["mb"])
    load = max(ours("load"), key=lambda r: r["series"])
    ratio = more[max(more)] / more[min(more)]
    return [
        {"target": f"one more file after {max(more):,} files <= 2 x after {min(more):,}",
         "measured": f"{ratio:.2f} x ({more[max(more)]:.3f} s against {more[min(more)]:.3f} s)", "met": ratio <= 2},
        {"target": f"{big['mb']:.0f} MB file: peak RSS <= 600 MB", "measured": f"{big['peak_rss_mb']:.0f} MB",
         "met": big["peak_rss_mb"] <= 600},
        {"target": f"{big['mb']:.0f} MB file: >= 300,000 rows/s on {os.cpu_count()} cores",
         "measured": f"{big['rows_per_s']:,} rows/s", "met": big["rows_per_s"] >= 300_000},
        {"target": f"365-day load of {load['series']:,} series: peak <= 2 x the frame",
         "measured": f"{load['peak_over_frame']:.2f} x (frame {load['frame_mb']:.0f} MB, peak {load['peak_rss_mb']:.0f} MB,"
                     f" {load['load_rss_over_frame']:.2f} x above the {load['baseline_rss_mb']:.0f} MB interpreter)",
         "met": load["peak_over_frame"] <= 2},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the script")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest_scale.json")
    parser.add_argument("--reference-max-mb", type=int, default=50)
    parser.add_argument("--only", choices=["files", "one_more_file", "load"], action="append")
    args = parser.parse_args(argv)
    from shelfcast.bench.readme import write_result

    sizes, counts, series = ([1, 2], [10, 100], [100, 500]) if args.quick else (
        [5, 50, 200], [10, 1000, 10000], [500, 5000, 20000])
    doc = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "reference": f"the Parquet-by-date sales store of commit {REFERENCE_COMMIT}, read from git history",
           "stores": "local folders (LocalObjects)",
           "history_built": "sales table: one commit of every file's rows with each file's application "
                            "transactions, a checkpoint, a ledger entry per file, every file in archive/ and none "
                            "left in the landing; reference: every file in the landing, a Parquet part and a "
                            "ledger entry per file, the catalogue JSON",
           "command": "nice -n 10 .venv/bin/python bench/ingest_scale.py" + (" --quick" if args.quick else "")
                      + "".join(f" --only {part}" for part in (args.only or []))}
    with tempfile.TemporaryDirectory(prefix="shelfcast-scale-") as tmp:
        work = Path(tmp)
        reference_dir = write_reference(work / "reference")
        sys.path.insert(0, str(reference_dir))
        only = args.only or ["files", "one_more_file", "load"]
        if "files" in only:
            doc["files"] = measure_files(work, reference_dir, sizes, args.reference_max_mb)
        if "one_more_file" in only:
            doc["one_more_file"] = measure_one_more(work, reference_dir, counts)
        if "load" in only:
            doc["load"] = measure_load(work, reference_dir, series)
    if len(only) < 3 and args.out.exists():  # a partial run keeps the other sections of the last full one
        kept = json.loads(args.out.read_text())
        for key in {"files", "one_more_file", "load"} - set(only):
            if key in kept:
                doc[key] = kept[key]
        doc["partial_runs"] = kept.get("partial_runs", []) + [sorted(only)]
    if all(key in doc for key in ("files", "one_more_file", "load")):
        doc["targets"] = targets(doc)
        for target in doc["targets"]:
            print(f"[{'met' if target['met'] else 'NOT met'}] {target['target']}: {target['measured']}")
    write_result(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
