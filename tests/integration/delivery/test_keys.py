"""`shelfcast keys init|show|refresh|rotate` and the signed state in `shelfcast channels`, against SeaweedFS; a
store provisioned from `keys show --root-out` follows promotions made with `shelfcast promote`, and a rotation."""

import os
import stat

import pytest
from typer.testing import CliRunner

from shelfcast.cli import build_app
from shelfcast.contract.objects import ObjectStore
from shelfcast.delivery.publish import make_manifest, publish_model
from shelfcast.device.sync import StoreClient
from tests.conftest import TRAINER

pytestmark = pytest.mark.integration


def test_keys_commands_sign_what_stores_follow(pipeline_env, seaweedfs, tiny_tflite, tmp_path, monkeypatch):
    from shelfcast.contract.objects import make_s3_client

    settings = pipeline_env
    monkeypatch.setenv("SHELFCAST_ROOT_KEY_FILE", str(tmp_path / "offline" / "root.key"))
    objects = ObjectStore.from_settings(settings, "trainer")
    name = settings.registered_model
    for version, key in (("1", "v1"), ("2", "v2")):
        publish_model(objects, tiny_tflite[key], make_manifest(tiny_tflite[key], name=name, version=version,
                                                               input_spec=tiny_tflite["spec"].to_dict(),
                                                               metrics={"mape_pct": 14.0}))
    app, runner = build_app(), CliRunner()

    def shelfcast(*args):
        return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)

    unsigned = shelfcast("channels", "--channel", "canary")
    assert unsigned.exit_code == 1 and "holds no signed metadata" in unsigned.output

    init = shelfcast("keys", "init")
    assert init.exit_code == 0 and "MOVE THE ROOT KEY OFFLINE NOW" in init.output, init.output
    keys_dir = settings.signing_keys_dir
    for role in ("targets", "snapshot", "timestamp"):
        assert stat.S_IMODE(os.stat(keys_dir / f"{role}.key").st_mode) == 0o600
    assert not (keys_dir / "root.key").exists() and (tmp_path / "offline" / "root.key").exists()
    assert shelfcast("keys", "init").exit_code == 1  # never twice

    show = shelfcast("keys", "show", "--root-out", str(tmp_path / "root.json"))
    assert show.exit_code == 0 and "timestamp version    1" in show.output, show.output
    assert "private key not on this machine" not in show.output.split("root ")[0]

    # The test's own bucket: the session's store identity reads only the shared test bucket, so this store reads
    # with the trainer's key (it only reads).
    trainer_bucket = ObjectStore(make_s3_client(seaweedfs.urls["s3"], *TRAINER), settings.bucket)
    store = StoreClient(trainer_bucket, "canary", tmp_path / "store", trusted_root=(tmp_path / "root.json").read_bytes())
    assert shelfcast("promote", "--version", "1", "--actor", "ana", "--no-mlflow").exit_code == 0
    assert store.sync().serving == "1"
    fresh = shelfcast("channels", "--channel", "canary")
    assert fresh.exit_code == 0 and "pointer signed; signed metadata fresh until" in fresh.output, fresh.output

    refreshed = shelfcast("keys", "refresh")
    assert refreshed.exit_code == 0 and "timestamp version" in refreshed.output
    rotated = shelfcast("keys", "rotate", "--role", "timestamp", "--role", "snapshot")
    assert rotated.exit_code == 0 and "root version 2" in rotated.output, rotated.output
    assert store.sync().status == "unchanged"
    assert shelfcast("promote", "--version", "2", "--actor", "ana", "--no-mlflow").exit_code == 0
    assert store.sync().serving == "2"

    monkeypatch.setenv("SHELFCAST_ROOT_KEY_FILE", str(tmp_path / "elsewhere.key"))
    missing = shelfcast("keys", "rotate", "--role", "timestamp")
    assert missing.exit_code == 1 and "elsewhere.key cannot be read" in missing.output
