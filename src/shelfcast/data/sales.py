"""The sales table: accepted sales rows in a Delta Lake table keyed by (date, store, item), and the ingest ledger.

Everything lives in one object store (the S3 bucket, or a local folder with the same interface):

    tables/sales/                                   Delta table: date, store, item, sales, source
    tables/series/                                  Delta table: store, item, first_date, source (the series catalogue)
    catalog/ids.json                                known store and item ids (small: thousands at most)
    ledger/files/<source>/<seq>~<sha16>~<etag>.json one entry per processed file version
    ledger/seq/<source>/<seq>.json                  the claim of a sequence number (written once)
    archive/<source>/<seq>~<sha16>~<etag>.csv       every landing file, moved here once ledger entry <seq> records it
    quarantine/<source>/<sha16>/...                 rejected rows, or the whole file and its error

`<source>` is the landing file name made safe for a key; `<sha16>` the first 16 hex digits of its sha256.

Exactly once, per key. An ingest reads the table at version v, checks its rows against the keys committed at v
and commits its rows as version v+1 and nothing else (`max_commit_retries=0`; Delta's commit is a
`PUT If-None-Match: *` of `_delta_log/<v+1>.json`). When another writer took v+1 first, the commit fails and
the ingest checks again against the new state: no two commits can both add the same key, whatever their timing.
Each commit also records the application transactions `src:<source>` and `sha:<source>~<sha16>` at the file's
ledger sequence number, so a run killed between the table commit and the ledger entry sees on its rerun that its
rows are in and only writes the entry. A corrected file replaces the rows of its source in one commit
(overwrite where `source = ...`); any earlier version can be read back by time travel until `vacuum` removes its
files, which `maintain` keeps for `retention_days`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shelfcast.contract import clock
from shelfcast.contract.objects import AlreadyExists, LocalObjects, ObjectMissing, Objects
from shelfcast.data.schema import pack_series

SALES_TABLE = "tables/sales"
SERIES_TABLE = "tables/series"
IDS_KEY = "catalog/ids.json"
LEDGER_PREFIX = "ledger/files/"
LEDGER_CLAIMS_PREFIX = "ledger/seq/"
ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"
LEDGER_RE = re.compile(r"^([A-Za-z0-9._-]+)/(\d{6})~([0-9a-f]{16})~([A-Za-z0-9-]*)\.json$")
SALES_SCHEMA = pa.schema([
    pa.field("date", pa.date32(), nullable=False),
    pa.field("store", pa.int64(), nullable=False),
    pa.field("item", pa.int64(), nullable=False),
    pa.field("sales", pa.int64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
])
SERIES_SCHEMA = pa.schema([
    pa.field("store", pa.int64(), nullable=False),
    pa.field("item", pa.int64(), nullable=False),
    pa.field("first_date", pa.date32(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
])
DEFAULT_RETENTION_DAYS = 14
COMMIT_ATTEMPTS = 25


def source_id(name: str) -> str:
    """A landing file name as a key-safe id; names that had to change get a short hash so they stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "file"
    if safe == name:
        return safe
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def clean_etag(etag: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", etag or "")


def sql_text(value: str) -> str:
    """A string literal for a Delta predicate (source ids are key-safe already; quotes doubled regardless)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Catalog:
    """The store and item ids the history knows; rows naming other ids are rejected. Series live in a table."""

    stores: frozenset[int]
    items: frozenset[int]

    def to_json(self) -> bytes:
        return json.dumps({"stores": sorted(self.stores), "items": sorted(self.items)}).encode()

    @classmethod
    def from_json(cls, body: bytes) -> "Catalog":
        data = json.loads(body)
        return cls(frozenset(int(s) for s in data["stores"]), frozenset(int(i) for i in data["items"]))

    def with_ids(self, stores: Iterable[int] = (), items: Iterable[int] = ()) -> "Catalog":
        return Catalog(self.stores | set(stores), self.items | set(items))


@dataclass
class LedgerEntry:
    """One processed version of one landing file. Written once; the latest entry of a source is its state."""

    source: str
    name: str
    seq: int
    sha256: str
    bytes: int
    landing_etag: str
    action: str  # ingested | corrected | redelivered | quarantined | held | approved | restored | migrated
    rows_read: int = 0
    rows_accepted: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    dates: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    previous_sha256: str = ""
    data_sha16: str = ""  # whose rows count; differs from the file's sha for a quarantined or held correction
    started_at: str = ""
    finished_at: str = ""
    flow_run_id: str = ""
    table_version: int = -1  # the sales table version holding this entry's rows (-1: no table commit)
    rows_withdrawn: int = 0  # rows of the earlier version this one no longer delivers
    series_added: int = 0
    approved_by: str = ""
    approval_reason: str = ""
    restored_from_seq: int = 0

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
        data = json.loads(body)
        data.pop("parts", None)  # Parquet parts of the store before the sales table (`shelfcast ingest migrate`)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class LedgerRef:
    """What the key of a ledger entry tells without reading it (`sha16` is the entry's data sha16)."""

    source: str
    seq: int
    sha16: str
    etag: str
    key: str


class TableMoved(Exception):
    """Another writer committed the version this commit was checked against: check again and retry."""


def _commit_failed(exc: Exception) -> bool:
    from deltalake.exceptions import CommitFailedError

    return isinstance(exc, CommitFailedError)


class SalesTable:
    """Committed sales rows (a Delta table), the series catalogue, the ledger and the quarantine, in one bucket."""

    def __init__(self, objects: Objects, storage_options: dict[str, str] | None = None, workers: int = 8):
        self.objects = objects
        self.workers = workers
        self.storage_options = storage_options if storage_options is not None else delta_storage_options(objects)

    # ---- the Delta tables ---------------------------------------------------------------------------------
    def uri(self, name: str = SALES_TABLE) -> str:
        if isinstance(self.objects, LocalObjects):
            return str(self.objects.root.resolve() / name)
        return f"s3://{self.objects.bucket}/{name}"

    def describe(self) -> str:
        return self.uri()

    def table(self, version: int | None = None, name: str = SALES_TABLE):
        """The Delta table at `version` (latest when None), created empty the first time."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri = self.uri(name)
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            if version is not None:
                raise
        schema = SALES_SCHEMA if name == SALES_TABLE else SERIES_SCHEMA
        if isinstance(self.objects, LocalObjects):
            Path(uri).mkdir(parents=True, exist_ok=True)
        try:
            DeltaTable.create(uri, schema, mode="ignore", storage_options=self.storage_options,
                              configuration=TABLE_CONFIG)
        except Exception:  # another process created it at the same moment: its version 0 is as good as ours
            pass
        return DeltaTable(uri, storage_options=self.storage_options)

    def version(self) -> int:
        return self.table().version()

    def dataset(self, version: int | None = None, name: str = SALES_TABLE):
        return self.table(version, name).to_pyarrow_dataset()

    def read(self, filter=None, columns: list[str] | None = None, version: int | None = None,
             dt=None, name: str = SALES_TABLE) -> pa.Table:
        """Rows matching a pyarrow `filter`, reading only the files whose statistics may match."""
        dataset = (dt or self.table(version, name)).to_pyarrow_dataset()
        return dataset.to_table(filter=filter, columns=columns)

    @staticmethod
    def committed(dt, source: str, sha16: str, seq: int) -> bool:
        """Whether the table at `dt` holds the rows of ledger entry `seq` of `source` (content `sha16`)."""
        return dt.transaction_version(f"sha:{source}~{sha16}") == seq

    @staticmethod
    def has_source(dt, source: str) -> bool:
        """Whether any commit ever wrote rows of `source` (then a new version replaces them)."""
        return dt.transaction_version(f"src:{source}") is not None

    def commit_rows(self, dt, rows: pd.DataFrame, source: str, sha16: str, seq: int,
                    metadata: dict[str, str] | None = None) -> int:
        """Commit `rows` of `source` as the version after `dt`, replacing the rows `source` had; returns it.

        Nothing is rebased: when another writer committed after `dt` was read, this raises `TableMoved`, because
        the caller's key checks ran against `dt` and must run again.
        """
        from deltalake import CommitProperties, Transaction, write_deltalake

        data = sales_batches(rows, source)
        props = CommitProperties(
            max_commit_retries=0,
            custom_metadata={"shelfcast.source": source, "shelfcast.sha16": sha16, "shelfcast.seq": str(seq),
                             **(metadata or {})},
            app_transactions=[Transaction(f"src:{source}", seq), Transaction(f"sha:{source}~{sha16}", seq)],
        )
        replace = self.has_source(dt, source)
        try:
            if replace and len(rows) == 0:
                dt.delete(f"source = {sql_text(source)}", commit_properties=props)
            elif replace:
                write_deltalake(dt, data, mode="overwrite", predicate=f"source = {sql_text(source)}",
                                commit_properties=props)
            else:
                self._append(dt, data, props)
        except Exception as exc:
            if _commit_failed(exc):
                raise TableMoved(f"the sales table moved past version {dt.version()}") from None
            raise
        dt.update_incremental()
        return dt.version()

    def _append(self, dt, data: pa.RecordBatchReader, props) -> None:
        """Append `data` as one commit: Parquet files written batch by batch, uploaded, then added to the log.

        The same commit `write_deltalake` makes (add actions with their statistics, the application
        transactions), but with memory bounded by one batch: delta-rs' writer holds a few hundred MB for a large
        file. When the commit fails, the uploaded files are deleted (no version refers to them)."""
        import uuid
        from deltalake.transaction import AddAction

        with tempfile.TemporaryDirectory(prefix="shelfcast-append-") as tmp:
            name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
            path = Path(tmp) / name
            stats = FileStats(SALES_SCHEMA)
            with pq.ParquetWriter(path, SALES_SCHEMA, compression="snappy") as writer:
                for batch in data:
                    writer.write_batch(batch, row_group_size=1 << 20)
                    stats.add(batch)
                    del batch
                    pa.default_memory_pool().release_unused()
            if stats.rows == 0:
                return self._commit_actions(dt, [], props)
            key = f"{SALES_TABLE}/{name}"
            self.objects.upload(path, key)
            add = AddAction(name, path.stat().st_size, {}, int(clock.now().timestamp() * 1000), True, stats.json())
        try:
            self._commit_actions(dt, [add], props)
        except Exception:
            self.objects.delete(key)
            raise

    @staticmethod
    def _commit_actions(dt, actions: list, props) -> None:
        dt.create_write_transaction(actions, mode="append", schema=SALES_SCHEMA, commit_properties=props)

    # ---- reading ------------------------------------------------------------------------------------------
    def load(self, start: date | None = None, end: date | None = None, exclude_source: str | None = None,
             with_source: bool = False, only_source: str | None = None, stores: list[int] | None = None,
             items: list[int] | None = None, version: int | None = None, dt=None) -> pd.DataFrame:
        """Committed rows within [start, end] of the given stores and items, sorted by store, item, date.

        Every condition goes down to the reader: files whose statistics cannot match are never opened. Each
        batch is written straight into its rows of the frame (`to_frame`), so memory peaks near the frame
        returned, not at Arrow's copy plus it.
        """
        columns = ["date", "store", "item", "sales"] + (["source"] if with_source else [])
        dataset = (dt or self.table(version)).to_pyarrow_dataset()
        where = row_filter(start, end, stores, items, exclude_source, only_source)
        by_source = exclude_source is not None or only_source is not None
        return to_frame(RowGroups(dataset, where, ["source"] if by_source else []), columns)

    def dates(self, start: date | None = None, end: date | None = None, dt=None) -> list[date]:
        """Days with committed rows (within [start, end]), reading the date column only."""
        table = self.read(row_filter(start, end), ["date"], dt=dt)
        return sorted(pc.unique(table.column("date")).to_pylist())

    def newest_date(self, dt=None) -> date | None:
        """The newest day with rows, from the file statistics of the table's log (no data file is read)."""
        actions = pa.table((dt or self.table()).get_add_actions(flatten=True))
        if actions.num_rows == 0 or "max.date" not in actions.column_names:
            return None
        return pc.max(actions.column("max.date")).as_py()

    def verify(self) -> tuple[int, list[str]]:
        """Rows and the keys that appear more than once (none, unless the table was written around this class)."""
        table = self.read(columns=["date", "store", "item"])
        counts = table.group_by(["date", "store", "item"]).aggregate([([], "count_all")])
        doubled = counts.filter(pc.greater(counts.column("count_all"), 1))
        keys = [f"{r['date']} store {r['store']} item {r['item']}" for r in doubled.slice(0, 20).to_pylist()]
        return table.num_rows, keys

    # ---- the series catalogue ------------------------------------------------------------------------------
    def known_series(self, stores: Iterable[int] | None = None) -> pd.DataFrame:
        """Series (store, item) of the catalogue, of the given stores only when given."""
        stores = None if stores is None else sorted({int(s) for s in stores})
        where = None if stores is None else pc.field("store").isin(pa.array(stores, pa.int64()))
        table = self.read(where, ["store", "item"], name=SERIES_TABLE)
        return table.to_pandas().drop_duplicates(ignore_index=True)

    def add_series(self, series: pd.DataFrame, source: str) -> int:
        """Add the series (store, item, first_date) the catalogue lacks; returns how many were new.

        Checked against the catalogue's version and committed as the next one, so two ingests adding the same
        series never add it twice."""
        from deltalake import CommitProperties, write_deltalake

        for attempt in range(COMMIT_ATTEMPTS):
            dt = self.table(name=SERIES_TABLE)
            known = self.read(pc.field("store").isin(pa.array(sorted(series["store"].unique()), pa.int64())),
                              ["store", "item"], dt=dt).to_pandas()
            fresh = new_series(series, known)
            if fresh.empty:
                return 0
            data = pa.table({"store": fresh["store"].to_numpy(np.int64), "item": fresh["item"].to_numpy(np.int64),
                             "first_date": pa.array(pd.to_datetime(fresh["first_date"]).dt.date, pa.date32()),
                             "source": pa.array([source] * len(fresh), pa.string())}, schema=SERIES_SCHEMA)
            try:
                write_deltalake(dt, data, mode="append", commit_properties=CommitProperties(max_commit_retries=0))
                return len(fresh)
            except Exception as exc:
                if not _commit_failed(exc):
                    raise
                backoff(attempt)
        raise TableMoved(f"the series catalogue kept changing during {COMMIT_ATTEMPTS} attempts; rerun the ingest")

    def catalog(self) -> tuple[Catalog | None, str | None]:
        """The known store and item ids and their ETag (None, None before the first ingest)."""
        try:
            fetched = self.objects.get(IDS_KEY)
        except ObjectMissing:
            return None, None
        return Catalog.from_json(fetched.body), fetched.etag

    def save_catalog(self, catalog: Catalog, etag: str | None) -> None:
        """Compare-and-swap the ids; a concurrent change raises `WriteConflict`."""
        self.objects.put_if_match(IDS_KEY, catalog.to_json(), etag, "application/json")

    # ---- ledger -------------------------------------------------------------------------------------------
    def _refs(self, prefix: str) -> Iterator[LedgerRef]:
        for info in self.objects.list(prefix):
            match = LEDGER_RE.match(info.key[len(LEDGER_PREFIX):])
            if match:
                yield LedgerRef(match[1], int(match[2]), match[3], match[4], info.key)

    def ledger_index(self) -> dict[str, LedgerRef]:
        """The latest ledger entry of every source, from one listing."""
        latest: dict[str, LedgerRef] = {}
        for ref in self._refs(LEDGER_PREFIX):
            if ref.source not in latest or ref.seq > latest[ref.source].seq:
                latest[ref.source] = ref
        return latest

    def latest(self, source: str) -> LedgerRef | None:
        """The latest ledger entry of one source, listing that source's entries only."""
        return max(self._refs(f"{LEDGER_PREFIX}{source}/"), key=lambda ref: ref.seq, default=None)

    def ledger_entry(self, ref: LedgerRef) -> LedgerEntry:
        return LedgerEntry.from_json(self.objects.get(ref.key).body)

    def ledger_history(self, source: str | None = None) -> list[LedgerEntry]:
        """Every ledger entry (of one source when given), oldest first."""
        prefix = f"{LEDGER_PREFIX}{source}/" if source else LEDGER_PREFIX
        keys = [ref.key for ref in self._refs(prefix)]
        entries = self._map(lambda key: LedgerEntry.from_json(self.objects.get(key).body), keys)
        return sorted(entries, key=lambda e: (e.finished_at, e.source, e.seq))

    def commit(self, entry: LedgerEntry) -> str:
        """Write the ledger entry. Raises `AlreadyExists` when another run took this sequence number.

        The sequence number is claimed first (`ledger/seq/<source>/<seq>`, `IfNoneMatch='*'`, holding the entry):
        entry keys carry the landing ETag, so two runs that saw different ETags of one file would otherwise both
        write entry `seq`. The entry under `ledger/files/` follows; a run that finds the claim taken completes an
        entry its writer left unwritten (killed in between), so the listing always catches up."""
        body = entry.to_json()
        try:
            self.objects.put_if_absent(self._claim_key(entry.source, entry.seq), body, "application/json")
        except AlreadyExists:
            winner = LedgerEntry.from_json(self.objects.get(self._claim_key(entry.source, entry.seq)).body)
            if self.objects.head(winner.key()) is None:
                self.objects.put(winner.key(), winner.to_json(), "application/json")
            raise AlreadyExists(f"ledger entry {entry.seq} of {entry.name} was written by another ingest run "
                                f"({winner.action}, sha256 {winner.sha256[:16]}...)") from None
        self.objects.put(entry.key(), body, "application/json")
        return entry.key()

    @staticmethod
    def _claim_key(source: str, seq: int) -> str:
        return f"{LEDGER_CLAIMS_PREFIX}{source}/{seq:06d}.json"

    # ---- upkeep -------------------------------------------------------------------------------------------
    def maintain(self, retention_days: int = DEFAULT_RETENTION_DAYS) -> dict:
        """Compaction, a checkpoint and vacuum of both tables (the nightly routine).

        Vacuum removes only files that left the table more than `retention_days` ago, so every version of the
        last `retention_days` (every night that trained on it) stays readable by time travel."""
        report = {}
        for name in (SALES_TABLE, SERIES_TABLE):
            dt = self.table(name=name)
            files_before = len(dt.file_uris())
            compacted = dt.optimize.compact()
            dt.update_incremental()
            dt.create_checkpoint()
            removed = dt.vacuum(retention_hours=retention_days * 24, dry_run=False, enforce_retention_duration=False)
            dt.cleanup_metadata()
            report[name] = {"files_before": files_before, "files_after": len(dt.file_uris()),
                            "files_compacted": compacted.get("numFilesRemoved", 0), "files_vacuumed": len(removed),
                            "version": dt.version()}
        return report

    # ---- quarantine and archive ---------------------------------------------------------------------------
    def quarantine_prefix(self, source: str, sha16: str) -> str:
        return f"{QUARANTINE_PREFIX}{source}/{sha16}/"

    @staticmethod
    def archive_key(source: str, seq: int, sha16: str, etag: str) -> str:
        """Where a landing file goes once ledger entry `seq` of `source` records it (`sha16` of its bytes)."""
        return f"{ARCHIVE_PREFIX}{source}/{seq:06d}~{sha16}~{clean_etag(etag)}.csv"

    def _map(self, fn, items):
        from concurrent.futures import ThreadPoolExecutor

        items = list(items)
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(fn, items))


TABLE_CONFIG = {
    "delta.logRetentionDuration": "interval 60 days",  # time travel needs the log as long as the files
    "delta.deletedFileRetentionDuration": f"interval {DEFAULT_RETENTION_DAYS} days",
}


def backoff(attempt: int) -> None:
    """Jittered, capped wait before checking again against a table another writer just moved."""
    time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))


