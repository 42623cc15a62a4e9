"""Ingest logic on a folder landing and a folder sales store (same code path as S3, no server needed)."""

from __future__ import annotations

import os
from datetime import date
from types import SimpleNamespace

import pandas as pd
import pytest

from shelfcast.contract import clock
from shelfcast.contract.errors import ConfigError
from shelfcast.contract.objects import LocalObjects
from shelfcast.data.sales import Catalog, LedgerEntry, SalesTable, source_id
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.ingest import (
    FileReport,
    IngestOptions,
    Landing,
    approve,
    check_history,
    deliver_days,
    deliver_range,
    format_ids,
    frame_to_csv,
    gap_warnings,
    ingest_file,
    open_landing,
    pending,
    render_markdown,
    restore,
)

from tests.unit.data._sales import TODAY, rows, run

pytestmark = pytest.mark.unit


@pytest.fixture
def sales():
    return generate_sales(stores=2, items=2, start="2017-01-01", end="2017-01-20", seed=3)


def test_format_ids():
    assert format_ids([3, 1, 2, 7, 9, 10]) == "1-3,7,9-10"
    assert format_ids([]) == ""


def test_check_history_known_answers():
    rows_in = pd.DataFrame({
        "date": pd.to_datetime(["2017-01-02", "2017-01-02", "2017-01-02", "2017-01-02", "2030-01-01"]),
        "store": [1, 1, 9, 1, 1],
        "item": [1, 2, 1, 3, 1],
        "sales": [10, 20, 5, 7, 1],
        "line": [2, 3, 4, 5, 6],
    })
    existing = pd.DataFrame({
        "date": pd.to_datetime(["2017-01-02", "2017-01-02"]),
        "store": [1, 1], "item": [1, 2], "sales": [10, 21], "source": ["a.csv", "a.csv"],
    })
    catalog = Catalog(frozenset({1, 2}), frozenset({1, 2, 3}))
    result = check_history(rows_in, existing, catalog, TODAY)
    assert result.duplicates == 1  # line 2 equals what a.csv delivered
    assert result.accepted["line"].tolist() == [5]
    reasons = dict(zip(result.rejected["line"], result.rejected["reason"]))
    assert set(reasons) == {3, 4, 6}
    assert "differs from 21 already ingested" in reasons[3] and "a.csv" in reasons[3]
    assert "store 9 is not in the catalogue (known stores: 1-2)" in reasons[4]
    assert "--add-stores 9" in reasons[4]
    assert "in the future (today is 2020-01-01)" in reasons[6]


def test_gap_warnings_name_the_missing_days_and_series():
    accepted = pd.DataFrame({
        "date": pd.to_datetime(["2017-01-10", "2017-01-12", "2017-01-12"]),
        "store": [1, 1, 1], "item": [1, 1, 2], "sales": [1, 2, 3],
    })
    series = pd.DataFrame({"store": [1, 1], "item": [1, 2]})
    warnings = gap_warnings(accepted, [date(2017, 1, 5), date(2017, 1, 6)], series)
    assert any("2017-01-07..2017-01-09 (3 day(s))" in w for w in warnings)
    assert any("skips 1 day(s) in its range, first 2017-01-11" in w for w in warnings)
    assert any("first 2017-01-10 store 1 item 2" in w for w in warnings)
    assert gap_warnings(accepted.iloc[:0], [], series) == []


