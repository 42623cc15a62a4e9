"""The sales store: accepted sales as Parquet partitioned by date, and the ingest ledger that commits them.

Everything lives in one object store (the S3 bucket, or a local folder with the same interface):

    sales/date=YYYY-MM-DD/<source>~<sha16>.parquet       rows of one delivered file for one date
    sales/_catalog.json                                    known stores, items and series
    ledger/files/<source>/<seq>~<sha16>~<etag>.json        one immutable entry per processed file version
    quarantine/<source>/<sha16>/...                        rejected rows, or the whole file and its error

`<source>` is the landing file name made safe for a key; `<sha16>` the first 16 hex digits of its sha256.

The ledger is the commit record. A part counts only when the latest ledger entry of its source names the
part's sha16, and that entry is written last (`IfNoneMatch='*'`, so two ingests can never both commit the
same sequence number). A crash or an S3 outage between writing parts and writing the ledger therefore leaves
parts nobody reads; the rerun writes the same keys again and commits. A corrected file (same name, new
content) commits a new entry and its old parts stop counting at once; they are deleted afterwards. Reading
the committed state costs one listing of `ledger/files/` and one of `sales/`, no GETs.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Iterable

import pandas as pd

from shelfcast.contract.errors import IntegrityError
from shelfcast.contract.objects import AlreadyExists, ObjectMissing, Objects

SALES_PREFIX = "sales/"
LEDGER_PREFIX = "ledger/files/"
QUARANTINE_PREFIX = "quarantine/"
CATALOG_KEY = "sales/_catalog.json"
PART_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/([A-Za-z0-9._-]+)~([0-9a-f]{16})\.parquet$")
LEDGER_RE = re.compile(r"^([A-Za-z0-9._-]+)/(\d{6})~([0-9a-f]{16})~([A-Za-z0-9-]*)\.json$")


def source_id(name: str) -> str:
    """A landing file name as a key-safe id; names that had to change get a short hash so they stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "file"
    if safe == name:
        return safe
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def clean_etag(etag: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", etag or "")


@dataclass(frozen=True)
class Catalog:
    """The stores, items and series the store of history knows; rows naming other ids are rejected."""

    stores: frozenset[int]
    items: frozenset[int]
    series: frozenset[tuple[int, int]]

    def to_json(self) -> bytes:
        return json.dumps(
            {"stores": sorted(self.stores), "items": sorted(self.items), "series": sorted(map(list, self.series))},
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, body: bytes) -> "Catalog":
        data = json.loads(body)
        return cls(
            frozenset(int(s) for s in data["stores"]),
            frozenset(int(i) for i in data["items"]),
            frozenset((int(s), int(i)) for s, i in data.get("series", [])),
        )

    @classmethod
    def from_rows(cls, frame: pd.DataFrame) -> "Catalog":
        series = frozenset(zip(frame["store"].astype(int), frame["item"].astype(int)))
        return cls(frozenset(s for s, _ in series), frozenset(i for _, i in series), series)

    def with_ids(self, stores: Iterable[int] = (), items: Iterable[int] = (),
                 series: Iterable[tuple[int, int]] = ()) -> "Catalog":
        return Catalog(self.stores | set(stores), self.items | set(items), self.series | set(series))


@dataclass
class LedgerEntry:
    """One processed version of one landing file. Written once; the latest entry of a source is its state."""

    source: str
    name: str
    seq: int
    sha256: str
    bytes: int
    landing_etag: str
    action: str  # ingested | corrected | quarantined
    rows_read: int = 0
    rows_accepted: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    dates: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    previous_sha256: str = ""
    data_sha16: str = ""  # whose parts count; differs from the file's sha only for a quarantined correction
    started_at: str = ""
    finished_at: str = ""
    flow_run_id: str = ""

    @property
    def sha16(self) -> str:
        return self.sha256[:16]

    def key(self, prefix: str = LEDGER_PREFIX) -> str:
        data = self.data_sha16 or self.sha16
        return f"{prefix}{self.source}/{self.seq:06d}~{data}~{clean_etag(self.landing_etag)}.json"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, body: bytes) -> "LedgerEntry":
        return cls(**json.loads(body))


@dataclass(frozen=True)
class LedgerRef:
    """What the key of a ledger entry tells without reading it (`sha16` is the entry's data sha16)."""

    source: str
    seq: int
    sha16: str
    etag: str
    key: str


@dataclass(frozen=True)
class PartRef:
    day: date
    source: str
    sha16: str
    key: str


