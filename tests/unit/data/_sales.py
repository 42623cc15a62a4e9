"""What the sales-store tests share: a fixed "today" and the ingest and comparison they all do."""

from __future__ import annotations

from datetime import date

from shelfcast.data.ingest import IngestOptions, ingest_landing

TODAY = date(2020, 1, 1)


def run(landing, store, **kwargs):
    return ingest_landing(store, landing, IngestOptions(today=TODAY, **kwargs))


def rows(frame):
    return frame[["date", "store", "item", "sales"]].sort_values(["store", "item", "date"]).reset_index(drop=True)