def test_daily_files_are_ingested_once(env, sales):
    landing, store = env
    deliver_days(landing, sales, sorted(sales["date"].unique()))
    reports = run(landing, store)
    assert [r.action for r in reports] == ["ingested"] * 20
    assert sum(r.rows_accepted for r in reports) == len(sales)
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales))
    assert len(store.ledger_history()) == 20
    catalog, _ = store.catalog()
    assert catalog.stores == {1, 2} and len(store.known_series()) == 4

    # Every file moved to the archive: nothing pending, a second run changes nothing.
    assert pending(landing) == [] and run(landing, store) == []
    first = store.ledger_history(source_id("sales-2017-01-01.csv"))[0]
    archived = [info.key for info in store.objects.list("archive/")]
    assert len(archived) == 20 and archived[0] == store.archive_key(first.source, 1, first.sha16, first.landing_etag)
    assert store.objects.get(archived[0]).body == frame_to_csv(sales[sales["date"] == sales["date"].min()])
    # Re-delivered identical bytes (a new ETag) are a no-op, and archived again.
    deliver_days(landing, sales, [sales["date"].max()])
    path = landing.objects.root / f"sales-{sales['date'].max():%Y-%m-%d}.csv"
    os.utime(path, ns=(1, 1))
    (report,) = run(landing, store)
    assert report.action == "unchanged"
    assert store.ledger_history(source_id(path.name))[-1].action == "redelivered"
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales))
    assert run(landing, store) == [] and not path.exists()
    assert len(list(store.objects.list(f"archive/{path.name}/"))) == 2
    assert "20 ingested, 0 corrected, 0 quarantined, 0 unchanged" in render_markdown(reports, "l", "s")
    assert "| sales-2017-01-01.csv | ingested | 4 | 4 | 0 | 0 | 2017-01-01 |" in render_markdown(reports, "l", "s")


def test_corrected_file_replaces_its_rows_and_says_what_changed(env, sales):
    landing, store = env
    day = sales["date"].min()
    deliver_days(landing, sales, [day])
    run(landing, store)
    fixed = sales[sales["date"] == day].copy()
    fixed.loc[fixed.index[0], "sales"] += 5
    fixed = fixed.iloc[:-1]  # one row withdrawn
    landing.deliver(f"sales-{day:%Y-%m-%d}.csv", frame_to_csv(fixed))
    (report,) = run(landing, store, max_withdrawn_share=0.5)  # 1 of 4 rows withdrawn: 25%
    assert report.action == "corrected"
    assert "1 value(s) changed, 0 row(s) added, 1 row(s) withdrawn" in report.warnings[0]
    pd.testing.assert_frame_equal(rows(store.load()), rows(fixed))
    history = store.ledger_history(source_id(f"sales-{day:%Y-%m-%d}.csv"))
    assert [e.action for e in history] == ["ingested", "corrected"]
    assert history[1].previous_sha256 == history[0].sha256


def test_corrections_can_be_refused(env, sales):
    landing, store = env
    day = sales["date"].min()
    deliver_days(landing, sales, [day])
    run(landing, store)
    changed = sales[sales["date"] == day].assign(sales=1)
    landing.deliver(f"sales-{day:%Y-%m-%d}.csv", frame_to_csv(changed))
    (report,) = run(landing, store, allow_corrections=False)
    assert report.action == "quarantined" and "corrections are disabled" in report.error
    # The earlier version's rows stay.
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales[sales["date"] == day]))


def test_backfill_is_idempotent(env, sales):
    landing, store = env
    days = sorted(sales["date"].unique())
    deliver_days(landing, sales, days[5:10])
    run(landing, store)
    deliver_range(landing, sales, days[0], days[12])
    (first,) = run(landing, store)
    assert (first.rows_accepted, first.rows_duplicate, first.rows_rejected) == (4 * 8, 4 * 5, 0)
    deliver_range(landing, sales, days[3], days[15], kind="backfill-again")
    (second,) = run(landing, store)
    assert (second.rows_accepted, second.rows_duplicate) == (4 * 3, 4 * 10)
    expected = sales[sales["date"] <= days[15]]
    pd.testing.assert_frame_equal(rows(store.load()), rows(expected))
    assert run(landing, store) == []


