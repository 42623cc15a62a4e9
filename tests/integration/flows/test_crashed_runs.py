"""A run killed with SIGKILL, found and marked crashed by the next run, against the real Prefect API and S3.

The night's case (MLflow parent run FAILED, work folder removed, retrain flow run CRASHED) is in
`tests/integration/pipeline/test_retrain.py`, beside the other killed-night test.
"""

from __future__ import annotations

import pytest
from bench.faults_runs import INGEST_DRIVER, flow_run_state, kill_mid_run, live_run_left_alone

from shelfcast import wiring
from shelfcast.data.ingest import deliver_days, open_landing
from shelfcast.data.synthetic import generate_sales
from shelfcast.pipeline import leases

pytestmark = pytest.mark.integration


def test_an_ingest_killed_mid_run_is_marked_crashed_by_the_next_ingest(pipeline_env, prefect_api, tmp_path):
    from shelfcast.flows.ingest import ingest_flow

    sales = generate_sales(stores=1, items=2, start="2017-03-01", end="2017-03-02", seed=5)
    deliver_days(open_landing("landing/", wiring.bucket(pipeline_env)), sales, sorted(sales["date"].unique()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", prefect_api)
        killed = kill_mid_run(tmp_path, "ingest", INGEST_DRIVER)  # SIGKILL while its first file is read
    assert flow_run_state(killed).is_running()  # what Prefect shows by itself, for ever
    assert len(list(leases.leases_dir(pipeline_env.home).glob("ingest-*.json"))) == 1

    reports = ingest_flow()

    state = flow_run_state(killed)
    assert state.is_crashed() and "marked by the next ingest run" in state.message
    assert [r["action"] for r in reports] == ["ingested", "ingested"]  # the killed run's files, done once
    assert list(leases.leases_dir(pipeline_env.home).glob("*.json")) == []
    ingest_flow()
    assert flow_run_state(killed).is_crashed()  # marked once, left alone after


def test_a_live_run_is_never_taken_for_a_crashed_one(tmp_path):
    """Two runs at once, real processes, three rounds: a lease held by a live process is never abandoned; the
    moment its process is killed (SIGKILL) it is, once."""
    (result,) = live_run_left_alone(tmp_path)
    assert result["passed"], result["observed"]
    assert result["observed"] == "0 live taken for crashed, 0 killed missed"
