"""The sales table's guarantees on a folder (the same Delta code path as S3, no server): exact integers, BOM
files, held corrections and their approval, restore, the new-series limit, upkeep, time travel, migration."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from shelfcast.contract.errors import ConfigError
from shelfcast.data.ingest import (IngestOptions, Landing, approve, deliver_days, deliver_range, frame_to_csv,
                                   ingest_landing, restore)
from shelfcast.contract.objects import LocalObjects
from shelfcast.data.sales import LedgerEntry, SalesTable, source_id
from shelfcast.data.synthetic import generate_sales

from tests.unit.data._sales import TODAY, rows, run

pytestmark = pytest.mark.unit


@pytest.fixture
def sales():
    """A month of 2 stores x 3 items: enough days for corrections that withdraw a share of a file."""
    return generate_sales(stores=2, items=3, start="2017-01-01", end="2017-01-31", seed=4)


def rejected_reasons(store, report) -> dict[int, str]:
    frame = pd.read_csv(io.BytesIO(store.objects.get(report.quarantine[0]).body))
    assert set(frame["source"]) == {report.name}
    return dict(zip(frame["line"], frame["reason"]))


def test_sales_are_parsed_exactly_and_implausible_values_refused(env):
    landing, store = env
    landing.deliver("sales-2017-01-02.csv", (
        "date,store,item,sales\n"
        "2017-01-02,1,1,9223372036854775808\n"
        "2017-01-02,1,2,99999999999999999999\n"
        "2017-01-02,1,3,1e12\n"
        "2017-01-02,2,1,1000001\n"
        "2017-01-02,2,2,999999\n"
        "2017-01-02,2,3,12.0\n"
        "2017-01-02,3,3,0x1F\n"
    ).encode())
    (report,) = run(landing, store)
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (7, 2, 5)
    reasons = rejected_reasons(store, report)
    for line in (2, 3, 5):
        assert "above the plausible maximum of 1,000,000 units a day" in reasons[line]
        assert "--max-sales" in reasons[line]
    assert "sales='1e12' is not a whole number written in digits (no exponent" in reasons[4]
    assert "'0x1F' is not a whole number" in reasons[8]
    stored = store.load()
    assert stored["sales"].tolist() == [999999, 12] and stored["sales"].dtype == "int64"


def test_the_plausible_maximum_is_configurable(env):
    landing, store = env
    landing.deliver("big.csv", b"date,store,item,sales\n2017-01-02,1,1,5000000\n2017-01-02,1,2,5000001\n")
    (report,) = run(landing, store, max_sales=5_000_000)
    assert (report.rows_accepted, report.rows_rejected) == (1, 1)
    assert "plausible maximum of 5,000,000" in rejected_reasons(store, report)[3]
    assert store.load()["sales"].tolist() == [5_000_000]


def test_a_utf8_file_with_a_byte_order_mark_is_ingested(env, sales):
    landing, store = env
    day = sales[sales["date"] == sales["date"].min()]
    landing.deliver("excel-export.csv", b"\xef\xbb\xbf" + frame_to_csv(day).replace(b"\n", b"\r\n"))
    (report,) = run(landing, store)
    assert report.action == "ingested" and report.rows_accepted == len(day)
    pd.testing.assert_frame_equal(rows(store.load()), rows(day))


def test_a_correction_withdrawing_most_rows_is_held_until_approved(env, sales):
    landing, store = env
    deliver_range(landing, sales, sales["date"].min(), sales["date"].max(), kind="history")
    name = f"history-{sales['date'].min():%Y-%m-%d}_{sales['date'].max():%Y-%m-%d}.csv"
    run(landing, store)
    # A broken re-export under the same name: only the header line.
    landing.deliver(name, b"date,store,item,sales\n")
    (held,) = run(landing, store)
    assert held.action == "held"
    assert f"withdraws {len(sales):,} of the {len(sales):,} rows" in held.error and "ingest approve" in held.error
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales))  # nothing withdrawn meanwhile
    assert run(landing, store) == []  # held, not retried

    with pytest.raises(ConfigError, match="needs --by"):
        approve(store, name, "", "", IngestOptions(today=TODAY))
    report = approve(store, name, "dana", "the chain closed", IngestOptions(today=TODAY))
    assert report.action == "corrected" and report.rows_accepted == 0
    assert store.load().empty
    entry = store.ledger_history(source_id(name))[-1]
    assert (entry.approved_by, entry.approval_reason) == ("dana", "the chain closed")
    with pytest.raises(ConfigError, match="is not held"):
        approve(store, name, "dana", "again", IngestOptions(today=TODAY))


def test_restore_brings_a_superseded_version_back(env, sales):
    landing, store = env
    deliver_days(landing, sales, [sales["date"].min()])
    run(landing, store)
    name = f"sales-{sales['date'].min():%Y-%m-%d}.csv"
    original = store.load()
    changed = original.assign(sales=original["sales"] + 1)
    landing.deliver(name, frame_to_csv(changed))
    (corrected,) = run(landing, store)
    assert corrected.action == "corrected"
    pd.testing.assert_frame_equal(rows(store.load()), rows(changed))

    report = restore(store, name, 1, "sam", "the correction was wrong", IngestOptions(today=TODAY))
    assert report.action == "restored"
    pd.testing.assert_frame_equal(rows(store.load()), rows(original))
    entry = store.ledger_history(source_id(name))[-1]
    assert (entry.restored_from_seq, entry.approved_by) == (1, "sam")
    with pytest.raises(ConfigError, match="no committed version 9"):
        restore(store, name, 9, "sam", "none", IngestOptions(today=TODAY))
    assert store.verify() == (len(original), [])


def test_a_version_vacuum_removed_is_restored_from_its_archived_copy(env, sales):
    import fnmatch

    landing, store = env
    name = f"sales-{sales['date'].min():%Y-%m-%d}.csv"
    deliver_days(landing, sales, [sales["date"].min()])
    run(landing, store)
    original = store.load()
    landing.deliver(name, frame_to_csv(original.assign(sales=original["sales"] + 1)))
    run(landing, store)
    store.maintain(retention_days=0)  # the files of version 1 go
    with pytest.raises(ConfigError, match="vacuum removed its files") as refused:
        restore(store, name, 1, "sam", "the correction was wrong", IngestOptions(today=TODAY))
    pattern = str(refused.value).split("archived copy ", 1)[1].split(" ", 1)[0]
    (copy,) = [info.key for info in store.objects.list("archive/") if fnmatch.fnmatchcase(info.key, pattern)]
    landing.deliver(name, store.objects.get(copy).body)  # what the message says to do
    assert run(landing, store)[0].action == "corrected"
    pd.testing.assert_frame_equal(rows(store.load()), rows(original))


def test_a_file_adding_too_many_new_series_is_held(env, sales):
    landing, store = env
    deliver_days(landing, sales, [sales["date"].min()])
    run(landing, store)
    catalog, etag = store.catalog()
    store.save_catalog(catalog.with_ids(items=range(1, 101)), etag)
    wide = pd.DataFrame({"date": "2017-01-02", "store": 1, "item": range(1, 101), "sales": 3})
    landing.deliver("wide.csv", wide.to_csv(index=False).encode())
    (report,) = run(landing, store, max_new_series=10)
    assert report.action == "held"
    assert "would add 97 new series to the catalogue (limit 10), first store 1 item 4" in report.error
    assert len(store.known_series()) == 6
    approved = approve(store, "wide.csv", "lee", "new range", IngestOptions(today=TODAY, max_new_series=10))
    assert approved.rows_accepted == 100 and len(store.known_series()) == 103


def test_upkeep_compacts_and_keeps_recent_versions_readable(env, sales):
    landing, store = env
    days = sorted(sales["date"].unique())
    deliver_days(landing, sales, days[:10])
    run(landing, store)
    before = store.version()
    files = len(store.table().file_uris())
    report = store.maintain(retention_days=14)
    assert report["tables/sales"]["files_before"] == files == 10
    assert report["tables/sales"]["files_after"] == 1
    assert store.version() == before + 1
    pd.testing.assert_frame_equal(store.load(version=before), store.load())  # recent version: still readable
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales[sales["date"].isin(days[:10])]))


def test_the_nightly_load_records_and_rereads_its_table_version(env, sales):
    from shelfcast.pipeline.config import RetrainConfig
    from shelfcast.pipeline.nightly import load_training_data

    landing, store = env
    days = sorted(sales["date"].unique())
    deliver_days(landing, sales, days[:20])
    run(landing, store)
    config = RetrainConfig(window_days=60, stores="2", items="1-2")
    night = load_training_data(store, config)
    assert night.table_version == store.version() and night.series == 2
    expected = sales[(sales["store"] == 2) & sales["item"].isin([1, 2]) & sales["date"].isin(days[:20])]
    pd.testing.assert_frame_equal(rows(night.frame), rows(expected))
    deliver_days(landing, sales, days[20:])
    run(landing, store)
    again = load_training_data(store, config, version=night.table_version)
    pd.testing.assert_frame_equal(again.frame, night.frame)
    assert len(load_training_data(store, config).frame) == len(sales[(sales["store"] == 2) & sales["item"].isin([1, 2])])


def test_migration_moves_the_parquet_store_and_is_idempotent(tmp_path, sales):
    """The old layout is written here as the store at fef7c37 wrote it: one Parquet part per file and day, a
    ledger entry naming the part's sha16, and the catalogue JSON with every series."""
    from shelfcast.data.migrate import migrate

    objects = LocalObjects(tmp_path / "bucket")
    days = sorted(sales["date"].unique())[:3]
    for n, day in enumerate(days):
        name = f"sales-{pd.Timestamp(day):%Y-%m-%d}.csv"
        sha = f"{n:x}" * 64
        part = sales[sales["date"] == day][["date", "store", "item", "sales"]]
        body = io.BytesIO()
        part.to_parquet(body, index=False)
        objects.put(f"sales/date={pd.Timestamp(day):%Y-%m-%d}/{name}~{sha[:16]}.parquet", body.getvalue())
        # A superseded part of the same file (a correction's old version) must not move.
        objects.put(f"sales/date={pd.Timestamp(day):%Y-%m-%d}/{name}~{'f' * 16}.parquet", body.getvalue())
        entry = LedgerEntry(source=name, name=name, seq=1, sha256=sha, bytes=1, landing_etag=f"etag{n}",
                            action="ingested", data_sha16=sha[:16], rows_accepted=len(part))
        objects.put(entry.key(), entry.to_json())
    objects.put("sales/_catalog.json", json.dumps(
        {"stores": [1, 2, 7], "items": [1, 2, 3], "series": [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]}).encode())

    store = SalesTable(objects)
    report = migrate(store, delete_old=False)
    moved = sales[sales["date"].isin(days)]
    assert (report.sources, report.rows, report.series) == (3, len(moved), 6)
    pd.testing.assert_frame_equal(rows(store.load()), rows(moved))
    assert store.catalog()[0].stores == {1, 2, 7} and len(store.known_series()) == 6
    assert {e.action for e in store.ledger_history()} == {"ingested", "migrated"}

    again = migrate(store, delete_old=True)
    assert (again.sources, again.rows, again.table_version) == (0, 0, report.table_version)
    assert again.parts_deleted == 6 and not list(objects.list("sales/"))
    assert store.verify() == (len(moved), [])
    # The moved files count as ingested: delivering the same bytes again is not pending.
    landing = Landing(LocalObjects(tmp_path / "landing"))
    assert ingest_landing(store, landing, IngestOptions(today=TODAY)) == []