def test_bad_files_are_quarantined_and_the_next_files_ingested(env, sales, tmp_path):
    landing, store = env
    day = sales["date"].min()
    landing.deliver("a-wrong-columns.csv", b"day,shop,product,units\n2017-01-01,1,1,5\n")
    landing.deliver("b-garbage.csv", bytes(range(256)) * 64)
    landing.deliver("c-empty.csv", b"")
    landing.deliver("d-huge-log.csv", b"2026-11-29T10:00:00 INFO request served in 12ms\n" * 20_000)
    landing.deliver("e-too-big.csv", b"date,store,item,sales\n" + b"2017-01-01,1,1,1\n" * 80_000)
    deliver_days(landing, sales, [day])
    delivered = {info.key: landing.objects.get(info.key).body for info in landing.files()}
    reports = {r.name: r for r in run(landing, store, max_file_bytes=1_000_000)}
    assert reports["a-wrong-columns.csv"].action == "quarantined"
    assert "missing column(s) ['date', 'store', 'item', 'sales']" in reports["a-wrong-columns.csv"].error
    assert "is binary" in reports["b-garbage.csv"].error
    assert "is empty" in reports["c-empty.csv"].error
    assert "missing column(s)" in reports["d-huge-log.csv"].error
    assert "over the limit of 1,000,000" in reports["e-too-big.csv"].error
    good = reports[f"sales-{day:%Y-%m-%d}.csv"]
    assert good.action == "ingested" and good.rows_accepted == 4
    for name in ("a-wrong-columns.csv", "b-garbage.csv", "d-huge-log.csv"):
        original, error = reports[name].quarantine
        assert store.objects.get(original).body == delivered[name]
        assert name in store.objects.get(error).body.decode()
    # A quarantined file is archived like any other, and not retried until it is delivered again.
    assert run(landing, store) == [] and len(list(store.objects.list("archive/"))) == 6


def test_bad_rows_are_quarantined_with_line_and_reason(env, sales):
    landing, store = env
    deliver_days(landing, sales, [sales["date"].min()])
    run(landing, store)
    body = (
        b"date,store,item,sales\n"
        b"2017-01-02,1,1,5\n"
        b"2017-01-02,1,2,-3\n"
        b"2017-01-02,7,1,4\n"
        b"2031-01-01,1,1,4\n"
        b"02/01/2017,2,1,4\n"
    )
    landing.deliver("sales-mixed.csv", body)
    (report,) = run(landing, store)
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (5, 1, 4)
    rejected = pd.read_csv(pd.io.common.BytesIO(store.objects.get(report.quarantine[0]).body))
    assert rejected["line"].tolist() == [3, 4, 5, 6]
    assert "negative" in rejected["reason"][0] and "not in the catalogue" in rejected["reason"][1]
    assert "future" in rejected["reason"][2] and "YYYY-MM-DD" in rejected["reason"][3]


class FailOnce(LocalObjects):
    """A folder store whose first `method` call on a key under `prefix` fails, like S3 going away at exactly that
    write (an in-process fault: a real server cannot be told to fail at one chosen request)."""

    def __init__(self, root, method: str, prefix: str):
        super().__init__(root)
        self.method, self.prefix, self.failures = method, prefix, 1

    def _fail(self, method: str, key: str) -> None:
        if method == self.method and key.startswith(self.prefix) and self.failures:
            self.failures -= 1
            raise ConnectionError("S3 endpoint unreachable")

    def put(self, key, body, content_type=""):
        self._fail("put", key)
        return super().put(key, body, content_type)

    def put_if_absent(self, key, body, content_type=""):
        self._fail("put_if_absent", key)
        return super().put_if_absent(key, body, content_type)

    def upload(self, path, key):
        self._fail("upload", key)
        return super().upload(path, key)

    def delete(self, key):
        self._fail("delete", key)
        return super().delete(key)


def test_interrupted_commit_is_completed_by_the_rerun_without_doubling(tmp_path, sales):
    landing = Landing(LocalObjects(tmp_path / "landing"))
    store = SalesTable(FailOnce(tmp_path / "bucket", "put_if_absent", "ledger/"), workers=2)
    deliver_days(landing, sales, sorted(sales["date"].unique())[:3])
    with pytest.raises(ConnectionError):
        run(landing, store)
    version = store.version()
    assert len(store.load()) == 4 and store.ledger_history() == []  # rows in, the ledger entry missing
    reports = run(landing, store)
    assert [r.action for r in reports] == ["ingested"] * 3
    assert reports[0].table_version == version  # the rerun found its rows and wrote only the entry
    assert len(store.load()) == 12 and store.verify() == (12, [])


