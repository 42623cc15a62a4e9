"""The nightly retrain flow on a tiny panel, against the real Prefect API, MLflow server and S3 server.

Training is tiny on purpose (2 stores x 2 items, 1 epoch, 2 variants): these tests check the pipeline (fan-out,
task runners, logging, registry, candidates, failure behaviour), not model quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from tests.integration._prefect import run_and_artifacts

from shelfcast import wiring
from shelfcast.config import Settings
from shelfcast.data.sales import SalesTable
from shelfcast.data.synthetic import generate_sales
from shelfcast.data.ingest import IngestOptions, deliver_range, ingest_landing, open_landing
from shelfcast.pipeline.config import RetrainConfig
from shelfcast.tracking import Tracker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
TINY = dict(variants=["lstm8", "lstm8+int8"], epochs=1, window_days=240, holdout_days=28, warm_epochs=1)


@pytest.fixture(scope="module")
def night_env(make_pipeline_env, mlflow_server, prefect_api, tmp_path_factory):
    """Settings whose sales store holds 300 days of a 2 x 2 panel, ingested through the ingest code."""
    home = tmp_path_factory.mktemp("retrain")
    env = make_pipeline_env(home / "home", mlflow_server.urls["tracking"])
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings()
        sales = generate_sales(stores=2, items=2, start="2016-01-01", end="2016-10-26", seed=3)
        objects = wiring.bucket(settings)
        deliver_range(open_landing("landing/", objects), sales, "2016-01-01", "2016-10-26", kind="history")
        ingest_landing(SalesTable(objects), open_landing("landing/", objects), IngestOptions())
        yield settings, env


@pytest.fixture(scope="module")
def first_night_run(night_env):
    """The first night's report and the `retrain-summary` artifacts of its own flow run."""
    from shelfcast.flows.retrain import retrain_flow

    return run_and_artifacts(retrain_flow, "retrain-summary", RetrainConfig.load("quick", **TINY), night="first")


@pytest.fixture(scope="module")
def first_night(first_night_run):
    return first_night_run[0]


def tracker_for(settings) -> Tracker:
    return Tracker.from_settings(settings)


def test_every_variant_is_a_nested_run_and_a_registered_candidate(night_env, first_night):
    settings, _ = night_env
    tracker = tracker_for(settings)
    assert [v["status"] for v in first_night["variants"]] == ["ok", "ok"]
    assert first_night["data"]["series"] == 4 and first_night["data"]["end"] == "2016-10-26"
    parent = tracker.client.get_run(first_night["parent_run_id"])
    assert parent.data.tags["night_status"] == "complete"
    assert parent.data.params["variants"] == str(["LSTM-8", "LSTM-8+INT8"])
    assert "plots" in {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}

    runs = {r.data.tags["variant"]: r for r in tracker.night_runs(parent.info.run_id)}
    assert set(runs) == {"LSTM-8", "LSTM-8+INT8"}
    int8 = runs["LSTM-8+INT8"]
    assert int8.data.params["seed"] == "0" and json.loads(int8.data.params["input_spec"])["lookback"] > 0
    for metric in ("params", "nonzero_params", "article_bytes", "tflite_bytes", "gzip_bytes", "mape_pct",
                   "train_seconds", "naive_mape_pct", "parent_mape_pct", "builtin_ops_only"):
        assert metric in int8.data.metrics, metric
    assert int8.data.metrics["builtin_ops_only"] == 1.0
    assert int8.data.metrics["parent_mape_pct"] == pytest.approx(runs["LSTM-8"].data.metrics["mape_pct"])

    candidates = {c.variant: c for c in tracker.candidates("first")}
    assert set(candidates) == {"LSTM-8", "LSTM-8+INT8"}
    assert candidates["LSTM-8+INT8"].tags["technique"] == "sizing+int8"
    assert int(candidates["LSTM-8+INT8"].tags["tflite_bytes"]) < int(candidates["LSTM-8"].tags["tflite_bytes"]) + 1
    assert {c["version"] for c in first_night["candidates"]} == {c.version for c in candidates.values()}
    # Each version is an MLflow model (pyfunc around the .tflite) with a schema the version page shows.
    version = tracker.client.get_model_version(settings.registered_model, candidates["LSTM-8+INT8"].version)
    (output,) = tracker.client.get_run(int8.info.run_id).outputs.model_outputs
    logged = tracker.client.get_logged_model(output.model_id)
    assert version.source == f"models:/{logged.model_id}" and logged.source_run_id == int8.info.run_id
    assert {a.path for a in tracker.client.list_logged_model_artifacts(logged.model_id)} >= {
        "MLmodel", "input_example.json", "artifacts"}


