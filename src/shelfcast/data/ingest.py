"""Ingest: take delivered daily sales files from a landing location into the sales store, exactly once.

Every row goes through the core reader (`read_raw`, `validate_sales`) and then through the checks only the
store of history can make (`check_history`): an unknown store or item, a date in the future, a
(date, store, item) already ingested with a different value. Gaps (missing days, missing series) are
reported as warnings. Accepted rows become Parquet parts, rejected rows go to the quarantine with their
reason, and the file is recorded in the ledger (see `shelfcast.data.sales` for the commit protocol).

A re-delivered file (same name, same bytes) is a no-op. A corrected file (same name, new bytes) replaces the
rows of its earlier version, and the ledger records it as `corrected` with the rows it changed. Rows that
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
from shelfcast.data.schema import KEY, read_raw, validate_sales
from shelfcast.data.sales import (
    Catalog,
    LedgerEntry,
    LedgerRef,
    SalesStore,
    clean_etag,
    source_id,
)
from shelfcast.contract.errors import ConfigError, WriteConflict, SalesSchemaError
from shelfcast.contract.objects import LocalObjects, ObjectInfo, Objects, ObjectStore

DEFAULT_MAX_FILE_BYTES = 256 * 1024**2


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
    that differs is rejected, because only a corrected delivery of the same file may change a value.
    """
    rows = rows.reset_index(drop=True)
    reason = pd.Series("", index=rows.index, dtype=object)

    def reject(mask: pd.Series, text: pd.Series) -> None:
        fresh = mask & (reason == "")
        reason[fresh] = text[fresh]

    day = rows["date"].dt.strftime("%Y-%m-%d")
    reject(rows["date"] > pd.Timestamp(today),
           "date=" + day + f" is in the future (today is {today}); check the date column of the export")
    if catalog is not None:
        for column, known, flag in (("store", catalog.stores, "stores"), ("item", catalog.items, "items")):
            ids = rows[column].astype(str)
            reject(~rows[column].isin(list(known)),
                   f"{column} " + ids + f" is not in the catalogue (known {flag}: {format_ids(known)}); if it is new, "
                   f"add it with `shelfcast ingest catalog --add-{flag} " + ids + "`")
    duplicate = pd.Series(False, index=rows.index)
    if len(existing):
        merged = rows[list(KEY) + ["sales"]].merge(
            existing[list(KEY) + ["sales", "source"]].rename(columns={"sales": "sales_existing"}),
            on=list(KEY), how="left", validate="one_to_one",
        )
        merged.index = rows.index
        present = merged["sales_existing"].notna()
        same = present & (merged["sales"] == merged["sales_existing"])
        text = ("sales=" + merged["sales"].astype(str) + " differs from "
                + merged["sales_existing"].fillna(0).astype(np.int64).astype(str)
                + " already ingested for this date, store and item from " + merged["source"].fillna("")
                + "; to change a delivered value, deliver a corrected " + merged["source"].fillna("")
                + " under the same name")
        reject(present & ~same, text)
        duplicate = same & (reason == "")
    ok = (reason == "") & ~duplicate
    rejected = pd.DataFrame({"line": rows.loc[reason != "", "line"], "reason": reason[reason != ""]})
    return HistoryCheck(rows.loc[ok].reset_index(drop=True), rejected.reset_index(drop=True), int(duplicate.sum()))


def gap_warnings(accepted: pd.DataFrame, known_dates: list[date], catalog: Catalog | None) -> list[str]:
    """Missing days before or inside the delivered range, and catalogue series with no row on a delivered day."""
    if accepted.empty:
        return []
    warnings = []
    days = sorted(set(accepted["date"].dt.date))
    earlier = [d for d in known_dates if d < days[0]]
    if earlier and (days[0] - earlier[-1]).days > 1:
        first, last = earlier[-1] + timedelta(days=1), days[0] - timedelta(days=1)
        warnings.append(f"gap: no sales ingested for {first}..{last} ({(last - first).days + 1} day(s)) before "
                        f"this file; deliver those days or backfill them")
    inside = pd.date_range(days[0], days[-1], freq="D").date
    missing_days = sorted(set(inside) - set(days) - set(known_dates))
    if missing_days:
        warnings.append(f"gap: the file skips {len(missing_days)} day(s) in its range, first {missing_days[0]}")
    if catalog is not None and catalog.series:
        present = set(zip(accepted["date"].dt.date, accepted["store"].astype(int), accepted["item"].astype(int)))
        missing = [(d, s, i) for d in days for s, i in sorted(catalog.series) if (d, s, i) not in present]
        if missing:
            d, s, i = missing[0]
            warnings.append(f"gap: {len(missing)} (date, series) rows missing on {len({m[0] for m in missing})} "
                            f"day(s), first {d} store {s} item {i}; the series will have a hole until it is delivered")
    return warnings


