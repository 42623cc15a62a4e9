"""Two ingests at once, in two processes, against the real SeaweedFS server: every (date, store, item) key is
committed exactly once, whatever their timing, round after round."""

from __future__ import annotations

import pandas as pd
import pytest

from shelfcast import wiring
from shelfcast.bench.overlap import run_together, settings_env
from shelfcast.data.ingest import frame_to_csv
from shelfcast.data.sales import SalesTable
from shelfcast.data.synthetic import generate_sales

pytestmark = pytest.mark.integration
ROUNDS = 4


@pytest.fixture
def env(pipeline_env):
    return settings_env()


def test_two_files_with_the_same_keys_never_commit_a_key_twice(env, pipeline_env, tmp_path):
    sales = generate_sales(stores=3, items=4, start="2017-05-01", end="2017-05-20", seed=11)
    store = SalesTable(wiring.bucket(pipeline_env))
    days = sorted(sales["date"].unique())
    attempts = []
    for round_ in range(ROUNDS):
        day_rows = sales[sales["date"].isin(days[round_ * 5:(round_ + 1) * 5])]
        # Same keys; file b differs from file a on every other row (a conflict) and equals it elsewhere.
        other = day_rows.copy()
        other.loc[other.index[::2], "sales"] += 1000
        folders = []
        for name, frame in (("a", day_rows), ("b", other)):
            folder = tmp_path / f"round{round_}-{name}"
            folder.mkdir()
            (folder / f"{name}-round{round_}.csv").write_bytes(frame_to_csv(frame))
            folders.append(str(folder))
        reports = run_together(env, folders)
        attempts += [r["commit_attempts"] for r in reports]
        assert all(r["action"] == "ingested" for r in reports), reports

        table = store.load(pd.Timestamp(days[round_ * 5]).date(), pd.Timestamp(days[round_ * 5 + 4]).date(),
                           with_source=True)
        assert len(table) == len(day_rows)  # one row per key, not two
        winner = table["source"].unique().tolist()
        # The rows of exactly one file are the keys' values; the other file found them all already there:
        # equal rows as duplicates, differing rows rejected with the reason naming the winner.
        assert len(winner) == 1
        first = day_rows if winner[0].startswith("a") else other
        expected = first[["date", "store", "item", "sales"]].sort_values(["store", "item", "date"])
        pd.testing.assert_frame_equal(table.drop(columns="source"), expected.reset_index(drop=True))
        loser = next(r for r in reports if not r["name"].startswith(winner[0][0]))
        assert (loser["rows_accepted"], loser["rows_duplicate"], loser["rows_rejected"]) == (
            0, len(day_rows) // 2, len(day_rows) // 2)
    assert store.verify() == (len(sales), [])
    # Both started together every round; the loser of a race checks again against the new version.
    assert max(attempts) >= 2, attempts


def test_the_same_file_ingested_twice_at_once_is_committed_once(env, pipeline_env, tmp_path):
    sales = generate_sales(stores=2, items=3, start="2017-06-01", end="2017-06-07", seed=12)
    store = SalesTable(wiring.bucket(pipeline_env))
    for round_ in range(ROUNDS):
        folders = []
        for copy in ("x", "y"):
            folder = tmp_path / f"round{round_}-{copy}"
            folder.mkdir()
            (folder / f"same-{round_}.csv").write_bytes(frame_to_csv(sales))
            folders.append(str(folder))
        reports = run_together(env, folders)
        outcomes = sorted(r["action"] for r in reports)
        # Round 0: one run ingests it. Later rounds deliver new names holding rows already in the table.
        assert outcomes == ["ingested", "unchanged"], reports
        # The slower run either found the entry taken or, started after it, recorded a redelivery.
        actions = [e.action for e in store.ledger_history(f"same-{round_}.csv")]
        assert actions in (["ingested"], ["ingested", "redelivered"]), actions
        assert store.verify() == (len(sales), [])