def test_the_night_leaves_a_prefect_summary(first_night_run):
    first_night, artifacts = first_night_run
    (summary,) = artifacts
    assert first_night["parent_run_id"] in summary and "| LSTM-8+INT8 | ok |" in summary


def test_dask_runner_fans_out_on_two_worker_processes(night_env, first_night):
    """The night on a Dask cluster of two worker processes (the test's own, so its task stream shows who ran
    what): two sizes make two parents that start at once, and each worker runs some of the night's tasks."""
    from distributed import Client, LocalCluster, get_task_stream

    from shelfcast.flows.retrain import retrain_flow

    variants = [*TINY["variants"], "lstm4"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with get_task_stream(client) as stream:
            report = retrain_flow(RetrainConfig.load("quick", **{**TINY, "variants": variants}, task_runner="dask",
                                                     dask_address=cluster.scheduler_address), night="dask")
        workers = set(cluster.scheduler_info["workers"])
    assert [v["status"] for v in report["variants"]] == ["ok", "ok", "ok"]
    assert len(stream.data) == 2 + 3  # the two parents and the three variants, each one task on the cluster
    ran = {}
    for record in stream.data:
        ran[record["worker"]] = ran.get(record["worker"], 0) + 1
    assert set(ran) == workers and len(workers) == 2, ran  # both worker processes ran tasks of the night
    sizes = {v["name"]: v["metrics"]["tflite_bytes"] for v in report["variants"] if v["name"] != "LSTM-4"}
    assert sizes == {v["name"]: v["metrics"]["tflite_bytes"] for v in first_night["variants"]}
    assert len(report["candidates"]) == 3


def test_warm_start_fine_tunes_the_champion_and_scores_it_on_the_same_holdout(night_env, first_night):
    from shelfcast.flows.retrain import retrain_flow

    settings, _ = night_env
    tracker = tracker_for(settings)
    lstm8 = next(v for v in first_night["variants"] if v["name"] == "LSTM-8")
    tracker.client.set_registered_model_alias(settings.registered_model, "champion", lstm8["version"])
    report = retrain_flow(RetrainConfig.load("quick", **TINY, warm_start=True), night="warm")
    assert f"warm start from champion v{lstm8['version']}: sizes [8] fine-tuned" in report["warm_note"]
    assert report["champion"]["mape_pct"] == pytest.approx(lstm8["metrics"]["mape_pct"], rel=1e-3)
    assert all(v["metrics"]["champion_mape_pct"] == report["champion"]["mape_pct"] for v in report["variants"])
    for v in report["variants"]:  # the paired gain over the champion on the same holdout days, for the gate
        gain, se = v["metrics"]["champion_gain_pts"], v["metrics"]["champion_gain_se"]
        assert gain == pytest.approx(report["champion"]["mape_pct"] - v["metrics"]["mape_pct"], abs=1e-6), v["name"]
        assert 0 < se < 5, v["name"]
    assert "predictions" not in report["champion"]


def test_warm_start_trains_cold_when_tonights_inputs_differ_from_the_champions(night_env, first_night):
    """The calendar-lost drill drops the calendar inputs: the champion's weights do not fit that network, so the
    night trains cold and says why (before, loading them failed the parent and the night ended `PENDING`)."""
    from shelfcast.flows.retrain import retrain_flow

    settings, _ = night_env
    lstm8 = next(v for v in first_night["variants"] if v["name"] == "LSTM-8")
    tracker_for(settings).client.set_registered_model_alias(settings.registered_model, "champion", lstm8["version"])
    report = retrain_flow(RetrainConfig.load("quick", **TINY, warm_start=True, drill="calendar-lost"),
                          night="inputs-differ")
    assert report["warm_note"] == (f"warm start from champion v{lstm8['version']}: no matching model (its inputs "
                                   f"differ from tonight's); sizes [8] train cold")
    assert [v["status"] for v in report["variants"]] == ["ok", "ok"]


def test_the_fan_out_reads_the_nights_inputs_from_the_bucket_and_nothing_stays(night_env):
    """Workers get a bucket key, not a path: the inputs wait in `nights/` while the night fans out, the variants'
    files come back inside their results, and once the night is over neither the object nor a file is left."""
    from shelfcast.pipeline import night as steps

    settings, _ = night_env
    sales, seen = wiring.sales(settings), {}

    def spying_fan_out(bundle, specs, sizes, workdir):
        steps.read_bundle.cache_clear()  # read it from the bucket here, not from this process's cache
        seen.update(key=bundle, stored=sales.objects.exists(bundle), on_disk=sorted(
            p.name for p in Path(settings.home).rglob("*") if p.name == "inputs.pkl"))
        packed = steps.fan_out(bundle, specs, sizes, workdir)
        seen["files"] = [sorted(p.files) for p in packed]
        return packed

    report, _ = steps.run_night(RetrainConfig.load("quick", **TINY), sales, tracker_for(settings), settings,
                                steps.NightSteps(fan_out=spying_fan_out), night="from-bucket")
    assert seen["key"].startswith("nights/from-bucket-") and seen["key"].endswith("/inputs.pkl")
    assert (seen["stored"], seen["on_disk"]) == (True, [])
    assert seen["files"] == [["keras_path", "tflite_path"], ["tflite_path"]]  # the float parent keeps its .keras
    assert [v["status"] for v in report.variants] == ["ok", "ok"]
    assert list(sales.objects.list("nights/")) == []
    assert not list((Path(settings.home) / "nights").glob("from-bucket-*"))


def test_a_crashed_nights_inputs_are_removed_from_the_bucket_by_the_next_one(night_env, tmp_path):
    """A night killed while it fans out leaves its inputs in the bucket; its lease names them, and the next
    night's clean-up deletes them (here the lease is held by a real process that is then killed)."""
    from shelfcast.pipeline import nightly

    settings, _ = night_env
    objects, key = wiring.bucket(settings), "nights/fan-out-killed/inputs.pkl"
    objects.put(key, b"the night's windows")
    home = tmp_path / "home"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from shelfcast.pipeline import leases
        lease = leases.hold(Path({str(home)!r}), "night", "fan-out-killed", night="fan-out-killed", inputs_key={key!r})
        print("held", flush=True)
        time.sleep(3600)
    """)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        assert nightly.clean_up_crashed_nights(home, tracker_for(settings), objects) == []  # still alive
        assert objects.exists(key)
        holder.kill()
        holder.wait()
        (found,) = nightly.clean_up_crashed_nights(home, tracker_for(settings), objects)
    finally:
        holder.kill()
    assert found["inputs_key"] == key and not objects.exists(key)


def test_a_parent_that_fails_fails_the_night_with_its_own_error(night_env, monkeypatch):
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.pipeline import nightly

    def broken(*args, **kwargs):
        raise ValueError("weights of another network")

    monkeypatch.setattr(nightly, "train_parent", broken)
    state = retrain_flow(RetrainConfig.load("quick", **TINY), night="parent-fails", return_state=True)
    assert state.is_failed()
    assert "weights of another network" in str(state.result(raise_on_failure=False))


def test_mlflow_down_during_retrain_fails_loudly_and_promotes_nothing(night_env, tmp_path, monkeypatch):
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.compress import variants
    from shelfcast.flows import promote
    from shelfcast.stack.mlflow_server import start_mlflow_server
    from shelfcast.stack.process import free_port

    port, folder = free_port(), tmp_path / "mlflow"
    server = start_mlflow_server(folder, port, str(tmp_path / "artifacts"))
    monkeypatch.setenv("SHELFCAST_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    real_build, handed_over = variants.build_variant, []

    def build_after_mlflow_died(*args, **kwargs):
        server.stop(timeout=4)  # the real server goes away while the night trains
        return real_build(*args, **kwargs)

    monkeypatch.setattr(variants, "build_variant", build_after_mlflow_died)
    monkeypatch.setattr(promote, "promote_candidates", lambda *a, **k: handed_over.append(a))
    state = retrain_flow(RetrainConfig.load("quick", **TINY), night="mlflow-down", promote=True, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert "Connection refused" in str(error) or "Max retries" in str(error), error
    assert handed_over == []

    restarted = start_mlflow_server(folder, port, str(tmp_path / "artifacts"))
    try:
        tracker = Tracker(f"http://127.0.0.1:{port}", Settings().registered_model)
        assert tracker.candidates() == []
        night = tracker.client.search_runs([tracker.experiment_id()], "tags.night = 'mlflow-down'")
        assert [r.data.tags["night_status"] for r in night if r.data.tags.get("kind") == "night"] == ["running"]
    finally:
        restarted.stop(timeout=4)


DRIVER = textwrap.dedent('''
    """Runs a retrain whose second variant hangs after the first one is registered (then gets killed)."""
    import json, sys, time
    from pathlib import Path

    sys.path.insert(0, sys.argv[3])
    from shelfcast.tracking import Tracker

    marker, real_log = Path(sys.argv[1]), Tracker.log_variant

    def log_then_hang(self, *args, **kwargs):
        if marker.exists():
            marker.write_text("second")
            time.sleep(3600)
        logged = real_log(self, *args, **kwargs)
        marker.write_text(logged.version or "")
        return logged

    Tracker.log_variant = log_then_hang
    from shelfcast.flows.retrain import retrain_flow
    from shelfcast.pipeline.config import RetrainConfig

    retrain_flow(RetrainConfig.load("quick", **json.loads(sys.argv[2])), night="killed")
''')


def test_a_retrain_killed_half_way_leaves_no_candidate(night_env, prefect_api, tmp_path):
    settings, env = night_env
    driver, marker = tmp_path / "driver.py", tmp_path / "progress"
    driver.write_text(DRIVER)
    process = subprocess.Popen(
        [sys.executable, str(driver), str(marker), json.dumps(TINY), str(ROOT)],
        env={**os.environ, **env, "PREFECT_API_URL": prefect_api}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (marker.exists() and marker.read_text() == "second"):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the retrain never reached its second variant"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)  # killed between registering variant 1 and variant 2
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    tracker = tracker_for(settings)
    versions = [v for v in tracker.versions() if v.tags.get("night") == "killed"]
    assert len(versions) == 1  # one variant made it into the registry...
    assert "candidate" not in versions[0].tags  # ...but it is not a candidate
    assert tracker.candidates("killed") == []

    # Left as it died: MLflow and Prefect say RUNNING, the work folder is on disk. The next night cleans up.
    (parent,) = tracker.client.search_runs([tracker.experiment_id()], "tags.night = 'killed' and tags.kind = 'night'")
    assert parent.info.status == "RUNNING"
    (folder,) = (Path(settings.home) / "nights").glob("killed-*")
    flow_run_id = parent.data.tags["prefect_flow_run_id"]
    assert folder.name == f"killed-{flow_run_id[:8]}" and len(list(folder.glob("*.tflite"))) == 2
    from prefect.client.orchestration import get_client
    from shelfcast.flows.retrain import retrain_flow

    retrain_flow(RetrainConfig.load("quick", **TINY), night="after-kill")
    parent = tracker.client.get_run(parent.info.run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["night_status"] == "crashed"
    assert "ended without finishing the night" in parent.data.tags["night_error"]
    assert all(run.info.status != "RUNNING" for run in tracker.night_runs(parent.info.run_id))
    assert not folder.exists()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).state.is_crashed()
    assert list((Path(settings.home) / "nights").glob("*")) == []  # the night after cleaned up after itself too


def test_the_night_records_the_sales_table_version_it_trained_on(night_env, first_night, tmp_path):
    from shelfcast.contract.objects import LocalObjects
    from shelfcast.pipeline.nightly import load_training_data

    settings, _ = night_env
    parent = tracker_for(settings).client.get_run(first_night["parent_run_id"])
    version = int(parent.data.params["sales_table_version"])
    # The later delivery goes to a copy of the bucket: the module's other nights train on the table they share.
    bucket, copy = wiring.bucket(settings), LocalObjects(tmp_path / "bucket")
    for info in bucket.list(""):
        copy.put(info.key, bucket.get(info.key).body)
    store = SalesTable(copy)
    assert store.version() == SalesTable(bucket).version()
    config = RetrainConfig.load("quick", **TINY)
    night = load_training_data(store, config, version=version)
    assert night.table_version == version and night.rows == first_night["data"]["rows"]
    # MLflow shows the same lineage as the night's dataset input: which sales days, from which table version.
    (given,) = parent.inputs.dataset_inputs
    tags = {tag.key: tag.value for tag in given.tags}
    assert (tags["first_day"], tags["last_day"], tags["sales_table_version"], tags["series"]) == (
        first_night["data"]["start"], "2016-10-26", str(version), "4")
    assert json.loads(given.dataset.source)["path"] == SalesTable(bucket).uri()  # the night read the bucket
    # A later delivery moves the table on; that night's training set still reads back exactly.
    later = generate_sales(stores=2, items=2, start="2016-10-27", end="2016-10-27", seed=4)
    deliver_range(open_landing("landing/", store.objects), later, "2016-10-27", "2016-10-27", kind="late")
    ingest_landing(store, open_landing("landing/", store.objects), IngestOptions())
    assert store.version() > version
    pd.testing.assert_frame_equal(load_training_data(store, config, version=version).frame, night.frame)
