"""`shelfcast stack up|down|status`: the three real services, started, reused and stopped (only those)."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
import subprocess
import sys

import psutil
import pytest
from typer.testing import CliRunner

from shelfcast.config import Settings
from shelfcast.contract.errors import ServiceError
from shelfcast.stack.local import LocalStack, ServiceRecord, StackState, ui_addresses
from shelfcast.stack.process import free_ports, http_ok

pytestmark = pytest.mark.integration


def local_settings(home) -> Settings:
    s3, prefect, mlflow = free_ports(3)
    return Settings(
        home=home,
        s3_endpoint_url=f"http://127.0.0.1:{s3}",
        prefect_api_url=f"http://127.0.0.1:{prefect}/api",
        mlflow_tracking_uri=f"http://127.0.0.1:{mlflow}",
    )


def test_stack_up_status_down_stops_only_what_it_started(tmp_path, monkeypatch):
    settings = local_settings(tmp_path / "home")
    stack = LocalStack(settings)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        records = stack.up()
        assert set(records) == {"seaweedfs", "prefect", "mlflow"}
        status = stack.status()
        assert all(s["healthy"] for s in status.values()), status
        assert http_ok(ui_addresses(settings)["Prefect UI"]) and http_ok(settings.mlflow_tracking_uri + "/health")

        # The Prefect UI on this (not the default) port lists this server's runs, not another one's on 4200.
        ui_settings = json.loads(urllib.request.urlopen(ui_addresses(settings)["Prefect UI"] + "/ui-settings").read())
        assert ui_settings["api_url"] == settings.prefect_api_url
        # MLflow runs without its job runner (about 1.8 GB resident for jobs shelfcast never submits).
        mlflow_children = psutil.Process(records["mlflow"].pid).children(recursive=True)
        assert mlflow_children and not any("_job_runner" in " ".join(c.cmdline()) for c in mlflow_children)

        # The bucket exists for the trainer; the store identity cannot write; MLflow stores artifacts in S3.
        from shelfcast.contract.objects import ObjectStore

        trainer = ObjectStore.from_settings(settings, "trainer")
        trainer.put("landing/x.csv", b"date,store,item,sales\n")
        # Signed delivery is set up, with secrets and keys generated for this installation.
        from shelfcast import wiring

        assert wiring.signer(settings, trainer) is not None
        assert oct(os.stat(settings.home / "secrets.json").st_mode & 0o777) == "0o600"
        store = ObjectStore.from_settings(settings, "store")
        with pytest.raises(Exception, match="AccessDenied"):
            store.put("channels/stable/latest.json", b"{}")
        from mlflow import MlflowClient

        client = MlflowClient(settings.mlflow_tracking_uri)
        run = client.create_run(client.create_experiment("stack-test"))
        (tmp_path / "note.txt").write_text("hello")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        assert any(run.info.run_id in info.key for info in trainer.list("mlflow/"))

        # `up` again reuses the running services; the CLI reports them healthy.
        pids = {name: record.pid for name, record in records.items()}
        assert {n: r.pid for n, r in stack.up().items()} == pids
        for key, value in {"SHELFCAST_HOME": str(settings.home), "SHELFCAST_S3_ENDPOINT_URL": settings.s3_endpoint_url,
                           "SHELFCAST_PREFECT_API_URL": settings.prefect_api_url,
                           "SHELFCAST_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}.items():
            monkeypatch.setenv(key, value)
        from shelfcast.cli import build_app

        result = CliRunner().invoke(build_app(), ["stack", "status", "--json"])
        assert result.exit_code == 0, result.output
        assert {name: s["pid"] for name, s in json.loads(result.output).items()} == pids

        assert stack.down() == ["mlflow", "prefect", "seaweedfs"]
        assert not any(s["running"] for s in stack.status().values())
        assert bystander.poll() is None  # a process the stack did not start is untouched
        assert CliRunner().invoke(build_app(), ["stack", "status"]).exit_code == 1
    finally:
        stack.down()
        bystander.kill()
        bystander.wait()


def test_a_port_taken_by_someone_else_is_an_error_that_names_the_setting(tmp_path):
    settings = local_settings(tmp_path / "home")
    port = int(settings.prefect_api_url.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ServiceError, match="SHELFCAST_PREFECT_API_URL"):
            LocalStack(settings).up()
    assert LocalStack(settings).state().services == {}  # nothing was started, nothing is left running


def test_a_stale_pid_file_entry_is_forgotten_not_killed(tmp_path):
    settings = local_settings(tmp_path / "home")
    stack = LocalStack(settings)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        # One entry names a dead pid, one a live pid that runs some other command: neither is a service of ours.
        StackState({
            "mlflow": ServiceRecord("mlflow", finished.pid, 1, {}, "", str(stack.dirs["mlflow"]), ""),
            "prefect": ServiceRecord("prefect", other.pid, 2, {}, "", "--port 2", ""),
        }).save(stack.pid_file)
        assert stack.down() == []
        assert other.poll() is None
        assert stack.state().services == {}
    finally:
        other.kill()
        other.wait()


def test_a_remote_address_is_refused_with_the_fix(tmp_path):
    settings = Settings(home=tmp_path, s3_endpoint_url="https://s3.eu-west-1.amazonaws.com")
    with pytest.raises(ServiceError, match="SHELFCAST_S3_ENDPOINT_URL"):
        LocalStack(settings)


def test_stack_up_postgres_keeps_prefect_mlflow_and_the_alert_log_in_its_own_server(tmp_path, monkeypatch):
    import shutil

    import psycopg
    from mlflow import MlflowClient

    from shelfcast import wiring
    from shelfcast.cli import build_app
    from shelfcast.stack.postgres import data_dir
    from tests.unit.monitor import test_alert_log as alerts

    settings = local_settings(tmp_path / "home")
    for key, value in {"SHELFCAST_HOME": str(settings.home), "SHELFCAST_S3_ENDPOINT_URL": settings.s3_endpoint_url,
                       "SHELFCAST_PREFECT_API_URL": settings.prefect_api_url,
                       "SHELFCAST_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}.items():
        monkeypatch.setenv(key, value)
    try:
        result = CliRunner().invoke(build_app(), ["stack", "up", "--postgres"])
        assert result.exit_code == 0, result.output
        server = settings.database_server
        later = LocalStack(settings)  # this home runs on PostgreSQL from now on, without the flag
        assert f"PostgreSQL   postgresql://shelfcast@127.0.0.1:{later.ports['postgres']}\n" in result.output
        assert server.endswith(f"@127.0.0.1:{later.ports['postgres']}")
        assert oct(os.stat(settings.local_postgres_file).st_mode & 0o777) == "0o600"
        status = later.status()
        assert list(status) == ["postgres", "seaweedfs", "prefect", "mlflow"] and all(s["healthy"] for s in status.values())
        records = later.state().services
        password = server.split(":")[2].split("@")[0]
        assert password not in later.pid_file.read_text()
        assert not any(password in " ".join(psutil.Process(r.pid).cmdline()) for r in records.values())

        # Each server keeps its state in its own database there.
        experiment = MlflowClient(settings.mlflow_tracking_uri).create_experiment("on-postgres")
        flow = json.dumps({"name": "flow-on-postgres"}).encode()
        urllib.request.urlopen(urllib.request.Request(settings.prefect_api_url + "/flows/", data=flow,
                                                      headers={"Content-Type": "application/json"}))
        wiring.alert_log(settings).record(alerts.fired(alerts.finding()), alerts.POLICY, now=alerts.at(0))
        assert settings.alerts_db == f"{server}/shelfcast_alerts"

        def rows(database, query):
            with psycopg.connect(settings.database_url(database)) as conn:
                return conn.execute(query).fetchall()

        assert rows("mlflow", f"SELECT name FROM experiments WHERE experiment_id = {experiment}") == [("on-postgres",)]
        assert rows("prefect", "SELECT name FROM flow WHERE name = 'flow-on-postgres'") == [("flow-on-postgres",)]
        assert rows("shelfcast_alerts", "SELECT id, scope_label FROM alerts") == [(1, "store 4")]

        # Down stops PostgreSQL last; up again (no flag) starts it on the same data.
        assert later.down() == ["mlflow", "prefect", "seaweedfs", "postgres"]
        assert not psutil.pid_exists(records["postgres"].pid) or psutil.Process(records["postgres"].pid).status() == "zombie"
        later.up()
        assert MlflowClient(settings.mlflow_tracking_uri).get_experiment(experiment).name == "on-postgres"
        assert [a.id for a in wiring.alert_log(settings).list()] == [1]
    finally:
        LocalStack(settings).down()
        shutil.rmtree(data_dir(settings.stack_dir.resolve() / "postgres"), ignore_errors=True)


def test_a_machine_without_postgresql_is_told_how_to_install_it(tmp_path, monkeypatch):
    from shelfcast.stack import postgres

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DEBIAN_BINARIES", tmp_path / "none")
    settings = local_settings(tmp_path / "home")
    with pytest.raises(ServiceError, match=r"PostgreSQL is not installed .* install it with `apt-get install postgresql`"):
        LocalStack(settings, postgres=True).up()
    assert LocalStack(settings).state().services == {} and not (settings.stack_dir / "postgres").exists()