def delta_storage_options(objects: Objects) -> dict[str, str]:
    """What delta-rs needs to reach the bucket of an `ObjectStore`: its endpoint, region and credentials."""
    if isinstance(objects, LocalObjects) or not hasattr(objects, "client"):
        return {}
    client = objects.client
    # boto3 has no public accessor for a client's credentials; the signer holds the ones it signs with.
    credentials = client._request_signer._credentials.get_frozen_credentials()
    options = {"AWS_ACCESS_KEY_ID": credentials.access_key, "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
               "AWS_REGION": client.meta.region_name or "us-east-1"}
    if credentials.token:
        options["AWS_SESSION_TOKEN"] = credentials.token
    endpoint = client.meta.endpoint_url
    if endpoint and "amazonaws.com" not in endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


def row_filter(start: date | None = None, end: date | None = None, stores: list[int] | None = None,
               items: list[int] | None = None, exclude_source: str | None = None, only_source: str | None = None):
    """A pyarrow filter for the reader (None: every row)."""
    terms = []
    if start is not None:
        terms.append(pc.field("date") >= pa.scalar(start, pa.date32()))
    if end is not None:
        terms.append(pc.field("date") <= pa.scalar(end, pa.date32()))
    if stores is not None:
        terms.append(pc.field("store").isin(pa.array(sorted(stores), pa.int64())))
    if items is not None:
        terms.append(pc.field("item").isin(pa.array(sorted(items), pa.int64())))
    if exclude_source is not None:
        terms.append(pc.field("source") != exclude_source)
    if only_source is not None:
        terms.append(pc.field("source") == only_source)
    where = None
    for term in terms:
        where = term if where is None else where & term
    return where


