"""`SalesTable.load` against a plain pandas sort of every row: the (series x day) grid places each row where the
sort would, and the loads the grid cannot place (sparse, duplicated keys, unpackable ids) are sorted instead."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from shelfcast.contract.objects import LocalObjects
from shelfcast.data import sales
from shelfcast.data.sales import SalesTable

pytestmark = pytest.mark.unit

DAYS = pd.date_range("2017-01-01", "2017-02-28", freq="D")


def commit(store: SalesTable, frame: pd.DataFrame, source: str) -> None:
    store.commit_rows(store.table(), frame, source, source[:16].ljust(16, "0"), 1)


def commit_in_row_groups(store: SalesTable, frame: pd.DataFrame, source: str, rows_per_group: int) -> None:
    from deltalake import WriterProperties, write_deltalake

    write_deltalake(store.table(), sales.sales_arrow(frame, source), mode="append",
                    writer_properties=WriterProperties(max_row_group_size=rows_per_group))


def daily(days, stores, items, seed: int, keep: float = 1.0) -> pd.DataFrame:
    """Every (day, store, item) of the grids, a share `keep` of them at random (the rest are gaps)."""
    day, store, item = (a.ravel() for a in np.meshgrid(days, stores, items, indexing="ij"))
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"date": day, "store": store, "item": item, "sales": rng.integers(0, 500, len(day))})
    return frame[rng.random(len(frame)) < keep].reset_index(drop=True)


def reference(store: SalesTable, start=None, end=None, stores=None, items=None, exclude_source=None,
              only_source=None, with_source=False, version=None) -> pd.DataFrame:
    """Every row of the table (at `version`), filtered and sorted by pandas."""
    rows = store.read(version=version).to_pandas()
    rows["date"] = pd.to_datetime(rows["date"]).astype("datetime64[us]")
    keep = np.ones(len(rows), bool)
    if start is not None:
        keep &= rows["date"] >= pd.Timestamp(start)
    if end is not None:
        keep &= rows["date"] <= pd.Timestamp(end)
    if stores is not None:
        keep &= rows["store"].isin(stores)
    if items is not None:
        keep &= rows["item"].isin(items)
    if exclude_source is not None:
        keep &= rows["source"] != exclude_source
    if only_source is not None:
        keep &= rows["source"] == only_source
    columns = ["date", "store", "item", "sales"] + (["source"] if with_source else [])
    return rows[keep].sort_values(["store", "item", "date"], kind="stable")[columns].reset_index(drop=True)


@pytest.fixture
def store(tmp_path):
    return SalesTable(LocalObjects(tmp_path / "bucket"))


@pytest.fixture
def sorted_loads(monkeypatch):
    """The loads that took the sort path (the grid's fallback)."""
    calls = []
    sort = sales.sorted_frame

    def counted(batches, columns):
        calls.append(columns)
        return sort(batches, columns)

    monkeypatch.setattr(sales, "sorted_frame", counted)
    return calls


@pytest.fixture
def gappy(store, monkeypatch):
    """Four commits of 3 stores x 4 items over two months with a tenth of the rows missing, a series that starts
    late and one that stops early, one file in row groups of 50 rows; read 7 rows a batch, merging the series
    found every batch."""
    monkeypatch.setattr(sales, "READ_BATCH_ROWS", 7)
    monkeypatch.setattr(sales, "SERIES_MERGE_KEYS", 1)
    commit(store, daily(DAYS[:20], [1, 2], [1, 2, 3, 4], seed=1, keep=0.9), "january-a")
    commit(store, daily(DAYS[:20], [3], [4, 2, 1, 3], seed=2, keep=0.9), "january-b")
    commit_in_row_groups(store, daily(DAYS[20:], [3, 1, 2], [1, 2, 3], seed=3, keep=0.9), "later", 50)
    commit(store, daily(DAYS[30:], [2], [9], seed=4), "new-item")
    return store


FILTERS = [
    {},
    {"start": date(2017, 1, 10), "end": date(2017, 2, 5)},
    {"stores": [1, 3], "items": [2, 3, 9]},
    {"start": date(2017, 1, 15), "end": date(2017, 1, 25), "stores": [2], "with_source": True},
    {"exclude_source": "later", "with_source": True},
    {"only_source": "january-b"},
    {"only_source": "later", "items": [1], "start": date(2017, 2, 1)},
]


@pytest.mark.parametrize("where", FILTERS, ids=lambda w: ",".join(w) or "all")
def test_a_load_with_gaps_matches_a_sort_of_every_row(gappy, sorted_loads, where):
    loaded = gappy.load(**where)
    pd.testing.assert_frame_equal(loaded, reference(gappy, **where))
    assert len(loaded) > 0 and sorted_loads == []


def test_a_full_load_places_every_row_on_its_cell(store, sorted_loads):
    commit(store, daily(DAYS, [4, 1, 7], [2, 5], seed=5), "full")
    loaded = store.load()
    pd.testing.assert_frame_equal(loaded, reference(store))
    assert len(loaded) == 3 * 2 * len(DAYS) and sorted_loads == []


def test_a_load_of_old_versions_matches_their_rows(gappy, sorted_loads):
    for version in range(gappy.version() - 3, gappy.version()):
        loaded = gappy.load(version=version, with_source=True)
        pd.testing.assert_frame_equal(loaded, reference(gappy, version=version, with_source=True))
        assert len(loaded) < len(gappy.load())
    assert sorted_loads == []


def test_a_load_matching_nothing_is_an_empty_frame_of_the_same_columns(gappy):
    for where, columns in (({"start": date(2030, 1, 1)}, ["date", "store", "item", "sales"]),
                           ({"stores": [99], "with_source": True}, ["date", "store", "item", "sales", "source"])):
        loaded = gappy.load(**where)
        assert loaded.empty and list(loaded.columns) == columns
        assert list(loaded.dtypes[:4]) == ["datetime64[us]", "int64", "int64", "int64"]
    assert SalesTable(LocalObjects(gappy.objects.root.parent / "empty")).load().empty


def test_a_sparse_load_is_sorted_instead_of_gridded(store, sorted_loads):
    """Four series, one row each a month apart: 4 rows on a 4 x 91 grid."""
    days = pd.to_datetime(["2017-01-01", "2017-02-01", "2017-03-01", "2017-04-01"])
    commit(store, pd.DataFrame({"date": days, "store": [1, 1, 2, 2], "item": [2, 1, 2, 1], "sales": [4, 3, 2, 1]}),
           "sparse")
    pd.testing.assert_frame_equal(store.load(), reference(store))
    assert len(sorted_loads) == 1


def test_a_key_held_twice_is_returned_twice(store, sorted_loads):
    """Two sources holding the same key (written around the ingest's checks): `verify` finds it and the load
    returns both rows, like every other row."""
    commit(store, daily(DAYS[:10], [1, 2], [1, 2], seed=6), "first")
    commit(store, daily(DAYS[4:5], [2], [1], seed=7), "again")
    loaded = store.load(with_source=True)
    assert len(loaded) == 41 and len(sorted_loads) == 1
    pd.testing.assert_frame_equal(loaded.drop(columns="source"), reference(store))
    twice = loaded[(loaded["store"] == 2) & (loaded["item"] == 1) & (loaded["date"] == DAYS[4])]
    assert sorted(twice["source"]) == ["again", "first"]
    assert store.verify()[1] == ["2017-01-05 store 2 item 1"]


def test_ids_the_grid_cannot_pack_are_sorted(store, sorted_loads):
    big = 2**31 + 5
    commit(store, daily(DAYS[:5], [big, 3], [1, big], seed=8), "big-ids")
    pd.testing.assert_frame_equal(store.load(), reference(store))
    assert len(sorted_loads) == 1