def test_the_streamed_reader_numbers_lines_and_finds_repeats_across_blocks(tmp_path):
    from shelfcast.data.schema import read_sales_stream

    lines = ["date,store,item,sales"] + [f"2017-01-{1 + n // 100:02d},1,{1 + n % 100},{n}" for n in range(3000)]
    lines[1500] = "2017-01-15,1,1,abc"  # a bad value in the middle: file line 1501
    lines[2990] = lines[5]  # a repeat of file line 6 in the last block
    lines.insert(2000, "2017-1-21,2,1,7")  # a date the fast checks miss and the full check accepts (line 2001)
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    read = read_sales_stream(path, "big.csv", block_bytes=4096)  # ~200 rows a block
    assert read.rows_read == 3001
    reasons = dict(zip(read.rejected["line"], read.rejected["reason"]))
    assert set(reasons) == {1501, 2992}
    assert "sales='abc' is not a whole number" in reasons[1501]
    assert reasons[2992] == "duplicate of line 6 for the same date, store and item"
    assert read.accepted["line"].is_monotonic_increasing and len(read.accepted) == 2999
    rescued = read.accepted[read.accepted["line"] == 2001].iloc[0]
    assert (str(rescued["date"].date()), rescued["sales"]) == ("2017-01-21", 7)
    assert read.accepted["sales"].dtype == "int32" and read.accepted.loc[0, "sales"] == 0