def sales_arrow(rows: pa.Table | pd.DataFrame, source: str) -> pa.Table:
    """Rows (date, store, item, sales) as the table's Arrow schema, tagged with their source."""
    if isinstance(rows, pd.DataFrame):
        day = pd.to_datetime(rows["date"]).to_numpy().astype("datetime64[D]")
        rows = pa.table({"date": pa.array(day, pa.date32()), "store": rows["store"].to_numpy(np.int64),
                         "item": rows["item"].to_numpy(np.int64), "sales": rows["sales"].to_numpy(np.int64)})
    rows = rows.select(["date", "store", "item", "sales"])
    tagged = rows.append_column("source", pa.array([source] * rows.num_rows, pa.string()))
    return tagged.cast(SALES_SCHEMA)


def sales_batches(rows: pd.DataFrame, source: str, batch_rows: int = 1 << 20) -> pa.RecordBatchReader:
    """`rows` as the table's Arrow schema, a million rows at a time (the source column is built per batch)."""
    def batches():
        for start in range(0, len(rows), batch_rows):
            yield from sales_arrow(rows.iloc[start:start + batch_rows], source).to_batches()

    return pa.RecordBatchReader.from_batches(SALES_SCHEMA, batches())


FRAME_DTYPES = {"date": "datetime64[us]", "store": np.int64, "item": np.int64, "sales": np.int64, "source": object}
GRID_CELLS_PER_ROW = 4  # a (series x day) grid larger than this many cells a row costs more than sorting the rows
MAX_GRID_ID = 2**31 - 1  # store and item ids the grid packs into one int64 (the ingest accepts no others)
READ_BATCH_ROWS = 16_384
SERIES_MERGE_KEYS = 1 << 20  # series keys gathered from batches before they are merged into the sorted ones


