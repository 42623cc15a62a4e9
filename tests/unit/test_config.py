"""Secrets of the local identities: generated once per installation into the home folder (0600), the same for
every process that asks at the same time, and each one settable (`SHELFCAST_<ROLE>_SECRET_KEY`)."""

import json
import multiprocessing
import os
import stat

import pytest

from shelfcast.config import Settings, local_secret

pytestmark = pytest.mark.unit


def _secret(args):
    home, role = args
    return local_secret(home, role)


def test_secrets_are_generated_once_per_installation_readable_by_the_owner_only(tmp_path):
    settings = Settings(_env_file=None, home=tmp_path / "home")
    trainer, store, uploader = (settings.credentials(role) for role in ("trainer", "store", "uploader"))
    assert trainer[0] == "shelfcast-trainer" and uploader[0] == "shelfcast-uploader"
    assert len({trainer[1], store[1], uploader[1]}) == 3 and all(len(s[1]) >= 40 for s in (trainer, store, uploader))
    path = tmp_path / "home" / "secrets.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Settings(_env_file=None, home=tmp_path / "home").credentials("store") == store  # kept
    assert Settings(_env_file=None, home=tmp_path / "other").credentials("store") != store  # per installation
    assert "shelfcast-store-secret" not in path.read_text()


def test_concurrent_first_uses_agree(tmp_path):
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        secrets = pool.map(_secret, [(tmp_path / "home", "trainer")] * 12)
    assert len(set(secrets)) == 1
    assert json.loads((tmp_path / "home" / "secrets.json").read_text())["trainer"] == secrets[0]
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["secrets.json"]  # no temporary files left


def test_every_identity_is_settable(tmp_path, monkeypatch):
    for role in ("trainer", "store", "uploader"):
        monkeypatch.setenv(f"SHELFCAST_{role.upper()}_ACCESS_KEY", f"{role}-key")
        monkeypatch.setenv(f"SHELFCAST_{role.upper()}_SECRET_KEY", f"{role}-secret")
    settings = Settings(_env_file=None, home=tmp_path / "home")
    assert [settings.credentials(r) for r in ("trainer", "store", "uploader")] == [
        ("trainer-key", "trainer-secret"), ("store-key", "store-secret"), ("uploader-key", "uploader-secret")]
    assert not (tmp_path / "home" / "secrets.json").exists()
    with pytest.raises(ValueError, match="choose trainer, store or uploader"):
        settings.credentials("admin")


def test_the_store_command_reads_the_installation_secret_or_says_what_to_set(tmp_path):
    from shelfcast.device.cli import StoreSettings

    with pytest.raises(ValueError, match="set SHELFCAST_STORE_SECRET_KEY"):
        StoreSettings.from_env({"SHELFCAST_HOME": str(tmp_path / "home")})
    secret = local_secret(tmp_path / "home", "store")
    assert StoreSettings.from_env({"SHELFCAST_HOME": str(tmp_path / "home")}).secret_key == secret
    assert StoreSettings.from_env({"SHELFCAST_HOME": str(tmp_path / "home"),
                                   "SHELFCAST_STORE_SECRET_KEY": "given"}).secret_key == "given"