# ---- one file ------------------------------------------------------------------------------------------------
@dataclass
class FileReport:
    """What happened to one landing file in one run."""

    name: str
    action: str  # ingested | corrected | quarantined | unchanged
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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestOptions:
    today: date | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    allow_corrections: bool = True
    flow_run_id: str = ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pending(landing: Landing, store: SalesStore) -> list[ObjectInfo]:
    """Landing files whose ETag differs from the one their latest ledger entry recorded (cheap: two listings)."""
    index = store.ledger_index()
    result = []
    for info in landing.files():
        ref = index.get(source_id(landing.name(info.key)))
        if ref is None or ref.etag != clean_etag(info.etag):
            result.append(info)
    return result


def ingest_file(store: SalesStore, landing: Landing, info: ObjectInfo, options: IngestOptions) -> FileReport:
    """Ingest one landing file. Data problems end in the quarantine and the report; I/O errors propagate."""
    started = time.perf_counter()
    name = landing.name(info.key)
    source = source_id(name)
    today = options.today or clock.today()
    latest = store.ledger_index().get(source)
    if latest is not None and latest.etag == clean_etag(info.etag):
        return FileReport(name, "unchanged", seconds=time.perf_counter() - started)
    with tempfile.TemporaryDirectory(prefix="shelfcast-ingest-") as tmp:
        path = Path(tmp) / "delivery"
        landing.objects.download(info.key, path)
        sha = sha256_file(path)
        entry = LedgerEntry(
            source=source, name=name, seq=(latest.seq + 1) if latest else 1, sha256=sha,
            bytes=path.stat().st_size, landing_etag=info.etag, action="ingested", data_sha16=sha[:16],
            started_at=clock.stamp(), flow_run_id=options.flow_run_id,
        )
        previous = store.ledger_entry(latest) if latest is not None else None
        if previous is not None and previous.sha256 == sha:
            # Same bytes delivered again (new ETag): record the ETag so the next run skips it, change nothing.
            entry.action, entry.previous_sha256, entry.data_sha16 = "redelivered", sha, latest.sha16
            entry.finished_at = clock.stamp()
            key = store.commit(entry)
            return FileReport(name, "unchanged", ledger_key=key, seconds=time.perf_counter() - started)
        if previous is not None:
            entry.action, entry.previous_sha256 = "corrected", previous.sha256
        try:
            report = _ingest_content(store, path, name, entry, latest, today, options)
        except SalesSchemaError as exc:
            report = _quarantine_file(store, path, name, entry, latest, str(exc))
    report.seconds = time.perf_counter() - started
    return report


def _quarantine_file(store: SalesStore, path: Path, name: str, entry: LedgerEntry, latest: LedgerRef | None,
                     error: str) -> FileReport:
    """The whole file is unusable: keep a copy and the reason in the quarantine, record it, move on.

    A quarantined correction keeps the rows of the version it tried to replace (`data_sha16`), so one broken
    re-export never opens a hole in the history.
    """
    prefix = store.quarantine_prefix(entry.source, entry.sha16)
    original = prefix + Path(name).name
    store.objects.upload(path, original)
    detail = {"name": name, "sha256": entry.sha256, "bytes": entry.bytes, "error": error, "at": clock.stamp()}
    store.objects.put(prefix + "error.json", json.dumps(detail, indent=1).encode(), "application/json")
    warnings = []
    if latest is not None:
        entry.data_sha16 = latest.sha16
        warnings.append(f"the rows of the earlier version (sha256 {entry.previous_sha256[:16]}...) stay in the store")
    entry.action, entry.error, entry.warnings = "quarantined", error, warnings
    entry.quarantine = [original, prefix + "error.json"]
    entry.finished_at = clock.stamp()
    key = store.commit(entry)
    return FileReport(name, "quarantined", error=error, warnings=warnings, quarantine=entry.quarantine, ledger_key=key)