class RowGroups:
    """The Parquet row groups of `dataset` whose statistics may match `where`, found once and read as often as a
    load needs, a batch of `READ_BATCH_ROWS` rows at a time. The dataset's own scanner decodes whole row groups
    (a million rows) and reads several ahead: ~90 MB in flight on a 7 M row load, where this holds a few MB.
    `filter_columns`: columns `where` reads besides date, store and item."""

    def __init__(self, dataset, where, filter_columns: list[str]):
        self.where, self.filter_columns = where, filter_columns
        self.files = []
        for fragment in dataset.get_fragments(filter=where):
            groups = [piece.row_groups[0].id for piece in fragment.split_by_row_group(filter=where)]
            if groups:
                self.files.append((fragment, groups))

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        read = columns + [name for name in self.filter_columns if name not in columns]
        for fragment, groups in self.files:
            with fragment.open() as source:
                parquet = pq.ParquetFile(source, metadata=fragment.metadata)
                for group in groups:  # one at a time: `pre_buffer` holds the compressed row groups it is given
                    for batch in parquet.iter_batches(READ_BATCH_ROWS, row_groups=[group], columns=read):
                        yield (batch if self.where is None else batch.filter(self.where)).select(columns)


def to_frame(row_groups: RowGroups, columns: list[str]) -> pd.DataFrame:
    """The rows of `row_groups` as the frame the project reads: date as datetime64[us], ids and sales int64, sorted
    by store, item, date.

    The frame's columns are allocated once and every batch is written straight into its final rows, found on a
    grid of (series, day) cells (`SeriesGrid`), so the peak is the frame plus a batch and the grid. Rows the grid
    cannot place (ids outside 0..2**31-1, far fewer rows than cells, a key held twice) are sorted instead
    (`sorted_frame`), which returns every row, duplicates included, for `verify` and the key checks to see."""
    grid = SeriesGrid.of(row_groups)
    if grid is None:
        return sorted_frame(row_groups.batches(columns), columns)
    data = {name: np.empty(grid.rows, FRAME_DTYPES[name]) for name in columns}
    for batch in row_groups.batches(columns):
        rows = grid.rows_of(batch)
        for name in columns:
            data[name][rows] = column_values(batch, name)
    return pd.DataFrame(data, copy=False)