def test_verify_finds_keys_written_around_the_table(env, sales):
    from deltalake import write_deltalake

    from shelfcast.data.sales import sales_arrow

    landing, store = env
    deliver_days(landing, sales, [sales["date"].min()])
    run(landing, store)
    assert store.verify() == (4, [])
    # Append the same rows under another source directly, bypassing the checks: verify must say so.
    write_deltalake(store.table(), sales_arrow(store.load(), "forged"), mode="append")
    rows_total, doubled = store.verify()
    assert rows_total == 8 and len(doubled) == 4 and doubled[0].startswith("2017-01-01 store 1 item 1")


def killed_once(tmp_path, sales, prefix: str):
    """A day's file ingested by a run that dies at its first write under `prefix`; (landing, table)."""
    landing = Landing(LocalObjects(tmp_path / "landing"))
    store = SalesTable(FailOnce(tmp_path / "bucket", "put", prefix), workers=2)
    deliver_days(landing, sales, [sales["date"].min()])
    with pytest.raises(ConnectionError):
        run(landing, store)
    return landing, store


def test_a_claimed_sequence_number_without_its_entry_is_completed_by_the_next_run(tmp_path, sales):
    # Killed between claiming the sequence number and writing the listed entry.
    landing, store = killed_once(tmp_path, sales, "ledger/files/")
    assert store.ledger_history() == []  # claimed, not listed: the file is still pending
    (report,) = run(landing, store)
    assert report.action == "unchanged"  # the claim held the outcome; this run wrote the missing entry
    (entry,) = store.ledger_history()
    assert entry.action == "ingested" and entry.rows_accepted == 4
    assert run(landing, store) == [] and store.verify() == (4, [])




class RedeliveredWhileRead(LocalObjects):
    """A landing folder where the uploader overwrites a file with `body` just after the ingest downloaded it."""

    def __init__(self, root, body: bytes):
        super().__init__(root)
        self.body = body

    def download(self, key, path):
        super().download(key, path)
        if self.body is not None:
            self.put(key, self.body)
            self.body = None


def test_a_file_redelivered_while_it_is_ingested_stays_in_the_landing_and_corrects_next_run(tmp_path, sales):
    day = sales["date"].min()
    fixed = sales[sales["date"] == day].assign(sales=lambda f: f["sales"] + 7)
    landing = Landing(RedeliveredWhileRead(tmp_path / "landing", frame_to_csv(fixed)))
    store = SalesTable(LocalObjects(tmp_path / "bucket"), workers=2)
    deliver_days(landing, sales, [day])
    (first,) = run(landing, store)
    assert first.action == "ingested"
    (waiting,) = pending(landing)  # the new bytes were not read: they must not be deleted
    assert landing.objects.get(waiting.key).body == frame_to_csv(fixed)
    (archived,) = store.objects.list("archive/")
    assert store.objects.get(archived.key).body == frame_to_csv(sales[sales["date"] == day])
    (second,) = run(landing, store)
    assert second.action == "corrected" and pending(landing) == []
    pd.testing.assert_frame_equal(rows(store.load()), rows(fixed))


@pytest.mark.parametrize("where, method, prefix", [("bucket", "upload", "archive/"), ("landing", "delete", "")])
def test_a_run_killed_before_its_move_is_completed_by_a_move_alone(tmp_path, sales, where, method, prefix):
    # Killed after the ledger entry, before the archive copy (upload) or after it, before the landing delete.
    folders = {name: tmp_path / name for name in ("landing", "bucket")}
    folders[where] = FailOnce(folders[where], method, prefix)
    landing = Landing(folders["landing"] if where == "landing" else LocalObjects(folders["landing"]))
    store = SalesTable(folders["bucket"] if where == "bucket" else LocalObjects(folders["bucket"]), workers=2)
    deliver_days(landing, sales, [sales["date"].min()])
    with pytest.raises(ConnectionError):
        run(landing, store)
    assert len(pending(landing)) == 1 and len(store.ledger_history()) == 1
    (report,) = run(landing, store)
    assert report.action == "unchanged" and pending(landing) == []
    (entry,) = store.ledger_history()  # no second entry: the rerun found the ETag recorded and only moved it
    assert entry.action == "ingested" and store.verify() == (4, [])
    assert [info.key for info in store.objects.list("archive/")] == [
        store.archive_key(entry.source, 1, entry.sha16, entry.landing_etag)]


