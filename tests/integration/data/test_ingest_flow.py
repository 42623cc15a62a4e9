"""The ingest flow against the real Prefect API and a real SeaweedFS S3 server, including S3 outages."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from tests.integration._prefect import run_and_artifacts

from shelfcast import wiring
from shelfcast.contract.objects import ObjectStore
from shelfcast.data.sales import SalesTable
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.ingest import IngestOptions, deliver_days, frame_to_csv, ingest_landing, open_landing
from shelfcast.pipeline.transient import is_transient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sales():
    return generate_sales(stores=2, items=3, start="2017-03-01", end="2017-03-10", seed=5)


def rows(frame):
    return frame[["date", "store", "item", "sales"]].sort_values(["store", "item", "date"]).reset_index(drop=True)


def test_ingest_flow_on_s3_leaves_a_summary_and_is_idempotent(pipeline_env, prefect_api, sales, tmp_path):
    from shelfcast.flows.ingest import ingest_flow

    objects = wiring.bucket(pipeline_env)
    landing = open_landing("landing/", objects)
    deliver_days(landing, sales, sorted(sales["date"].unique()))
    reports, artifacts = run_and_artifacts(ingest_flow, "ingest-summary")
    assert [r["action"] for r in reports] == ["ingested"] * 10
    store = SalesTable(objects)
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales))
    assert ingest_flow() == []  # nothing new: every file moved from landing/ to archive/
    assert list(objects.list("landing/")) == [] and len(list(objects.list("archive/sales-2017-03-"))) == 10

    (summary,) = artifacts  # the first run's own, not another test's run over files of the same names
    assert "sales-2017-03-10.csv | ingested | 6 | 6 | 0 | 0 |" in summary

    # A folder works as the landing location too; rows already ingested are duplicates, not doubled.
    folder = open_landing(str(tmp_path / "drop"), None)
    folder.deliver("resent-2017-03-10.csv", frame_to_csv(sales[sales["date"] == sales["date"].max()]))
    (report,) = ingest_flow(landing=folder.objects.describe())
    assert (report["rows_accepted"], report["rows_duplicate"]) == (0, 6)
    assert len(store.load()) == len(sales)
    assert folder.files() == [] and len(list(objects.list("archive/resent-2017-03-10.csv/"))) == 1


def test_bad_files_are_quarantined_while_the_next_files_are_ingested(pipeline_env, prefect_api, sales):
    from shelfcast.flows.ingest import ingest_flow

    objects = wiring.bucket(pipeline_env)
    landing = open_landing("landing/", objects)
    landing.deliver("2017-03-01-a-wrong-columns.csv", b"day;shop;units\n2017-03-01;1;5\n")
    landing.deliver("2017-03-01-b-garbage.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 100)
    landing.deliver("2017-03-01-c-empty.csv", b"")
    # ~24 MB of application log: not sales data, and large (uploaded multipart, quarantined the same way).
    landing.deliver("2017-03-01-d-app.log", b"2017-03-01T10:00:00Z INFO GET /basket 200 12ms user=4411\n" * 420_000)
    deliver_days(landing, sales, sorted(sales["date"].unique())[:2])
    reports = {r["name"]: r for r in ingest_flow()}

    assert "missing column(s) ['date', 'store', 'item', 'sales']" in reports["2017-03-01-a-wrong-columns.csv"]["error"]
    assert "is binary, not CSV text" in reports["2017-03-01-b-garbage.csv"]["error"]
    assert "is empty" in reports["2017-03-01-c-empty.csv"]["error"]
    assert "missing column(s)" in reports["2017-03-01-d-app.log"]["error"]
    for name in ("2017-03-01-a-wrong-columns.csv", "2017-03-01-b-garbage.csv", "2017-03-01-d-app.log"):
        assert reports[name]["action"] == "quarantined"
        original, error = reports[name]["quarantine"]
        (archived,) = objects.list(f"archive/{name}/")  # moved out of landing/ like an ingested file
        assert objects.head(original).size == archived.size
        assert name in objects.get(error).body.decode()
    assert reports["sales-2017-03-01.csv"]["rows_accepted"] == 6
    assert reports["sales-2017-03-02.csv"]["rows_accepted"] == 6
    assert ingest_flow() == []  # a quarantined file is not retried until it changes


class StopServerBeforeLedger(ObjectStore):
    """Stops the real S3 server when the ledger entry of file number `entries + 1` is about to be written: the
    outage hits after that file's rows were committed to the sales table and before the ledger records them."""

    def __init__(self, store: ObjectStore, service, entries: int):
        super().__init__(store.client, store.bucket)
        self.service, self.remaining = service, entries

    def put_if_absent(self, key, body, content_type="application/octet-stream"):
        if key.startswith("ledger/") and self.service.alive():
            if self.remaining == 0:
                self.service.stop()
            self.remaining -= 1
        return super().put_if_absent(key, body, content_type)