def column_values(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """One column of a batch as numpy: date as datetime64[D] (cast to the frame's unit when stored)."""
    column = batch.column(name)
    if name == "date":
        return column.cast(pa.int32()).to_numpy().astype("datetime64[D]")
    if name == "source":
        return column.to_numpy(zero_copy_only=False).astype(object)
    return column.to_numpy().astype(np.int64, copy=False)


def packed_series(batch: pa.RecordBatch) -> np.ndarray | None:
    """(store, item) of each row as one int64, store * 2**32 + item, sorting as the pair does (None: an id the
    packing cannot hold)."""
    store, item = batch.column("store").to_numpy(), batch.column("item").to_numpy()
    if len(store) and (min(store.min(), item.min()) < 0 or max(store.max(), item.max()) > MAX_GRID_ID):
        return None
    return pack_series(store, item)


@dataclass
class SeriesGrid:
    """Where each row of a load goes in the frame: the series found (packed, sorted) by the days from `first_day`,
    one cell per (series, day), and a row's position the number of occupied cells before its own (None: every
    cell occupied, the position is the cell)."""

    series: np.ndarray
    first_day: int
    days: int
    rows: int
    position: np.ndarray | None

    @classmethod
    def of(cls, row_groups: RowGroups) -> "SeriesGrid | None":
        """Two passes over the key columns: the series and days, then which cells hold a row (None: sort)."""
        found, pending, rows, first_day, last_day = np.zeros(0, np.int64), [], 0, None, None
        for batch in row_groups.batches(["store", "item", "date"]):
            keys = packed_series(batch)
            if keys is None:
                return None
            if not len(keys):
                continue
            pending.append(pd.unique(keys))
            if sum(map(len, pending)) > max(len(found), SERIES_MERGE_KEYS):  # memory bounded by the series
                found, pending = np.unique(np.concatenate([found, *pending])), []
            low, high = pc.min_max(batch.column("date").cast(pa.int32())).values()
            first_day = low.as_py() if first_day is None else min(first_day, low.as_py())
            last_day = high.as_py() if last_day is None else max(last_day, high.as_py())
            rows += len(keys)
        if rows == 0:
            return None
        series = np.unique(np.concatenate([found, *pending]))
        grid = cls(series, first_day, last_day - first_day + 1, rows, None)
        cells = len(series) * grid.days
        if cells > GRID_CELLS_PER_ROW * rows:
            return None
        occupied = np.zeros(cells, bool)
        for batch in row_groups.batches(["store", "item", "date"]):
            occupied[grid.cells(batch)] = True
        held = np.count_nonzero(occupied)
        if held < rows:  # a (date, store, item) key held by more than one row
            return None
        if held < cells:
            grid.position = np.cumsum(occupied, dtype=np.int32 if rows < 2**31 else np.int64)
            grid.position -= 1
        return grid

    def cells(self, batch: pa.RecordBatch) -> np.ndarray:
        days = batch.column("date").cast(pa.int32()).to_numpy()
        return np.searchsorted(self.series, packed_series(batch)) * self.days + (days - self.first_day)

    def rows_of(self, batch: pa.RecordBatch) -> np.ndarray:
        """The frame row of each row of `batch`."""
        cells = self.cells(batch)
        return cells if self.position is None else self.position[cells]


def sorted_frame(batches: Iterable[pa.RecordBatch], columns: list[str]) -> pd.DataFrame:
    """`to_frame` for rows the grid cannot place: each batch becomes numpy columns at once and is dropped, then
    the rows are sorted by store, item, date, permuting one column at a time."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    for batch in batches:
        for name in columns:
            values = column_values(batch, name)
            chunks[name].append(values.astype("datetime64[us]") if name == "date" else values)
    data = {name: np.concatenate(parts) if parts else np.zeros(0, dtype=FRAME_DTYPES[name])
            for name, parts in chunks.items()}
    del chunks
    order = np.lexsort((data["date"], data["item"], data["store"]))
    for name in columns:
        data[name] = data[name][order]
    del order
    return pd.DataFrame(data, copy=False)


class FileStats:
    """The statistics of a data file's add action (row count, and per column minimum, maximum and nulls), as the
    Delta protocol writes them and readers use to skip files."""

    def __init__(self, schema: pa.Schema):
        self.schema, self.rows = schema, 0
        self.low: dict[str, object] = {}
        self.high: dict[str, object] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.rows += batch.num_rows
        for name in self.schema.names:
            low, high = (value.as_py() for value in pc.min_max(batch.column(name)).values())
            self.low[name] = low if name not in self.low else min(self.low[name], low)
            self.high[name] = high if name not in self.high else max(self.high[name], high)

    def json(self) -> str:
        text = lambda v: v.isoformat() if isinstance(v, date) else v  # noqa: E731 - dates as the log writes them
        return json.dumps({"numRecords": self.rows,
                           "minValues": {k: text(v) for k, v in self.low.items()},
                           "maxValues": {k: text(v) for k, v in self.high.items()},
                           "nullCount": {name: 0 for name in self.schema.names}})


def new_series(series: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """Rows of `series` (store, item, first_date) whose (store, item) is not in `known`."""
    firsts = series.groupby(["store", "item"], as_index=False)["first_date"].min()
    if known.empty:
        return firsts
    merged = firsts.merge(known.drop_duplicates(), on=["store", "item"], how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", ["store", "item", "first_date"]].reset_index(drop=True)