def test_a_run_killed_uploading_its_rows_commits_nothing_and_the_rerun_ingests_once(tmp_path, sales):
    # S3 goes away while the table's new data file is uploaded, before the commit that would add it.
    landing = Landing(LocalObjects(tmp_path / "landing"))
    store = SalesTable(FailOnce(tmp_path / "bucket", "upload", "tables/sales/"), workers=2)
    deliver_days(landing, sales, [sales["date"].min()])
    with pytest.raises(ConnectionError):
        run(landing, store)
    assert store.version() == 0 and store.ledger_history() == [] and len(pending(landing)) == 1
    (report,) = run(landing, store)
    assert report.action == "ingested" and report.table_version == 1 and store.verify() == (4, [])


def test_a_file_another_run_archived_meanwhile_is_unchanged(env, sales):
    landing, store = env
    deliver_days(landing, sales, [sales["date"].min()])
    (listed,) = pending(landing)
    run(landing, store)  # another run takes the file first
    report = ingest_file(store, landing, listed, IngestOptions(today=TODAY))
    assert report.action == "unchanged" and "another ingest run archived it" in report.warnings[0]
    assert len(store.ledger_history()) == 1 and store.verify() == (4, [])


def test_a_run_that_lost_the_sequence_number_to_other_bytes_leaves_the_file_for_the_next_run(env, sales):
    # Another run claimed entry 1 for a version this run never read (a different ETag and sha), then died.
    landing, store = env
    day = sales["date"].min()
    deliver_days(landing, sales, [day])
    name = f"sales-{day:%Y-%m-%d}.csv"
    other = LedgerEntry(source=source_id(name), name=name, seq=1, sha256="f" * 64, bytes=1, landing_etag="other",
                        action="quarantined", error="another version")
    store.objects.put_if_absent("ledger/seq/" + f"{other.source}/000001.json", other.to_json())
    (report,) = run(landing, store)
    assert report.action == "unchanged" and "written by another ingest run" in report.warnings[-1]
    assert len(pending(landing)) == 1  # its entry records the other version: this one is not archived
    (second,) = run(landing, store)
    assert second.action == "corrected" and pending(landing) == [] and store.verify() == (4, [])


def test_a_landing_location_is_a_folder_or_a_prefix_of_the_sales_bucket(tmp_path, monkeypatch):
    bucket = SimpleNamespace(bucket="shelf", describe=lambda key="": f"s3://shelf/{key}")
    monkeypatch.chdir(tmp_path / "..")
    here = tmp_path.name
    for location in (str(tmp_path / "drop"), f"file://{tmp_path / 'file-drop'}", f"./{here}/dot/drop",
                     f"../{tmp_path.parent.name}/{here}/up/drop"):
        landing = open_landing(location, bucket)
        assert isinstance(landing.objects, LocalObjects) and landing.prefix == ""
    for folder in ("drop", "file-drop", "dot/drop", "up/drop"):  # created with their parents
        assert (tmp_path / folder).is_dir()
    assert open_landing(str(tmp_path / "drop"), bucket).objects.root == tmp_path / "drop"
    assert open_landing(f"file://{tmp_path / 'file-drop'}", None).describe() == str(tmp_path / "file-drop")
    assert [(open_landing(location, bucket).objects, open_landing(location, bucket).prefix) for location in
            ("landing", "landing/", "s3://shelf/landing", "s3://shelf/", "s3://shelf")] == [
        (bucket, "landing/"), (bucket, "landing/"), (bucket, "landing/"), (bucket, ""), (bucket, "")]
    assert open_landing("landing", bucket).describe() == "s3://shelf/landing/"
    with pytest.raises(ConfigError) as elsewhere:
        open_landing("s3://other/landing/", bucket)
    assert str(elsewhere.value) == ("landing 's3://other/landing/' is in bucket 'other'; the sales store uses "
                                    "'shelf': deliver to the same bucket or use a folder")
    with pytest.raises(ConfigError) as unconfigured:
        open_landing("landing/", None)
    assert str(unconfigured.value) == ("landing 'landing/' is in the bucket but no S3 store is configured; set "
                                       "SHELFCAST_S3_ENDPOINT_URL or pass a folder")
    untyped = SimpleNamespace(describe=lambda key="": key)  # an object store that names no bucket: any will do
    assert open_landing("s3://any/landing", untyped).prefix == "landing/"


