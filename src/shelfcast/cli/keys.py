"""`shelfcast keys init|rotate|show|refresh`: the keys that sign delivery metadata (`shelfcast.delivery.signing`).

The root key signs only the list of keys; it is needed by `init` and `rotate` and nowhere else, so after `init`
move `<keys dir>/root.key` off this machine (a USB key in a safe, or a KMS key in production: infra/aws/README.md)
and pass it back with `--root-key` to rotate. The targets, snapshot and timestamp keys stay online beside the
trainer (`SHELFCAST_KEYS_DIR`, default `<home>/keys`, files 0600). `refresh` re-signs the timestamp (the nightly
run does it too); without it every store calls the bucket frozen after `SHELFCAST_TIMESTAMP_LIFETIME_S`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from shelfcast import wiring
from shelfcast.cli._console import fail as _fail
from shelfcast.config import load_settings

keys_app = typer.Typer(help="Keys that sign what stores download (init, rotate, show, refresh).", no_args_is_help=True)


def _repository(root_key: Optional[Path]):
    from shelfcast.delivery.signing import repository_from_settings

    settings = load_settings()
    if root_key is not None:
        settings = settings.model_copy(update={"root_key_file": root_key})
    return settings, repository_from_settings(settings, wiring.bucket(settings))


@keys_app.command("init")
def init(root_key: Optional[Path] = typer.Option(None, "--root-key", help="where to write the root key "
                                                "(default <keys dir>/root.key); move it offline afterwards")) -> None:
    """Generate the four keys and sign version 1 of the bucket's delivery metadata."""
    from shelfcast.contract.errors import ShelfcastError

    settings, repository = _repository(root_key)
    try:
        repository.init()
    except ShelfcastError as exc:
        _fail(str(exc))
    typer.echo(f"signed s3://{settings.bucket}/metadata/ (root version 1); online keys in {settings.signing_keys_dir}")
    typer.echo(f"MOVE THE ROOT KEY OFFLINE NOW: {repository.keys.path('root')} (pass it back with --root-key to rotate)")
    typer.echo("give every store the trusted root: `shelfcast keys show --root-out root.json`, then "
               "`shelfcast store sync --trusted-root root.json ...`")


@keys_app.command("rotate")
def rotate(role: list[str] = typer.Option(..., "--role", help="root, targets, snapshot or timestamp (repeatable)"),
           root_key: Optional[Path] = typer.Option(None, "--root-key", help="the current offline root key")) -> None:
    """Replace keys: a new root version, signed by the current root key (and the new one when root rotates), that
    stores follow on their next poll; the online metadata is re-signed with the new keys at once."""
    from shelfcast.contract.errors import ShelfcastError

    _, repository = _repository(root_key)
    try:
        version = repository.rotate(tuple(role))
    except ShelfcastError as exc:
        _fail(str(exc))
    typer.echo(f"root version {version} names new {', '.join(role)} key(s); stores follow it at their next poll")
    if "root" in role:
        typer.echo(f"the new root key is {repository.keys.path('root')}: move it offline (the old one is kept "
                   "beside it with a .v suffix until you destroy it)")


@keys_app.command("show")
def show(root_out: Optional[Path] = typer.Option(None, "--root-out", help="write the newest root metadata here "
                                                 "(what a store is provisioned with)")) -> None:
    """Each role's version, expiry and key ids, from the bucket."""
    from shelfcast.delivery.signing import SigningError

    settings, repository = _repository(None)
    if not repository.initialized():
        _fail(f"s3://{settings.bucket}/metadata/ holds no signed metadata; run `shelfcast keys init`")
    root = repository.root()
    try:
        expiries = repository.expiries()
    except SigningError as exc:
        _fail(str(exc))
    for name, (version, expires) in expiries.items():
        keyids = ", ".join(k[:12] for k in root.signed.roles[name].keyids)
        local = repository.keys.path(name)
        where = f"private key {local}" if local.exists() else "private key not on this machine"
        typer.echo(f"{name:9} version {version:>4}  expires {expires:%Y-%m-%dT%H:%M:%SZ}  keys {keyids}  ({where})")
    if root_out:
        root_out.write_bytes(repository.root_bytes())
        typer.echo(f"root version {root.signed.version} -> {root_out}")


@keys_app.command("refresh")
def refresh() -> None:
    """Re-sign the timestamp (and snapshot and targets when half their lifetime is gone): the nightly step."""
    from shelfcast.contract.errors import ShelfcastError

    settings, repository = _repository(None)
    try:
        signer = wiring.signer(settings, repository.objects)
        if signer is None:
            _fail(f"s3://{settings.bucket}/metadata/ holds no signed metadata; run `shelfcast keys init`")
        expiries = signer.refresh()
    except ShelfcastError as exc:
        _fail(str(exc))
    version, expires = expiries["timestamp"]
    typer.echo(f"timestamp version {version} signed, valid until {expires:%Y-%m-%dT%H:%M:%SZ}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
