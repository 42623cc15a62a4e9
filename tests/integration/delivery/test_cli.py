"""`shelfcast promote`, `shelfcast rollback` and `shelfcast channels` against SeaweedFS and an SQLite MLflow."""

import pytest
from typer.testing import CliRunner

from shelfcast.cli import build_app
from shelfcast.delivery.channels import read_head, read_log
from shelfcast.delivery.publish import make_manifest, publish_model
from shelfcast.delivery.registry import MlflowRegistry
from shelfcast.contract.objects import ObjectStore

pytestmark = pytest.mark.integration


def test_promote_force_rollback_and_channels_commands(pipeline_env, tiny_tflite, tmp_path):
    from mlflow import MlflowClient

    settings = pipeline_env
    name = settings.registered_model
    objects = ObjectStore.from_settings(settings, "trainer")
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    client.create_registered_model(name)
    for version, key in (("1", "v1"), ("2", "v2")):
        client.create_model_version(name, source=(tmp_path / version).as_uri())
        publish_model(objects, tiny_tflite[key], make_manifest(tiny_tflite[key], name=name, version=version,
                                                               input_spec=tiny_tflite["spec"].to_dict(),
                                                               metrics={"mape_pct": 14.0}))
    registry = MlflowRegistry(client, name)
    app, runner = build_app(), CliRunner()

    def shelfcast(*args):
        return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)

    assert shelfcast("keys", "init").exit_code == 0  # the moves below are signed

    unmeasured = publish_model(objects, tiny_tflite["v1"], make_manifest(
        tiny_tflite["v1"], name=name, version="3", input_spec=tiny_tflite["spec"].to_dict()))
    refused = shelfcast("promote", "--version", unmeasured.version)
    assert refused.exit_code == 1 and "no finite mape_pct (got None). canary still serves None" in refused.output

    done = shelfcast("promote", "--version", "1", "--actor", "ana")
    assert done.exit_code == 0 and "canary moved from nothing to 1" in done.output, done.output
    assert registry.get_alias("canary") == "1"

    early = shelfcast("promote", "--version", "1", "--channel", "stable")
    assert early.exit_code == 1 and "error:" in early.output and "needs 20.0 h before stable" in early.output
    no_reason = shelfcast("promote", "--version", "2", "--channel", "stable", "--force")
    assert no_reason.exit_code == 1 and "needs a reason" in no_reason.output

    forced = shelfcast("promote", "--version", "2", "--channel", "stable", "--force", "--reason", "hotfix for store 9",
                       "--actor", "ana@hq")
    assert forced.exit_code == 0 and "stable moved from nothing to 2" in forced.output, forced.output
    entry = read_log(objects, "stable")[-1]
    assert (entry.actor, entry.action) == ("ana@hq", "force") and entry.reason.startswith("hotfix for store 9 [forced")
    assert registry.get_alias("champion") == "2"

    nowhere = shelfcast("rollback", "--channel", "stable")
    assert nowhere.exit_code == 1 and "has only ever served 2; pass --to VERSION" in nowhere.output
    back = shelfcast("rollback", "--channel", "stable", "--to", "1", "--reason", "store 9 worse", "--actor", "bo")
    assert back.exit_code == 0 and "stable moved from 2 to 1" in back.output
    assert read_head(objects, "stable").version == "1" and registry.get_alias("champion") == "1"

    shown = shelfcast("channels", "--history", "3")
    assert shown.exit_code == 0, shown.output
    assert "channel stable: pointer signed" in shown.output and "channel canary: pointer signed" in shown.output
    assert "channel stable: 1" in shown.output and "channel canary: 1" in shown.output
    assert "rollback" in shown.output and "store 9 worse" in shown.output and "ana@hq" in shown.output