def test_a_file_report_is_a_plain_record():
    report = FileReport("sales-2017-01-02.csv", "ingested", rows_read=4, dates=["2017-01-02"])
    assert report.to_dict() == {
        "name": "sales-2017-01-02.csv", "action": "ingested", "rows_read": 4, "rows_accepted": 0,
        "rows_duplicate": 0, "rows_rejected": 0, "dates": ["2017-01-02"], "error": "", "warnings": [],
        "quarantine": [], "ledger_key": "", "seconds": 0.0, "table_version": -1, "commit_attempts": 0}


@pytest.fixture
def day(env):
    """One day of 2 stores x 2 items ingested: (landing, store, the file's name, its rows)."""
    landing, store = env
    frame = generate_sales(stores=2, items=2, start="2017-01-02", end="2017-01-02", seed=5)
    deliver_days(landing, frame, [frame["date"].min()])
    run(landing, store)
    return landing, store, "sales-2017-01-02.csv", frame


def test_an_approval_is_refused_unless_the_file_is_held_and_its_copy_intact(day):
    landing, store, name, frame = day
    options = IngestOptions(today=TODAY)
    for by, reason in (("", "why"), ("dana", " "), ("  ", "why")):
        with pytest.raises(ConfigError) as anonymous:
            approve(store, name, by, reason, options)
        assert str(anonymous.value) == "an approval needs --by (who) and --reason (why); both go into the ledger"
    with pytest.raises(ConfigError) as ingested:
        approve(store, name, "dana", "why", options)
    assert str(ingested.value) == ("file sales-2017-01-02.csv is not held (its latest ledger entry is 'ingested'); "
                                   "`shelfcast ingest ledger` lists what is held")
    with pytest.raises(ConfigError) as unknown:
        approve(store, "never.csv", "dana", "why", options)
    assert str(unknown.value).startswith("file never.csv is not held (its latest ledger entry is 'never ingested')")

    landing.deliver(name, b"date,store,item,sales\n")  # withdraws every row: held
    (held,) = run(landing, store)
    entry = store.ledger_history(source_id(name))[-1]
    store.objects.put(entry.quarantine[0], b"date,store,item,sales\n2017-01-02,1,1,5\n")  # the copy was changed
    with pytest.raises(ConfigError) as changed:
        approve(store, name, "dana", "why", options)
    assert str(changed.value) == (f"the quarantined copy of {name} does not match the held version's sha256; "
                                  "deliver the file again")


def test_an_approved_correction_is_recorded_with_who_why_and_when(day):
    landing, store, name, frame = day
    landing.deliver(name, b"date,store,item,sales\n")
    (held,) = run(landing, store)
    held_entry = store.ledger_history(source_id(name))[-1]
    with clock.use_clock(clock.SimulatedClock("2020-01-01T09:30:00Z")):
        report = approve(store, name, "dana", "the chain closed", IngestOptions(today=TODAY, flow_run_id="run-7"))
    assert (report.name, report.action, report.rows_read, report.rows_accepted) == (name, "corrected", 0, 0)
    entry = max(store.ledger_history(source_id(name)), key=lambda e: e.seq)
    assert (entry.source, entry.name, entry.seq, entry.sha256, entry.bytes, entry.landing_etag) == (
        source_id(name), name, held_entry.seq + 1, held_entry.sha256, held_entry.bytes, held_entry.landing_etag)
    assert (entry.action, entry.data_sha16, entry.started_at, entry.flow_run_id) == (
        "corrected", held_entry.sha16, "2020-01-01T09:30:00Z", "run-7")
    assert (entry.approved_by, entry.approval_reason, entry.previous_sha256) == (
        "dana", "the chain closed", held_entry.previous_sha256)
    assert store.load().empty