def _ingest_content(store: SalesStore, path: Path, name: str, entry: LedgerEntry, latest: LedgerRef | None,
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
    raw = read_raw(path, source=name)
    validated = validate_sales(raw, name)
    lines = np.setdiff1d(np.arange(len(raw)) + 2, validated.rejected["line"].to_numpy())
    rows = validated.accepted.assign(line=lines)
    if rows.empty:
        existing = rows.assign(source="")
    else:
        existing = store.load(rows["date"].min().date(), rows["date"].max().date(),
                              exclude_source=entry.source, with_source=True)
    catalog, catalog_etag = store.catalog()
    checked = check_history(rows, existing, catalog, today)
    warnings = gap_warnings(checked.accepted, store.dates(), catalog)
    if catalog is None and not checked.accepted.empty:
        catalog_new = Catalog.from_rows(checked.accepted)
        warnings.append(f"catalogue created from {name}: stores {format_ids(catalog_new.stores)}, "
                        f"items {format_ids(catalog_new.items)}, {len(catalog_new.series)} series")
    elif catalog is not None:
        fresh = set(zip(checked.accepted["store"].astype(int), checked.accepted["item"].astype(int))) - catalog.series
        catalog_new = catalog.with_ids(series=fresh) if fresh else None
        if fresh:
            warnings.append(f"{len(fresh)} new series of known stores and items added to the catalogue, "
                            f"first store {min(fresh)[0]} item {min(fresh)[1]}")
    else:
        catalog_new = None

    rejected = _rejected_rows(validated.rejected, checked.rejected, raw, name)
    if entry.action == "corrected":
        warnings.insert(0, _correction_note(store, entry, checked.accepted))
    if len(rejected):
        key = store.quarantine_prefix(entry.source, entry.sha16) + "rejected.csv"
        store.objects.put(key, rejected.to_csv(index=False).encode(), "text/csv")
        entry.quarantine = [key]
    entry.parts = store.write_parts(checked.accepted, entry.source, entry.sha16)
    if catalog_new is not None:
        try:
            store.save_catalog(catalog_new, catalog_etag)
        except WriteConflict:
            raise SalesSchemaError(f"file {name}: the catalogue changed during this ingest; rerun the ingest") from None
    entry.rows_read = validated.rows_read
    entry.rows_accepted = len(checked.accepted)
    entry.rows_duplicate = checked.duplicates
    entry.rows_rejected = len(rejected)
    entry.dates = sorted({f"{d:%Y-%m-%d}" for d in checked.accepted["date"]})
    entry.warnings = warnings
    entry.finished_at = clock.stamp()
    key = store.commit(entry)
    if latest is not None:
        store.delete_stale_parts(entry.source, entry.data_sha16)
    return FileReport(
        name, entry.action, entry.rows_read, entry.rows_accepted, entry.rows_duplicate, entry.rows_rejected,
        entry.dates, "", warnings, entry.quarantine, key,
    )


def _rejected_rows(validation: pd.DataFrame, history: pd.DataFrame, raw: pd.DataFrame, name: str) -> pd.DataFrame:
    if history.empty:
        return validation
    raw_rows = raw.iloc[history["line"].to_numpy() - 2].reset_index(drop=True)
    extra = pd.concat([history[["line", "reason"]].reset_index(drop=True), raw_rows], axis=1)
    extra.insert(0, "source", name)
    combined = pd.concat([validation, extra], ignore_index=True) if len(validation) else extra
    return combined.sort_values("line").reset_index(drop=True)


def _correction_note(store: SalesStore, entry: LedgerEntry, accepted: pd.DataFrame) -> str:
    """Say exactly what a corrected file changes compared with the version it replaces."""
    before = store.load(only_source=entry.source)[list(KEY) + ["sales"]]
    after = accepted[list(KEY) + ["sales"]]
    merged = before.merge(after, on=list(KEY), how="outer", suffixes=("_before", "_after"), indicator=True)
    changed = int(((merged["_merge"] == "both") & (merged["sales_before"] != merged["sales_after"])).sum())
    added = int((merged["_merge"] == "right_only").sum())
    removed = int((merged["_merge"] == "left_only").sum())
    return (f"corrected file: replaces the version with sha256 {entry.previous_sha256[:16]}...; "
            f"{changed} value(s) changed, {added} row(s) added, {removed} row(s) withdrawn")


# ---- a run over the landing location -----------------------------------------------------------------------
def ingest_landing(store: SalesStore, landing: Landing, options: IngestOptions) -> list[FileReport]:
    """Ingest every pending landing file in name order (the flow does the same, one task per file)."""
    return [ingest_file(store, landing, info, options) for info in pending(landing, store)]


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


def store_objects(settings) -> ObjectStore:
    """The bucket seen by the trainer identity, as the sales store's object store."""
    return ObjectStore.from_settings(settings, role="trainer")