@pytest.mark.parametrize("days", [30, 60_000], ids=["dense-flag-table", "sparse-sort"])
def test_repeated_keys_are_found_the_same_way_dense_or_sparse(days):
    import numpy as np

    from shelfcast.data.schema import KeyCells, first_lines_of, first_of_each_key

    rng = np.random.default_rng(days)
    n = 4000
    frame = pd.DataFrame({"date": pd.Timestamp("2017-01-01") + pd.to_timedelta(rng.integers(0, days, n), "D"),
                          "store": rng.integers(1, 4, n), "item": rng.integers(1, 9, n)})
    seconds = frame["date"].to_numpy().astype("datetime64[s]").view(np.int64)
    keys = KeyCells(seconds, frame["store"].to_numpy(), frame["item"].to_numpy(), size=512)  # 8 blocks
    assert (keys.cells <= 4 * n + (1 << 20)) == (days == 30)  # each case takes the path its id names
    first = first_of_each_key(keys)
    expected = ~frame.duplicated(["date", "store", "item"], keep="first").to_numpy()
    assert (first == expected).all() and (~first).sum() > 0
    lines = np.arange(n) + 2
    origin = first_lines_of(keys, first, lines)
    firsts = frame.assign(line=lines)[first].set_index(["date", "store", "item"])["line"]
    repeats = frame[~first]
    assert origin == firsts.loc[list(zip(repeats["date"], repeats["store"], repeats["item"]))].tolist()