def test_an_approved_first_delivery_is_ingested_as_approved(env):
    landing, store = env
    wide = pd.DataFrame({"date": "2017-01-02", "store": 1, "item": range(1, 13), "sales": 3})
    landing.deliver("wide.csv", wide.to_csv(index=False).encode())
    (held,) = run(landing, store, max_new_series=10)
    assert held.action == "held"
    report = approve(store, "wide.csv", "lee", "new range", IngestOptions(today=TODAY, max_new_series=10))
    assert (report.action, report.rows_accepted) == ("approved", 12)
    entry = store.ledger_history(source_id("wide.csv"))[-1]
    assert (entry.action, entry.approved_by, entry.approval_reason, entry.previous_sha256) == (
        "approved", "lee", "new range", "")


def test_a_restore_brings_back_the_rows_of_one_committed_version_and_says_which_exist(day):
    landing, store, name, frame = day
    original = store.load()
    landing.deliver(name, frame_to_csv(original.assign(sales=original["sales"] + 1)))
    run(landing, store)
    history = store.ledger_history(source_id(name))
    for seq in (0, 3, 9):
        with pytest.raises(ConfigError) as missing:
            restore(store, name, seq, "sam", "why", IngestOptions(today=TODAY))
        assert str(missing.value) == f"file {name} has no committed version {seq}; versions with rows: [1, 2]"
    with pytest.raises(ConfigError) as never:
        restore(store, "never.csv", 1, "sam", "why", IngestOptions(today=TODAY))
    assert str(never.value) == "file never.csv has no committed version 1; versions with rows: none"
    with clock.use_clock(clock.SimulatedClock("2020-01-01T10:00:00Z")):
        report = restore(store, name, 1, "sam", "the correction was wrong", IngestOptions(today=TODAY,
                                                                                          flow_run_id="run-8"))
    assert (report.action, report.rows_read, report.rows_accepted) == ("restored", len(original), len(original))
    pd.testing.assert_frame_equal(rows(store.load()), rows(original))
    entry = max(store.ledger_history(source_id(name)), key=lambda e: e.seq)
    first, latest = history[0], history[-1]
    assert (entry.source, entry.name, entry.seq, entry.sha256, entry.bytes, entry.landing_etag) == (
        source_id(name), name, 3, first.sha256, first.bytes, latest.landing_etag)
    assert (entry.action, entry.data_sha16, entry.started_at, entry.flow_run_id) == (
        "restored", first.sha16, "2020-01-01T10:00:00Z", "run-8")
    assert (entry.approved_by, entry.approval_reason, entry.restored_from_seq, entry.previous_sha256) == (
        "sam", "the correction was wrong", 1, latest.sha256)
    with pytest.raises(ConfigError, match="has no committed version 4; versions with rows: "):
        restore(store, name, 4, "sam", "why", IngestOptions(today=TODAY))


def test_a_restore_of_a_vacuumed_version_names_its_archived_copy(day):
    landing, store, name, frame = day
    original = store.load()
    landing.deliver(name, frame_to_csv(original.assign(sales=original["sales"] + 1)))
    run(landing, store)
    store.maintain(retention_days=0)
    first = store.ledger_history(source_id(name))[0]
    with pytest.raises(ConfigError) as gone:
        restore(store, name, 1, "sam", "why", IngestOptions(today=TODAY))
    copy = store.archive_key(source_id(name), first.seq, first.sha16, first.landing_etag)
    message = str(gone.value)
    assert message.startswith(f"version {first.table_version} of the sales table is no longer readable (")
    assert message.endswith(f"); vacuum removed its files: deliver its archived copy {copy} (or its quarantined "
                            f"copy) to the landing again as {name}")
