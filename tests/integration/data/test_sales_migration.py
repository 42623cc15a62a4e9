"""`shelfcast ingest migrate`, `approve` and `restore` from the command line against the real SeaweedFS server:
a store written by the previous implementation (commit fef7c37, read from git history) moves into the sales
table with its ledger, and the moved files stay ingested."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from shelfcast import wiring
from shelfcast.data.ingest import IngestOptions, deliver_days, frame_to_csv, ingest_landing, open_landing
from shelfcast.data.sales import SalesTable, source_id
from shelfcast.data.synthetic import generate_sales

pytestmark = pytest.mark.integration


def rows(frame):
    return frame[["date", "store", "item", "sales"]].sort_values(["store", "item", "date"]).reset_index(drop=True)


@pytest.fixture
def reference(tmp_path_factory):
    from shelfcast.bench.reference import write_reference

    folder = write_reference(tmp_path_factory.mktemp("reference"))
    sys.path.insert(0, str(folder))
    yield __import__("shelfcast_reference.ingest", fromlist=["ingest"])
    sys.path.remove(str(folder))


def test_an_old_store_migrates_and_its_files_stay_ingested(pipeline_env, reference, prefect_api, monkeypatch):
    from typer.testing import CliRunner

    from shelfcast.cli import build_app

    monkeypatch.setenv("SHELFCAST_PREFECT_API_URL", prefect_api)
    sales = generate_sales(stores=2, items=3, start="2017-04-01", end="2017-04-08", seed=31)
    objects = wiring.bucket(pipeline_env)
    landing = open_landing("landing/", objects)
    days = sorted(sales["date"].unique())
    deliver_days(landing, sales, days)
    old = reference.SalesStore(objects)
    reports = reference.ingest_landing(old, landing, reference.IngestOptions())
    assert [r.action for r in reports] == ["ingested"] * 8
    # A correction in the old store: its first version's parts must not come over.
    first = f"sales-{pd.Timestamp(days[0]):%Y-%m-%d}.csv"
    fixed = sales[sales["date"] == days[0]].assign(sales=lambda f: f["sales"] + 1)
    landing.deliver(first, frame_to_csv(fixed))
    assert reference.ingest_landing(old, landing, reference.IngestOptions())[0].action == "corrected"
    expected = pd.concat([fixed, sales[sales["date"] != days[0]]])

    app, runner = build_app(), CliRunner()
    moved = runner.invoke(app, ["ingest", "migrate"])
    assert moved.exit_code == 0, moved.output
    assert f"moved {len(sales):,} rows of 8 file(s)" in moved.output
    store = SalesTable(objects)
    pd.testing.assert_frame_equal(rows(store.load()), rows(expected))
    assert len(store.known_series()) == 6 and store.catalog()[0].stores == {1, 2}
    # The old store left its files in landing/: the first run finds each recorded and only archives it.
    assert [r.action for r in ingest_landing(store, landing, IngestOptions())] == ["unchanged"] * 8
    assert landing.files() == [] and ingest_landing(store, landing, IngestOptions()) == []
    assert store.verify() == (len(sales), [])
    again = runner.invoke(app, ["ingest", "migrate", "--delete-old"])
    assert again.exit_code == 0 and "moved 0 rows of 0 file(s)" in again.output, again.output
    assert not [i for i in objects.list("sales/")] and store.verify() == (len(sales), [])

    # A broken re-export of a moved file is held; approve and restore from the command line.
    landing.deliver(first, b"date,store,item,sales\n")
    (held,) = ingest_landing(store, landing, IngestOptions())
    assert held.action == "held"
    approved = runner.invoke(app, ["ingest", "approve", first, "--by", "ops", "--reason", "store closed that day"])
    assert approved.exit_code == 0 and "corrected" in approved.output, approved.output
    assert len(store.load()) == len(sales) - 6
    migrated = next(e for e in store.ledger_history(source_id(first)) if e.action == "migrated")
    restored = runner.invoke(app, ["ingest", "restore", first, "--seq", str(migrated.seq), "--by", "ops",
                                   "--reason", "it was open"])
    assert restored.exit_code == 0 and "restored" in restored.output, restored.output
    pd.testing.assert_frame_equal(rows(store.load()), rows(expected))
    actions = [(e.action, e.approved_by, e.approval_reason) for e in store.ledger_history(source_id(first))]
    assert actions[-3:] == [("held", "", ""), ("corrected", "ops", "store closed that day"),
                            ("restored", "ops", "it was open")]
    ledger = runner.invoke(app, ["ingest", "ledger", first])
    assert ledger.exit_code == 0 and "restored" in ledger.output and "approved by" in ledger.output