def test_keep_rows_moves_the_kept_rows_to_the_front_in_order():
    import numpy as np

    from shelfcast.data.schema import keep_rows

    columns = {"a": np.arange(10), "b": np.arange(10, 20, dtype=np.int32)}
    mask = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
    kept = keep_rows(columns, mask)
    assert kept["a"].tolist() == [0, 3, 4, 6, 9] and kept["b"].tolist() == [10, 13, 14, 16, 19]


def test_an_appended_file_carries_the_statistics_readers_skip_files_by(tmp_path):
    from deltalake import DeltaTable, write_deltalake

    from shelfcast.data.sales import SALES_TABLE, sales_arrow, sales_batches

    frame = generate_sales(stores=2, items=2, start="2017-01-01", end="2017-03-31", seed=1)
    store = SalesTable(LocalObjects(tmp_path / "ours"))
    store.commit_rows(store.table(), frame, "a.csv", "0" * 16, 1)
    write_deltalake(str(tmp_path / "theirs"), sales_arrow(frame, "a.csv"), mode="append")
    ours = pa_actions(DeltaTable(str(tmp_path / "ours" / SALES_TABLE)))
    theirs = pa_actions(DeltaTable(str(tmp_path / "theirs")))
    stat = [c for c in theirs if c.startswith(("min.", "max.", "null_count.")) or c == "num_records"]
    assert len(stat) == 16 and {c: ours[c] for c in stat} == {c: theirs[c] for c in stat}
    # A load of February reads only that month, and every row of it: the statistics prune nothing wrongly.
    loaded = store.load(pd.Timestamp("2017-02-01").date(), pd.Timestamp("2017-02-28").date())
    expected = frame[frame["date"].dt.month == 2].sort_values(["store", "item", "date"], ignore_index=True)
    pd.testing.assert_frame_equal(loaded, expected[["date", "store", "item", "sales"]], check_dtype=False)
    assert sales_batches(frame.iloc[:0], "x").read_all().num_rows == 0


def pa_actions(dt) -> dict:
    import pyarrow as pa

    table = pa.table(dt.get_add_actions(flatten=True))
    return {name: table.column(name).to_pylist() for name in table.column_names}


def test_an_append_that_loses_the_commit_race_leaves_no_file_behind(tmp_path):
    from shelfcast.data.sales import SALES_TABLE, TableMoved

    frame = generate_sales(stores=1, items=2, start="2017-01-01", end="2017-01-10", seed=2)
    store = SalesTable(LocalObjects(tmp_path))
    stale = store.table()
    store.commit_rows(store.table(), frame.iloc[:5], "a.csv", "1" * 16, 1)  # another writer takes version 1
    with pytest.raises(TableMoved):
        store.commit_rows(stale, frame.iloc[5:], "b.csv", "2" * 16, 1)
    files = sorted(p.name for p in (tmp_path / SALES_TABLE).glob("*.parquet"))
    assert files == [p.split("/")[-1] for p in store.table().file_uris()] and len(files) == 1