def test_s3_down_during_ingest_then_rerun_completes_exactly_once(own_s3, sales):
    settings, service, restart = own_s3
    objects = wiring.bucket(settings)
    landing = open_landing("landing/", objects)
    days = sorted(sales["date"].unique())
    deliver_days(landing, sales, days[:4])
    backfill = sales[sales["date"].isin(days[4:])]
    landing.deliver("z-backfill.csv", backfill.assign(date=backfill["date"].dt.strftime("%Y-%m-%d"))
                    .to_csv(index=False).encode())

    # The server dies once the four daily files are in, after the backfill's rows reached the table.
    flaky = StopServerBeforeLedger(objects, service, entries=4)
    with pytest.raises(Exception) as failure:
        ingest_landing(SalesTable(flaky), landing, IngestOptions())
    assert is_transient(failure.value), repr(failure.value)

    restart()
    store = SalesTable(wiring.bucket(settings))
    committed = {e.name for e in store.ledger_history()}
    assert committed == {f"sales-{pd.Timestamp(d):%Y-%m-%d}.csv" for d in days[:4]}
    version = store.version()

    reports = ingest_landing(store, landing, IngestOptions())
    assert [(r.name, r.action, r.rows_accepted) for r in reports] == [("z-backfill.csv", "ingested", 36)]
    assert reports[0].table_version == version  # its rows were in: the rerun wrote only the ledger entry
    pd.testing.assert_frame_equal(rows(store.load()), rows(sales))  # nothing lost, nothing twice
    assert len(store.ledger_history()) == 5 and store.verify() == (len(sales), [])
    assert ingest_landing(store, landing, IngestOptions()) == []


def test_ingest_flow_fails_loudly_while_s3_is_down_and_a_rerun_completes(own_s3, prefect_api, sales):
    from shelfcast.flows.ingest import ingest_flow

    settings, service, restart = own_s3
    objects = wiring.bucket(settings)
    deliver_days(open_landing("landing/", objects), sales, sorted(sales["date"].unique())[:3])
    service.stop()
    state = ingest_flow(return_state=True)
    assert state.is_failed()
    assert "Could not connect to the endpoint URL" in str(state.message) + repr(state.result(raise_on_failure=False))
    restart()
    reports = ingest_flow()
    assert [r["action"] for r in reports] == ["ingested"] * 3
    assert len(SalesTable(wiring.bucket(settings)).load()) == 18


def test_rejected_rows_land_in_the_quarantine_with_reasons(pipeline_env, sales):
    objects = wiring.bucket(pipeline_env)
    landing = open_landing("landing/", objects)
    deliver_days(landing, sales, [sales["date"].min()])
    ingest_landing(SalesTable(objects), landing, IngestOptions())
    landing.deliver("late.csv", b"date,store,item,sales\n2017-03-01,1,1,999\n2017-03-02,9,1,3\n2017-03-02,1,1,abc\n")
    (report,) = ingest_landing(SalesTable(objects), landing, IngestOptions())
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (3, 0, 3)
    quarantined = pd.read_csv(io.BytesIO(objects.get(report.quarantine[0]).body))
    reasons = dict(zip(quarantined["line"], quarantined["reason"]))
    assert "differs from" in reasons[2] and "sales-2017-03-01.csv" in reasons[2]
    assert "store 9 is not in the catalogue" in reasons[3]
    assert "not a whole number" in reasons[4]


def test_cli_backfill_is_idempotent_and_the_ledger_commands_report_it(pipeline_env, prefect_api, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from shelfcast.cli import build_app

    monkeypatch.setenv("SHELFCAST_PREFECT_API_URL", prefect_api)
    history = generate_sales(stores=2, items=2, start="2017-01-01", end="2017-02-28", seed=1)
    kaggle = tmp_path / "train.csv"
    history.assign(date=history["date"].dt.strftime("%Y-%m-%d")).to_csv(kaggle, index=False)
    app, runner = build_app(), CliRunner()
    backfill = ["ingest", "backfill", "--data", str(kaggle), "--from", "2017-01-10", "--to", "2017-01-31"]

    first = runner.invoke(app, backfill)
    assert first.exit_code == 0, first.output
    assert "backfill-2017-01-10_2017-01-31.csv" in first.output and "ingested" in first.output
    assert runner.invoke(app, backfill).exit_code == 0  # the same range again: nothing new
    wider = runner.invoke(app, backfill[:-4] + ["--from", "2017-01-01", "--to", "2017-02-05"])
    assert wider.exit_code == 0, wider.output
    store = SalesTable(wiring.bucket(pipeline_env))
    expected = history[history["date"] <= "2017-02-05"]
    pd.testing.assert_frame_equal(rows(store.load()), rows(expected))

    ledger = runner.invoke(app, ["ingest", "ledger"])
    assert ledger.exit_code == 0 and ledger.output.count("backfill-2017-01") == 2, ledger.output
    verify = runner.invoke(app, ["ingest", "verify"])
    assert verify.exit_code == 0 and f"{len(expected):,} committed rows in version" in verify.output, verify.output
    assert "0 doubled key(s)" in verify.output
    catalog = runner.invoke(app, ["ingest", "catalog", "--add-stores", "9"])
    assert "stores 1-2,9; items 1-2; 4 series" in catalog.output