class SalesStore:
    """Committed sales rows, their ledger and their quarantine, in one object store."""

    def __init__(self, objects: Objects, workers: int = 8):
        self.objects = objects
        self.workers = workers

    # ---- ledger -----------------------------------------------------------------------------------------
    def ledger_index(self) -> dict[str, LedgerRef]:
        """The latest ledger entry of every source, from one listing."""
        latest: dict[str, LedgerRef] = {}
        for info in self.objects.list(LEDGER_PREFIX):
            match = LEDGER_RE.match(info.key[len(LEDGER_PREFIX):])
            if not match:
                continue
            ref = LedgerRef(match[1], int(match[2]), match[3], match[4], info.key)
            if ref.source not in latest or ref.seq > latest[ref.source].seq:
                latest[ref.source] = ref
        return latest

    def ledger_entry(self, ref: LedgerRef) -> LedgerEntry:
        return LedgerEntry.from_json(self.objects.get(ref.key).body)

    def ledger_history(self, source: str | None = None) -> list[LedgerEntry]:
        """Every ledger entry (of one source when given), oldest first."""
        prefix = f"{LEDGER_PREFIX}{source}/" if source else LEDGER_PREFIX
        keys = [info.key for info in self.objects.list(prefix) if info.key.endswith(".json")]
        entries = self._map(lambda key: LedgerEntry.from_json(self.objects.get(key).body), keys)
        return sorted(entries, key=lambda e: (e.finished_at, e.source, e.seq))

    def commit(self, entry: LedgerEntry) -> str:
        """Write the ledger entry: from here on the entry's parts count. Refuses a sequence number taken."""
        try:
            self.objects.put_if_absent(entry.key(), entry.to_json(), "application/json")
        except AlreadyExists:
            raise IntegrityError(
                f"ledger entry {entry.seq} of {entry.name} was written by another ingest run meanwhile; "
                "rerun the ingest flow, it will see the new state"
            ) from None
        return entry.key()

    # ---- parts --------------------------------------------------------------------------------------------
    def part_key(self, day: date, source: str, sha16: str) -> str:
        return f"{SALES_PREFIX}date={day:%Y-%m-%d}/{source}~{sha16}.parquet"

    def all_parts(self) -> list[PartRef]:
        parts = []
        for info in self.objects.list(f"{SALES_PREFIX}date="):
            match = PART_RE.match(info.key[len(SALES_PREFIX):])
            if match:
                parts.append(PartRef(date.fromisoformat(match[1]), match[2], match[3], info.key))
        return parts

    def committed_parts(self, start: date | None = None, end: date | None = None,
                        exclude_source: str | None = None, only_source: str | None = None) -> list[PartRef]:
        """Parts whose source's latest ledger entry names them, optionally within [start, end]."""
        index = self.ledger_index()
        return [
            part
            for part in self.all_parts()
            if part.source in index
            and index[part.source].sha16 == part.sha16
            and part.source != exclude_source
            and (only_source is None or part.source == only_source)
            and (start is None or part.day >= start)
            and (end is None or part.day <= end)
        ]

    def uncommitted_parts(self) -> list[PartRef]:
        """Parts no ledger entry names: left by an interrupted ingest, or superseded by a correction."""
        index = self.ledger_index()
        return [p for p in self.all_parts() if p.source not in index or index[p.source].sha16 != p.sha16]

    def dates(self) -> list[date]:
        return sorted({part.day for part in self.committed_parts()})

    def write_parts(self, frame: pd.DataFrame, source: str, sha16: str) -> list[str]:
        """Write one Parquet part per date of `frame` (columns date, store, item, sales); returns the keys."""
        jobs = []
        for day, rows in frame.groupby(frame["date"].dt.date, sort=True):
            body = io.BytesIO()
            rows[["date", "store", "item", "sales"]].sort_values(["store", "item"]).to_parquet(body, index=False)
            jobs.append((self.part_key(day, source, sha16), body.getvalue()))
        self._map(lambda job: self.objects.put(job[0], job[1], "application/vnd.apache.parquet"), jobs)
        return [key for key, _ in jobs]

    def delete_stale_parts(self, source: str, keep_sha16: str) -> list[str]:
        """Delete the parts of `source` that its latest entry does not name (after a correction or a crash)."""
        stale = [p.key for p in self.all_parts() if p.source == source and p.sha16 != keep_sha16]
        self._map(self.objects.delete, stale)
        return stale

    def load(self, start: date | None = None, end: date | None = None, exclude_source: str | None = None,
             with_source: bool = False, only_source: str | None = None) -> pd.DataFrame:
        """Committed rows within [start, end], sorted by store, item, date. Raises if a key appears twice."""
        parts = self.committed_parts(start, end, exclude_source, only_source)
        frames = self._map(lambda part: self._read_part(part, with_source), parts)
        columns = ["date", "store", "item", "sales"] + (["source"] if with_source else [])
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                columns, ["datetime64[us]", "int64", "int64", "int64", "object"])})
        frame = pd.concat(frames, ignore_index=True)
        doubled = frame.duplicated(subset=["date", "store", "item"], keep=False)
        if doubled.any():
            first = frame[doubled].iloc[0]
            raise IntegrityError(
                f"sales store: {int(doubled.sum())} rows share a (date, store, item) key, first "
                f"{first['date']:%Y-%m-%d} store {first['store']} item {first['item']}; "
                "run `shelfcast ingest verify` to find the parts involved"
            )
        return frame.sort_values(["store", "item", "date"]).reset_index(drop=True)

    def _read_part(self, part: PartRef, with_source: bool) -> pd.DataFrame:
        frame = pd.read_parquet(io.BytesIO(self.objects.get(part.key).body))
        frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[us]")
        if with_source:
            frame["source"] = part.source
        return frame

    # ---- catalogue ------------------------------------------------------------------------------------------
    def catalog(self) -> tuple[Catalog | None, str | None]:
        """The catalogue and its ETag (None, None before the first ingest)."""
        try:
            fetched = self.objects.get(CATALOG_KEY)
        except ObjectMissing:
            return None, None
        return Catalog.from_json(fetched.body), fetched.etag

    def save_catalog(self, catalog: Catalog, etag: str | None) -> None:
        """Compare-and-swap the catalogue; a concurrent change raises `WriteConflict`."""
        self.objects.put_if_match(CATALOG_KEY, catalog.to_json(), etag, "application/json")

    # ---- quarantine ---------------------------------------------------------------------------------------
    def quarantine_prefix(self, source: str, sha16: str) -> str:
        return f"{QUARANTINE_PREFIX}{source}/{sha16}/"

    def _map(self, fn, items):
        items = list(items)
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(fn, items))
