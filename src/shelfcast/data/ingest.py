"""Ingest: take delivered daily sales files from a landing location into the sales store, exactly once.

Every row goes through the streamed reader (`read_sales_stream`) and then through the checks only the
store of history can make (`check_history`): an unknown store or item, a date in the future, a
(date, store, item) already ingested with a different value. Gaps (missing days, missing series) are
reported as warnings. Accepted rows become Parquet parts, rejected rows go to the quarantine with their
reason, and the file is recorded in the ledger (see `shelfcast.data.sales` for the commit protocol: the checks
run against one version of the sales table and the rows commit as the next version, or everything is checked
again).

The landing is an inbox: once a file's ledger entry is written (whatever the outcome), the file moves to
`archive/<source>/<seq>~<sha16>~<etag>.csv` in the bucket (`archive`), so a run lists only what waits, never the
history. A re-delivered file (same name, same bytes) is a no-op. A corrected file (same name, new bytes) replaces
the rows of its earlier version, and the ledger records it as `corrected` with the rows it changed. A correction
that withdraws more than `max_withdrawn_share` of the rows it replaces (a broken re-export, an empty file), or a
file that would add more than `max_new_series` series to the catalogue, is held in the quarantine until
`shelfcast ingest approve`; `shelfcast ingest restore` brings a superseded version back. Rows that
are already in the store with the same value (a backfill overlapping earlier deliveries) are counted as
duplicates and skipped, so a backfill can run any number of times.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from shelfcast.contract import clock
from shelfcast.data.schema import DEFAULT_MAX_SALES, KEY, blocks, pack_series, read_sales_stream
from shelfcast.data.sales import (
    COMMIT_ATTEMPTS,
    Catalog,
    LedgerEntry,
    LedgerRef,
    SalesTable,
    TableMoved,
    backoff,
    clean_etag,
    source_id,
)
from shelfcast.contract.errors import ConfigError, SalesSchemaError, WriteConflict
from shelfcast.contract.objects import AlreadyExists, LocalObjects, ObjectInfo, ObjectMissing, Objects

DEFAULT_MAX_FILE_BYTES = 256 * 1024**2
DEFAULT_MAX_WITHDRAWN_SHARE = 0.2
DEFAULT_MAX_NEW_SERIES = 50_000
GAP_LOOKBACK_DAYS = 31


def format_ids(ids) -> str:
    """`[1, 2, 3, 7]` -> `"1-3,7"`."""
    ids = sorted(int(i) for i in ids)
    runs: list[str] = []
    start = prev = None
    for value in ids + [None]:
        if value is not None and prev is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = value
    return ",".join(runs)


# ---- landing -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Landing:
    """Where daily files are delivered: a prefix in an object store (S3) or a folder."""

    objects: Objects
    prefix: str = ""

    def describe(self) -> str:
        return self.objects.describe(self.prefix)

    def files(self) -> list[ObjectInfo]:
        """Delivered files in name order (daily names sort by date), hidden names skipped."""
        found = [
            info
            for info in self.objects.list(self.prefix)
            if not self.name(info.key).startswith(".") and not info.key.endswith("/")
        ]
        return sorted(found, key=lambda info: info.key)

    def name(self, key: str) -> str:
        return key[len(self.prefix):]

    def deliver(self, name: str, body: bytes) -> str:
        self.objects.put(self.prefix + name, body, "text/csv")
        return self.prefix + name


def open_landing(location: str, bucket_objects: Objects | None) -> Landing:
    """`landing/` (a prefix in the bucket), `s3://BUCKET/PREFIX/`, or a folder (`/path`, `./path`, `file://`)."""
    if location.startswith("file://") or location.startswith(("/", "./", "../")):
        folder = Path(location.removeprefix("file://"))
        folder.mkdir(parents=True, exist_ok=True)
        return Landing(LocalObjects(folder), "")
    if bucket_objects is None:
        raise ConfigError(f"landing {location!r} is in the bucket but no S3 store is configured; "
                          "set SHELFCAST_S3_ENDPOINT_URL or pass a folder")
    prefix = location
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        if bucket != getattr(bucket_objects, "bucket", bucket):
            raise ConfigError(f"landing {location!r} is in bucket {bucket!r}; the sales store uses "
                              f"{bucket_objects.bucket!r}: deliver to the same bucket or use a folder")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    return Landing(bucket_objects, prefix)


def frame_to_csv(frame: pd.DataFrame) -> bytes:
    out = frame[["date", "store", "item", "sales"]].copy()
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    return out.to_csv(index=False).encode()


def deliver_days(landing: Landing, frame: pd.DataFrame, days: list) -> list[str]:
    """Deliver one `sales-YYYY-MM-DD.csv` per day of `days` (what a store system's nightly export does)."""
    keys = []
    for day in days:
        day = pd.Timestamp(day)
        keys.append(landing.deliver(f"sales-{day:%Y-%m-%d}.csv", frame_to_csv(frame[frame["date"] == day])))
    return keys


def deliver_range(landing: Landing, frame: pd.DataFrame, start, end, kind: str = "backfill") -> str:
    """Deliver the rows of [start, end] as one file `<kind>-START_END.csv` (history or a backfill)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    part = frame[(frame["date"] >= start) & (frame["date"] <= end)]
    return landing.deliver(f"{kind}-{start:%Y-%m-%d}_{end:%Y-%m-%d}.csv", frame_to_csv(part))


# ---- history checks (pure) ---------------------------------------------------------------------------------
@dataclass
class HistoryCheck:
    accepted: pd.DataFrame  # date, store, item, sales, line
    rejected: pd.DataFrame  # line, reason
    duplicates: int


def check_history(rows: pd.DataFrame, existing: pd.DataFrame, catalog: Catalog | None, today: date) -> HistoryCheck:
    """Checks against the store of history.

    `rows`: validated rows (date, store, item, sales, line). `existing`: committed rows of other files for the
    same dates (date, store, item, sales, source). A row equal to an existing one is a duplicate (skipped); a row
    that differs is rejected, because only a corrected delivery of the same file may change a value. Reasons are
    written only for the rows that get one, so a large clean file costs a few vector operations.
    """
    rows = rows.reset_index(drop=True)
    has_reason = np.zeros(len(rows), dtype=bool)
    found: list[tuple[np.ndarray, np.ndarray]] = []  # (row positions, their reasons): only rows that get one

    def reject(mask: np.ndarray, text) -> None:
        fresh = np.flatnonzero(mask & ~has_reason)
        if len(fresh):
            has_reason[fresh] = True
            found.append((fresh, np.asarray(text(rows.iloc[fresh], fresh), dtype=object)))

    reject((rows["date"] > pd.Timestamp(today)).to_numpy(),
           lambda r, _: ("date=" + r["date"].dt.strftime("%Y-%m-%d")
                         + f" is in the future (today is {today}); check the date column of the export").to_numpy())
    if catalog is not None:
        for column, known, flag in (("store", catalog.stores, "stores"), ("item", catalog.items, "items")):
            unknown = ~np.isin(rows[column].to_numpy(), np.fromiter(known, dtype=np.int64, count=len(known)))
            reject(unknown, lambda r, _, column=column, known=known, flag=flag: (
                f"{column} " + r[column].astype(str) + f" is not in the catalogue (known {flag}: "
                f"{format_ids(known)}); if it is new, add it with `shelfcast ingest catalog --add-{flag} "
                + r[column].astype(str) + "`").to_numpy())
    duplicate = np.zeros(len(rows), dtype=bool)
    if len(existing) and len(rows):
        merged = rows[list(KEY) + ["sales"]].merge(
            existing[list(KEY) + ["sales", "source"]].rename(columns={"sales": "sales_existing"}),
            on=list(KEY), how="left", validate="one_to_one", sort=False,
        )
        present = merged["sales_existing"].notna().to_numpy()
        same = present & (merged["sales"] == merged["sales_existing"]).to_numpy()
        reject(present & ~same, lambda r, index: (
            "sales=" + r["sales"].astype(str) + " differs from "
            + merged["sales_existing"].iloc[index].astype(np.int64).astype(str).to_numpy()
            + " already ingested for this date, store and item from " + merged["source"].iloc[index].to_numpy()
            + "; to change a delivered value, deliver a corrected " + merged["source"].iloc[index].to_numpy()
            + " under the same name").to_numpy())
        duplicate = same & ~has_reason
    ok = ~has_reason & ~duplicate
    positions = np.concatenate([at for at, _ in found]) if found else np.zeros(0, np.int64)
    texts = np.concatenate([text for _, text in found]) if found else np.zeros(0, object)
    order = np.argsort(positions, kind="stable")
    rejected = pd.DataFrame({"line": rows["line"].to_numpy()[positions[order]], "reason": texts[order]})
    accepted = rows if ok.all() else rows.loc[ok].reset_index(drop=True)  # a clean file is not copied
    return HistoryCheck(accepted, rejected, int(duplicate.sum()))


def unique_days(rows: pd.DataFrame) -> list[date]:
    """The distinct days of `rows`, sorted (through numpy, a block of rows at a time: a Python object per row
    costs seconds per million, and a whole-column copy memory)."""
    days = day_numbers(rows)
    found = [np.unique(days[start:stop] // 86400) for start, stop in blocks(len(rows))]
    unique = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return [day.item() for day in unique.astype("datetime64[D]")]


def day_numbers(rows: pd.DataFrame) -> np.ndarray:
    """The date column as Unix seconds (int64), a view where the column is datetime64[s] already."""
    return rows["date"].to_numpy().astype("datetime64[s]", copy=False).view(np.int64)


def gap_warnings(accepted: pd.DataFrame, known_dates: list[date], series: pd.DataFrame | None) -> list[str]:
    """Missing days before or inside the delivered range, and catalogue series with no row on a delivered day.

    `series`: the catalogue's series (store, item) of the stores in the file."""
    if accepted.empty:
        return []
    warnings = []
    days = unique_days(accepted)
    earlier = [d for d in known_dates if d < days[0]]
    if earlier and (days[0] - earlier[-1]).days > 1:
        first, last = earlier[-1] + timedelta(days=1), days[0] - timedelta(days=1)
        warnings.append(f"gap: no sales ingested for {first}..{last} ({(last - first).days + 1} day(s)) before "
                        f"this file; deliver those days or backfill them")
    inside = pd.date_range(days[0], days[-1], freq="D").date
    missing_days = sorted(set(inside) - set(days) - set(known_dates))
    if missing_days:
        warnings.append(f"gap: the file skips {len(missing_days)} day(s) in its range, first {missing_days[0]}")
    if series is not None and len(series):
        known = np.sort(series_keys(series))
        day_array, seconds = np.array(days, dtype="datetime64[D]"), day_numbers(accepted)

        def block_keys(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            day_index = np.searchsorted(day_array, (seconds[start:stop] // 86400).astype("datetime64[D]"))
            return day_index, series_keys(accepted.iloc[start:stop])

        present = np.zeros(len(days), dtype=np.int64)
        for start, stop in blocks(len(accepted)):
            day_index, keys = block_keys(start, stop)
            present += np.bincount(day_index[np.isin(keys, known)], minlength=len(days))
        short = len(known) - present  # keys are unique within a file, so this counts the missing series per day
        if short.any():
            first_day = int(np.flatnonzero(short)[0])
            there = [keys[day_index == first_day] for day_index, keys in
                     (block_keys(start, stop) for start, stop in blocks(len(accepted)))]
            s, i = divmod(int(np.setdiff1d(known, np.concatenate(there))[0]), 1 << 32)
            warnings.append(f"gap: {int(short.sum())} (date, series) rows missing on {int((short > 0).sum())} "
                            f"day(s), first {days[first_day]} store {s} item {i}; the series will have a hole until "
                            "it is delivered")
    return warnings


def series_keys(frame: pd.DataFrame) -> np.ndarray:
    """(store, item) of each row of `frame` as one int64 (`pack_series`; validation keeps ids below 2**31)."""
    return pack_series(frame["store"].to_numpy(), frame["item"].to_numpy())


# ---- one file ------------------------------------------------------------------------------------------------
@dataclass
class FileReport:
    """What happened to one landing file in one run."""

    name: str
    action: str  # ingested | corrected | quarantined | held | unchanged | approved | restored
    rows_read: int = 0
    rows_accepted: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    dates: list[str] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    ledger_key: str = ""
    seconds: float = 0.0
    table_version: int = -1
    commit_attempts: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestOptions:
    today: date | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    allow_corrections: bool = True
    flow_run_id: str = ""
    max_sales: int = DEFAULT_MAX_SALES
    max_withdrawn_share: float = DEFAULT_MAX_WITHDRAWN_SHARE
    max_new_series: int = DEFAULT_MAX_NEW_SERIES
    commit_attempts: int = COMMIT_ATTEMPTS


class Held(SalesSchemaError):
    """A file that would change the history too much to be taken without a person's approval."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pending(landing: Landing) -> list[ObjectInfo]:
    """Files waiting in the landing, in name order: all of them, since `ingest_file` moves every file it recorded
    to the archive. One listing of what waits, whatever the history."""
    return landing.files()


def ingest_file(store: SalesTable, landing: Landing, info: ObjectInfo, options: IngestOptions) -> FileReport:
    """Ingest one landing file and move it to the archive once its ledger entry is written, whatever the outcome.

    Data problems end in the quarantine and the report; I/O errors propagate and leave the file in the landing. A
    file whose ETag the source's latest entry already records (a run killed before its move) is only moved."""
    started = time.perf_counter()
    name = landing.name(info.key)
    source = source_id(name)
    latest = store.latest(source)
    recorded = latest is not None and latest.etag == clean_etag(info.etag)
    with tempfile.TemporaryDirectory(prefix="shelfcast-ingest-") as tmp:
        path = Path(tmp) / "delivery"
        try:
            landing.objects.download(info.key, path)
        except ObjectMissing:
            report = FileReport(name, "unchanged", warnings=[
                f"{info.key} left the landing before it was read (another ingest run archived it); nothing to do"])
            report.seconds = time.perf_counter() - started
            return report
        sha = sha256_file(path)
        if recorded:
            report, seq = FileReport(name, "unchanged"), latest.seq
        else:
            report, seq = _record(store, path, sha, name, info, latest, options), (latest.seq + 1 if latest else 1)
            # A run that lost the sequence number to another run ("unchanged") moves the file only if the
            # winner's entry is this very version (same key), since the winner may have read other bytes.
            recorded = report.action != "unchanged" or store.objects.head(report.ledger_key) is not None
        if recorded:
            archive(store, landing, info, path, store.archive_key(source, seq, sha[:16], info.etag))
    report.seconds = time.perf_counter() - started
    return report


def archive(store: SalesTable, landing: Landing, info: ObjectInfo, path: Path, key: str) -> None:
    """Move a recorded landing file to `key` in the archive: a copy of the bytes that were read (`path`), then a
    delete of the landing key, only when a HEAD finds it still at the ETag that was read.

    A file re-delivered after it was read has another ETag, so it stays in the landing and the next run ingests
    it (a correction, or "unchanged" for the same bytes); a run killed before the delete leaves the file there too,
    and the next run finds its ETag in the ledger and only moves it. One window remains, between the HEAD and the
    DELETE (one request's time): S3 has no conditional delete on every server, so a re-delivery landing exactly
    then is deleted unread. The bucket keeps it as a noncurrent version (versioning is on), and delivering it
    again ingests it."""
    store.objects.upload(path, key)
    current = landing.objects.head(info.key)
    if current is not None and clean_etag(current.etag) == clean_etag(info.etag):
        landing.objects.delete(info.key)


def _record(store: SalesTable, path: Path, sha: str, name: str, info: ObjectInfo, latest: LedgerRef | None,
            options: IngestOptions) -> FileReport:
    """Check, commit and record a downloaded file version the ledger has not seen (its ETag is new)."""
    source = source_id(name)
    today = options.today or clock.today()
    entry = LedgerEntry(
        source=source, name=name, seq=(latest.seq + 1) if latest else 1, sha256=sha,
        bytes=path.stat().st_size, landing_etag=info.etag, action="ingested", data_sha16=sha[:16],
        started_at=clock.stamp(), flow_run_id=options.flow_run_id,
    )
    previous = store.ledger_entry(latest) if latest is not None else None
    if previous is not None and previous.sha256 == sha:
        # Same bytes delivered again (new ETag): record the ETag, change nothing.
        entry.action, entry.previous_sha256, entry.data_sha16 = "redelivered", sha, latest.sha16
        entry.table_version = previous.table_version
        entry.finished_at = clock.stamp()
        report = FileReport(name, "unchanged")
        report.ledger_key = _write_ledger(store, entry, report)
        return report
    if previous is not None:
        entry.action, entry.previous_sha256 = "corrected", previous.sha256
    try:
        return _ingest_content(store, path, name, entry, latest, today, options)
    except SalesSchemaError as exc:
        return _quarantine_file(store, path, name, entry, latest, exc)


def _write_ledger(store: SalesTable, entry: LedgerEntry, report: FileReport) -> str:
    """Write the entry; when another run of the same file wrote this sequence number first, its entry stands
    (both checked the same file against the table, and its rows are committed once by the table's protocol)."""
    try:
        return store.commit(entry)
    except AlreadyExists:
        report.action = "unchanged"
        report.warnings.append(f"ledger entry {entry.seq} of {entry.name} was written by another ingest run "
                               "at the same time; its outcome stands")
        return entry.key()


def _quarantine_file(store: SalesTable, path: Path, name: str, entry: LedgerEntry, latest: LedgerRef | None,
                     exc: SalesSchemaError) -> FileReport:
    """The whole file is unusable (or held for approval): keep a copy and the reason in the quarantine.

    A quarantined or held correction keeps the rows of the version it tried to replace (`data_sha16`), so one
    broken re-export never opens a hole in the history.
    """
    error = str(exc)
    held = isinstance(exc, Held)
    prefix = store.quarantine_prefix(entry.source, entry.sha16)
    original = prefix + Path(name).name
    store.objects.upload(path, original)
    detail = {"name": name, "sha256": entry.sha256, "bytes": entry.bytes, "error": error, "at": clock.stamp(),
              "held": held}
    store.objects.put(prefix + "error.json", json.dumps(detail, indent=1).encode(), "application/json")
    warnings = []
    if latest is not None:
        entry.data_sha16 = latest.sha16
        warnings.append(f"the rows of the earlier version (sha256 {entry.previous_sha256[:16]}...) stay in the store")
    if held:
        warnings.append(f"held: approve it with `shelfcast ingest approve {name} --by NAME --reason TEXT`")
    entry.action, entry.error, entry.warnings = ("held" if held else "quarantined"), error, warnings
    entry.quarantine = [original, prefix + "error.json"]
    entry.finished_at = clock.stamp()
    report = FileReport(name, entry.action, error=error, warnings=warnings, quarantine=entry.quarantine)
    report.ledger_key = _write_ledger(store, entry, report)
    return report


@dataclass
class Parsed:
    """A file read and validated: its rows (with file line numbers) and what validation rejected."""

    rows: pd.DataFrame  # date, store, item, sales, line
    rejected: pd.DataFrame  # source, line, reason, the raw columns
    rows_read: int


def parse_file(path: Path, name: str, options: IngestOptions) -> Parsed:
    """Read and validate a delivered file block by block (memory bounded by the accepted rows' numbers)."""
    read = read_sales_stream(path, name, max_sales=options.max_sales)
    return Parsed(read.accepted, read.rejected, read.rows_read)


def _ingest_content(store: SalesTable, path: Path, name: str, entry: LedgerEntry, latest: LedgerRef | None,
                    today: date, options: IngestOptions) -> FileReport:
    if entry.bytes > options.max_file_bytes:
        raise SalesSchemaError(
            f"file {name} is {entry.bytes:,} bytes, over the limit of {options.max_file_bytes:,}; a daily sales "
            "file is far smaller: split the export by day, or raise the limit (--max-file-bytes) for a backfill"
        )
    if entry.action == "corrected" and not options.allow_corrections:
        raise SalesSchemaError(
            f"file {name} was ingested before with other content (sha256 {entry.previous_sha256[:16]}...); "
            "corrections are disabled: deliver the change under a new name or enable corrections"
        )
    return commit_checked(store, parse_file(path, name, options), name, entry, today, options)


def commit_checked(store: SalesTable, parsed: Parsed, name: str, entry: LedgerEntry, today: date,
                   options: IngestOptions, hold: bool = True) -> FileReport:
    """Check the rows against one version of the sales table and commit them as the next version.

    When another writer committed in between, everything is checked again against the new version (up to
    `options.commit_attempts` times); the rows of a key another file committed meanwhile are then duplicates or
    conflicts, never a second copy. `hold=False` is an approval: the withdrawn-share and new-series limits pass.
    """
    rows = parsed.rows
    warnings: list[str] = []
    catalog = _ensure_catalog(store, rows, name, warnings)
    for attempt in range(1, options.commit_attempts + 1):
        dt = store.table()
        already = store.committed(dt, entry.source, entry.data_sha16, entry.seq)
        existing = _existing_rows(store, rows, entry.source, dt)
        checked = check_history(rows, existing, catalog, today)
        notes = list(warnings)
        stores = sorted(rows["store"].unique().tolist())
        series = store.known_series(stores) if stores else None
        known_dates = _known_dates(store, checked.accepted, dt)
        notes += gap_warnings(checked.accepted, known_dates, series)
        fresh = new_series_of(checked.accepted, series)
        if len(fresh) > options.max_new_series and hold and not already:
            first = fresh.iloc[0]
            raise Held(f"file {name} would add {len(fresh):,} new series to the catalogue (limit "
                       f"{options.max_new_series:,}), first store {first['store']} item {first['item']}; if they "
                       f"are real, approve it with `shelfcast ingest approve {name}`, else fix the export")
        if entry.action == "corrected":
            note, withdrawn, before = _correction_note(store, entry, checked.accepted, dt)
            notes.insert(0, note)
            entry.rows_withdrawn = withdrawn
            share = withdrawn / before if before else 0.0
            if share > options.max_withdrawn_share and hold and not already:
                raise Held(f"file {name}: this correction withdraws {withdrawn:,} of the {before:,} rows of the "
                           f"version it replaces ({share:.0%}, limit {options.max_withdrawn_share:.0%}); a broken "
                           f"re-export looks like this: deliver the complete file again, or approve it with "
                           f"`shelfcast ingest approve {name} --by NAME --reason TEXT`")
        if len(fresh):
            entry.series_added = store.add_series(fresh, entry.source)
            notes.append(f"{len(fresh)} new series added to the catalogue, first store "
                         f"{fresh.iloc[0]['store']} item {fresh.iloc[0]['item']}")
        if already:
            entry.table_version = _version_holding(dt, entry)
            break
        try:
            entry.table_version = store.commit_rows(dt, checked.accepted, entry.source, entry.data_sha16,
                                                    entry.seq, {"shelfcast.name": name})
            break
        except TableMoved:
            backoff(attempt)
    else:
        raise SalesSchemaError(
            f"file {name}: the sales table changed under {options.commit_attempts} attempts in a row to commit it "
            "(other ingests were committing at the same time); nothing of it was committed: rerun the ingest"
        )
    rejected = _rejected_rows(parsed.rejected, checked.rejected, rows, name)
    if len(rejected):
        key = store.quarantine_prefix(entry.source, entry.sha16) + "rejected.csv"
        store.objects.put(key, rejected.to_csv(index=False).encode(), "text/csv")
        entry.quarantine = [key]
    entry.rows_read = parsed.rows_read
    entry.rows_accepted = len(checked.accepted)
    entry.rows_duplicate = checked.duplicates
    entry.rows_rejected = len(rejected)
    entry.dates = [str(day) for day in unique_days(checked.accepted)]
    entry.warnings = notes
    entry.finished_at = clock.stamp()
    report = FileReport(name, entry.action, entry.rows_read, entry.rows_accepted, entry.rows_duplicate,
                        entry.rows_rejected, entry.dates, "", notes, entry.quarantine,
                        table_version=entry.table_version, commit_attempts=attempt)
    report.ledger_key = _write_ledger(store, entry, report)
    return report


def _version_holding(dt, entry: LedgerEntry) -> int:
    """The table version whose commit holds the rows of `entry` (a rerun after the table commit)."""
    for commit in dt.history(limit=200):
        if commit.get("shelfcast.sha16") == entry.data_sha16 and commit.get("shelfcast.seq") == str(entry.seq):
            return int(commit["version"])
    return dt.version()


def _ensure_catalog(store: SalesTable, rows: pd.DataFrame, name: str, warnings: list[str]) -> Catalog | None:
    """The known ids; the first file with rows creates them (then it has no ids to check against)."""
    catalog, etag = store.catalog()
    if catalog is not None or rows.empty:
        return catalog
    created = Catalog(frozenset(rows["store"].astype(int).unique().tolist()),
                      frozenset(rows["item"].astype(int).unique().tolist()))
    try:
        store.save_catalog(created, etag)
    except WriteConflict:  # another first file created it at the same moment: check against theirs
        return store.catalog()[0]
    warnings.append(f"catalogue created from {name}: stores {format_ids(created.stores)}, "
                    f"items {format_ids(created.items)}")
    return None


def _existing_rows(store: SalesTable, rows: pd.DataFrame, source: str, dt) -> pd.DataFrame:
    """Committed rows of other sources on the file's days and stores (the only keys the file can collide with)."""
    if rows.empty:
        return rows.assign(source="")[["date", "store", "item", "sales", "source"]]
    return store.load(rows["date"].min().date(), rows["date"].max().date(), exclude_source=source,
                      with_source=True, stores=sorted(rows["store"].unique().tolist()), dt=dt)


def _known_dates(store: SalesTable, accepted: pd.DataFrame, dt) -> list[date]:
    """Days with rows from `GAP_LOOKBACK_DAYS` before the file to its end, or the newest day before that."""
    if accepted.empty:
        return []
    first, last = accepted["date"].min().date(), accepted["date"].max().date()
    days = store.dates(first - timedelta(days=GAP_LOOKBACK_DAYS), last, dt=dt)
    if not any(d < first for d in days):
        newest = store.newest_date(dt)
        if newest is not None and newest < first:
            days = [newest] + days
    return days


def new_series_of(accepted: pd.DataFrame, known: pd.DataFrame | None) -> pd.DataFrame:
    """The (store, item, first_date) of accepted rows whose series the catalogue lacks, sorted."""
    if accepted.empty:
        return pd.DataFrame({"store": [], "item": [], "first_date": []})
    seconds = day_numbers(accepted)
    firsts = pd.concat([pd.Series(seconds[start:stop]).groupby(series_keys(accepted.iloc[start:stop])).min()
                        for start, stop in blocks(len(accepted))])  # one int64 key, a block at a time
    firsts = firsts.groupby(level=0).min()
    keys = firsts.index.to_numpy(np.int64)
    fresh = ~np.isin(keys, series_keys(known)) if known is not None and len(known) else np.ones(len(keys), bool)
    return pd.DataFrame({"store": keys[fresh] >> 32, "item": keys[fresh] & 0xFFFFFFFF,
                         "first_date": firsts.to_numpy()[fresh].astype("datetime64[s]")})


def _rejected_rows(validation: pd.DataFrame, history: pd.DataFrame, rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows rejected by validation and by the history checks, in line order, with the values of the row."""
    if history.empty:
        return validation
    values = rows.loc[rows["line"].isin(history["line"]), ["line", "date", "store", "item", "sales"]]
    extra = history[["line", "reason"]].merge(values, on="line", how="left")
    extra["date"] = extra["date"].dt.strftime("%Y-%m-%d")
    extra = extra.astype({"store": str, "item": str, "sales": str})
    extra.insert(0, "source", name)
    combined = pd.concat([validation, extra], ignore_index=True) if len(validation) else extra
    return combined.sort_values("line").reset_index(drop=True)


def _correction_note(store: SalesTable, entry: LedgerEntry, accepted: pd.DataFrame, dt) -> tuple[str, int, int]:
    """What a corrected file changes compared with the version it replaces: (note, rows withdrawn, rows before)."""
    before = store.load(only_source=entry.source, dt=dt)[list(KEY) + ["sales"]]
    after = accepted[list(KEY) + ["sales"]]
    merged = before.merge(after, on=list(KEY), how="outer", suffixes=("_before", "_after"), indicator=True)
    changed = int(((merged["_merge"] == "both") & (merged["sales_before"] != merged["sales_after"])).sum())
    added = int((merged["_merge"] == "right_only").sum())
    removed = int((merged["_merge"] == "left_only").sum())
    note = (f"corrected file: replaces the version with sha256 {entry.previous_sha256[:16]}...; "
            f"{changed} value(s) changed, {added} row(s) added, {removed} row(s) withdrawn")
    return note, removed, len(before)


# ---- approval and restore ----------------------------------------------------------------------------------
def approve(store: SalesTable, name: str, by: str, reason: str, options: IngestOptions) -> FileReport:
    """Ingest the held version of `name` as it is, recording who approved it and why."""
    if not by.strip() or not reason.strip():
        raise ConfigError("an approval needs --by (who) and --reason (why); both go into the ledger")
    source = source_id(name)
    latest = store.latest(source)
    held = store.ledger_entry(latest) if latest is not None else None
    if held is None or held.action != "held":
        state = held.action if held else "never ingested"
        raise ConfigError(f"file {name} is not held (its latest ledger entry is {state!r}); "
                          "`shelfcast ingest ledger` lists what is held")
    entry = LedgerEntry(
        source=source, name=held.name, seq=held.seq + 1, sha256=held.sha256, bytes=held.bytes,
        landing_etag=held.landing_etag, action="approved", data_sha16=held.sha16, started_at=clock.stamp(),
        flow_run_id=options.flow_run_id, approved_by=by, approval_reason=reason,
        previous_sha256=held.previous_sha256,
    )
    with tempfile.TemporaryDirectory(prefix="shelfcast-approve-") as tmp:
        path = Path(tmp) / "delivery"
        store.objects.download(held.quarantine[0], path)
        if sha256_file(path) != held.sha256:
            raise ConfigError(f"the quarantined copy of {name} does not match the held version's sha256; "
                              "deliver the file again")
        parsed = parse_file(path, held.name, options)
    if held.previous_sha256:
        entry.action = "corrected"  # what the table sees; the ledger still says who let it through
        entry.approval_reason = reason
    return commit_checked(store, parsed, held.name, entry, options.today or clock.today(), options, hold=False)


def restore(store: SalesTable, name: str, seq: int, by: str, reason: str, options: IngestOptions) -> FileReport:
    """Bring back the rows of ledger entry `seq` of `name` (a superseded version), read by time travel."""
    source = source_id(name)
    history = {e.seq: e for e in store.ledger_history(source)}
    if seq not in history or history[seq].table_version < 0:
        committed = [e.seq for e in history.values() if e.table_version >= 0]
        raise ConfigError(f"file {name} has no committed version {seq}; versions with rows: {committed or 'none'}")
    target, latest = history[seq], history[max(history)]
    try:
        rows = store.load(only_source=source, version=target.table_version)
    except Exception as exc:
        copy = store.archive_key(source, target.seq, target.sha16, target.landing_etag)
        raise ConfigError(f"version {target.table_version} of the sales table is no longer readable ({exc}); "
                          f"vacuum removed its files: deliver its archived copy {copy} (or its quarantined copy) "
                          f"to the landing again as {target.name}") from None
    entry = LedgerEntry(
        source=source, name=target.name, seq=latest.seq + 1, sha256=target.sha256, bytes=target.bytes,
        landing_etag=latest.landing_etag, action="restored", data_sha16=target.sha16, started_at=clock.stamp(),
        flow_run_id=options.flow_run_id, approved_by=by, approval_reason=reason, restored_from_seq=seq,
        previous_sha256=latest.sha256,
    )
    parsed = Parsed(rows.assign(line=np.arange(len(rows)) + 2), pd.DataFrame(), len(rows))
    return commit_checked(store, parsed, target.name, entry, options.today or clock.today(), options, hold=False)


# ---- a run over the landing location -----------------------------------------------------------------------
def ingest_landing(store: SalesTable, landing: Landing, options: IngestOptions) -> list[FileReport]:
    """Ingest every pending landing file in name order (the flow does the same, one task per file)."""
    return [ingest_file(store, landing, info, options) for info in pending(landing)]


def render_markdown(reports: list[FileReport], landing: str, store: str) -> str:
    """The run summary a Prefect artifact shows."""
    counts = {a: sum(r.action == a for r in reports) for a in ("ingested", "corrected", "quarantined", "unchanged")}
    lines = [
        "# Ingest run",
        "",
        f"Landing `{landing}` into the sales store `{store}`: "
        + ", ".join(f"{n} {a}" for a, n in counts.items()) + ".",
        "",
        "| file | action | read | accepted | duplicate | rejected | dates | notes |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in reports:
        dates = f"{r.dates[0]}..{r.dates[-1]}" if len(r.dates) > 1 else (r.dates[0] if r.dates else "")
        notes = "; ".join(([r.error] if r.error else []) + r.warnings + [f"quarantine: {k}" for k in r.quarantine])
        notes = notes.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.name} | {r.action} | {r.rows_read} | {r.rows_accepted} | {r.rows_duplicate} | "
                     f"{r.rows_rejected} | {dates} | {notes[:600]} |")
    if not reports:
        lines.append("| (no new files) | | | | | | | |")
    return "\n".join(lines) + "\n"
