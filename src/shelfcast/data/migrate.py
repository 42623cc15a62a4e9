"""`shelfcast ingest migrate`: move a sales store of Parquet parts by date into the sales table.

The store before the sales table kept `sales/date=YYYY-MM-DD/<source>~<sha16>.parquet`, one part per file and
day, and counted a part only when the latest ledger entry of its source named its sha16; the catalogue was one
JSON (`sales/_catalog.json`) holding every series. Migration reads exactly the counted parts, streams them into
the sales table as one commit (so a crash leaves either nothing or everything moved) that records every
source's application transactions as an ingest would, moves the series into the series table and the ids into
`catalog/ids.json`, then writes a `migrated` ledger entry per source naming the table version. A rerun skips
the sources the table already has and writes only the ledger entries still missing. The ledger keeps its
history; `--delete-old` removes the old parts afterwards.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, replace
from datetime import date

import pandas as pd
import pyarrow as pa

from shelfcast.contract import clock
from shelfcast.contract.objects import AlreadyExists, ObjectMissing
from shelfcast.data.sales import (
    SALES_SCHEMA,
    Catalog,
    SalesTable,
    sales_arrow,
)

OLD_SALES_PREFIX = "sales/"
OLD_CATALOG_KEY = "sales/_catalog.json"
OLD_PART_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/([A-Za-z0-9._-]+)~([0-9a-f]{16})\.parquet$")


@dataclass
class MigrationReport:
    sources: int
    rows: int
    series: int
    table_version: int
    parts_deleted: int


def old_parts(store: SalesTable) -> tuple[list[tuple[date, str, str, str]], list[str]]:
    """(counted parts as (day, source, sha16, key), every part key) of the old layout, from one listing."""
    index = store.ledger_index()
    counted, every = [], []
    for info in store.objects.list(f"{OLD_SALES_PREFIX}date="):
        match = OLD_PART_RE.match(info.key[len(OLD_SALES_PREFIX):])
        if not match:
            continue
        every.append(info.key)
        source, sha16 = match[2], match[3]
        if source in index and index[source].sha16 == sha16:
            counted.append((date.fromisoformat(match[1]), source, sha16, info.key))
    return sorted(counted), every


def migrate(store: SalesTable, delete_old: bool = False) -> MigrationReport:
    """Move the counted parts of the old layout into the sales table (idempotent)."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    index = store.ledger_index()
    counted, every = old_parts(store)
    dt = store.table()
    todo = [part for part in counted if not store.has_source(dt, part[1])]
    sources = sorted({part[1] for part in todo})
    rows = 0
    firsts: dict[tuple[int, int], date] = {}

    def batches():
        nonlocal rows
        for day, source, _, key in todo:
            frame = pd.read_parquet(io.BytesIO(store.objects.get(key).body))
            rows += len(frame)
            for s, i in zip(frame["store"].tolist(), frame["item"].tolist()):
                if (s, i) not in firsts or day < firsts[(s, i)]:
                    firsts[(s, i)] = day
            yield from sales_arrow(frame, source).to_batches()

    if todo:
        transactions = []
        for source in sources:
            seq = index[source].seq + 1  # the `migrated` entry written below
            transactions += [Transaction(f"src:{source}", seq), Transaction(f"sha:{source}~{index[source].sha16}", seq)]
        reader = pa.RecordBatchReader.from_batches(SALES_SCHEMA, batches())
        write_deltalake(dt, reader, mode="append", commit_properties=CommitProperties(
            max_commit_retries=0, app_transactions=transactions,
            custom_metadata={"shelfcast.operation": "migrate", "shelfcast.sources": str(len(sources))}))
        dt.update_incremental()
    version = dt.version()
    series = _move_catalog(store, firsts)
    _write_entries(store, index, {part[1] for part in counted}, version)
    deleted = 0
    if delete_old:
        store._map(store.objects.delete, every + [OLD_CATALOG_KEY])
        deleted = len(every)
    return MigrationReport(len(sources), rows, series, version, deleted)


def _move_catalog(store: SalesTable, firsts: dict[tuple[int, int], date]) -> int:
    """The old catalogue's ids into `catalog/ids.json`, its series (and those of the rows) into the series table."""
    try:
        old = json.loads(store.objects.get(OLD_CATALOG_KEY).body)
    except ObjectMissing:
        old = {"stores": [], "items": [], "series": []}
    catalog, etag = store.catalog()
    merged = (catalog or Catalog(frozenset(), frozenset())).with_ids(
        (int(s) for s in old["stores"]), (int(i) for i in old["items"]))
    if catalog is None or merged != catalog:
        store.save_catalog(merged, etag)
    series = {(int(s), int(i)): firsts.get((int(s), int(i)), clock.today()) for s, i in old.get("series", [])}
    series.update(firsts)
    if not series:
        return 0
    frame = pd.DataFrame([(s, i, d) for (s, i), d in series.items()], columns=["store", "item", "first_date"])
    store.add_series(frame, "migration")
    return len(series)


def _write_entries(store: SalesTable, index, sources: set[str], version: int) -> None:
    """A `migrated` entry per source (its latest entry with the table version), unless one is there already."""
    def write(source: str) -> None:
        latest = store.ledger_entry(index[source])
        if latest.action == "migrated":
            return
        entry = replace(latest, seq=latest.seq + 1, action="migrated", table_version=version,
                        data_sha16=index[source].sha16, warnings=["moved from the Parquet parts by date"])
        try:
            store.commit(entry)
        except AlreadyExists:
            pass  # a concurrent or earlier migration wrote it

    store._map(write, sorted(sources))
