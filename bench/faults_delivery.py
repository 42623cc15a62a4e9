"""Fault cases of model delivery, for `bench/fault_matrix.py`: each case is an attack or an accident against the
real local stack (SeaweedFS started here with the committed identities, the local bucket policy and signed
delivery metadata) and what a store must do about it.

    .venv/bin/python bench/faults_delivery.py        # runs the cases alone and prints one line per case
"""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MB = 1024 * 1024
PEAK_RSS_LIMIT_MB = 100


def _models(workdir: Path):
    """Two real INT8 LSTM-16 files (the store sync benchmark's)."""
    spec = importlib.util.spec_from_file_location("store_sync_bench", ROOT / "bench" / "store_sync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_models(workdir)


def _case(name: str, expected: str, observed: str, passed: bool) -> dict:
    return {"name": name, "expected": expected, "observed": observed, "passed": bool(passed)}


def _http_status(method: str, url: str, body: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def run(workdir: Path) -> list[dict]:
    from botocore.exceptions import ClientError

    from shelfcast.contract.manifest import Pointer, model_key, pointer_key
    from shelfcast.contract.objects import ObjectStore, make_s3_client
    from shelfcast.delivery.access import LOCAL_BUCKET, LOCAL_KEYS, apply_local_policy
    from shelfcast.delivery.channels import move_pointer
    from shelfcast.delivery.publish import make_manifest, publish_model
    from shelfcast.delivery.signing import (KeyRing, Lifetimes, SignedRepository, metadata_key, move_targets,
                                            signature_status)
    from shelfcast.device.probe import sync_in_child
    from shelfcast.device.sync import StoreClient
    from shelfcast.stack.seaweedfs import access_identities, start_seaweedfs

    workdir = Path(workdir)
    spec, v1, v2 = _models(workdir)
    server = start_seaweedfs(workdir / "s3", access_identities(LOCAL_BUCKET, LOCAL_KEYS))
    cases = []
    try:
        url = server.urls["s3"]
        objects = {role: ObjectStore(make_s3_client(url, *LOCAL_KEYS[role], max_attempts=1), LOCAL_BUCKET, attempts=1)
                   for role in LOCAL_KEYS}
        trainer, store_key = objects["trainer"], objects["store"]
        trainer.ensure_bucket(wait_s=15)
        apply_local_policy(trainer)
        signer = SignedRepository(trainer, KeyRing(workdir / "keys", root_key=workdir / "offline" / "root.key"))
        signer.init()
        root_file = workdir / "root.json"
        root_file.write_bytes(signer.root_bytes())
        name, channel = "demand", "stable"

        def publish(version, data):
            return publish_model(trainer, data, make_manifest(data, name=name, version=version,
                                                              input_spec=spec.to_dict()))

        def store(folder):
            return StoreClient(store_key, channel, workdir / folder, trusted_root=root_file.read_bytes())

        move_pointer(trainer, channel, publish("1", v1), action="promote", actor="fault-matrix", signer=signer)
        main = store("store-main")
        first = main.sync()
        cases.append(_case("store installs a signed version", "updated, serving 1",
                           f"{first.status}, serving {first.serving}", first.serving == "1"))

        # 1. Side doors.
        filer = f"{server.urls['filer']}/buckets/{LOCAL_BUCKET}/channels/side-door/latest.json"
        codes = [_http_status("POST", filer, b"{}"), _http_status("PUT", filer, b"{}")]
        cases.append(_case("filer HTTP port write without credentials", "401 and nothing in the bucket",
                           f"{codes}, in bucket: {trainer.exists('channels/side-door/latest.json')}",
                           codes == [401, 401] and not trainer.exists("channels/side-door/latest.json")))
        for role, key in (("uploader", "landing/sales-x.csv"), ("trainer", "models/demand/1/model.tflite"),
                          ("trainer", "promotions/stable/log/0000000001.json")):
            if role == "uploader":
                objects["uploader"].put(key, b"date,store,item,sales\n")
            try:
                objects[role].delete(key)
                observed = f"deleted (still there: {trainer.exists(key)})"
            except ClientError as exc:
                observed = exc.response["Error"]["Code"]
            cases.append(_case(f"{role} deletes {key.split('/')[0]}/ (IAM denies)", "AccessDenied", observed,
                               observed == "AccessDenied"))

        # 2. A forgery that agrees with itself, written with the trainer's bucket key and no signing key.
        forged = publish("66", v2)
        move_pointer(trainer, channel, forged, action="promote", actor="attacker")
        kept, fresh = main.sync(), store("store-fresh").sync()
        cases.append(_case("pointer, manifest and model written with the trainer key", "stores keep serving 1; "
                           "a new store installs nothing", f"{kept.status}/{kept.serving}; {fresh.status}/"
                           f"{fresh.serving}", kept.serving == "1" and fresh.serving is None
                           and fresh.status == "refused"))
        status = signature_status(trainer, channel)
        cases.append(_case("shelfcast channels on the forged pointer", "ALERT: not the signed pointer",
                           status.line()[:120], not status.ok and "not the signed pointer" in status.problem))
        move_pointer(trainer, channel, publish("2", v2), action="promote", actor="fault-matrix", signer=signer)
        followed = main.sync()
        cases.append(_case("the next signed promotion", "stores follow it", f"{followed.status}/{followed.serving}",
                           followed.serving == "2"))

        # 3. Frozen channel: nobody re-signs the timestamp.
        stale = SignedRepository(trainer, signer.keys, Lifetimes(timestamp_s=1),
                                 clock=lambda: signer.clock() - timedelta(hours=2))
        stale.refresh_timestamp()
        frozen, status = main.sync(), signature_status(trainer, channel)
        cases.append(_case("timestamp not re-signed within its lifetime", "store status frozen, keeps serving; "
                           "channels ALERT FROZEN", f"{frozen.status}/{frozen.serving}; {status.line()[:80]}",
                           frozen.status == "frozen" and frozen.serving == "2" and "FROZEN" in (status.problem or "")))
        signer.refresh_timestamp()

        # 4. Mix of two releases: an older timestamp replayed beside newer metadata.
        old_timestamp = trainer.get(metadata_key("timestamp")).body
        move_pointer(trainer, channel, publish("3", v1), action="promote", actor="fault-matrix", signer=signer)
        assert main.sync().serving == "3"
        new_timestamp = trainer.get(metadata_key("timestamp")).body
        trainer.put(metadata_key("timestamp"), old_timestamp)
        mixed = main.sync()
        trainer.put(metadata_key("timestamp"), new_timestamp)
        cases.append(_case("metadata mixed from two releases (old timestamp)", "refused, keeps serving 3",
                           f"{mixed.status}/{mixed.serving}: {mixed.message[:80]}",
                           mixed.status == "refused" and mixed.serving == "3"))

        # 5. Rotations: stores keep serving and follow the next promotion.
        for role, version, data in (("timestamp", "4", v2), ("root", "5", v1)):
            signer.rotate((role,))
            unchanged = main.sync()
            move_pointer(trainer, channel, publish(version, data), action="promote", actor="fault-matrix",
                         signer=signer)
            after = main.sync()
            cases.append(_case(f"{role} key rotation", f"unchanged, then serving {version}",
                               f"{unchanged.status}, then {after.status}/{after.serving}",
                               unchanged.status == "unchanged" and after.serving == version))

        # 6. Unbounded reads, measured in a fresh process.
        pointer_body = trainer.get(pointer_key(channel)).body
        trainer.put(pointer_key(channel), pointer_body + b" " * (100 * MB))
        big_pointer = sync_in_child(url, LOCAL_BUCKET, LOCAL_KEYS["store"], channel, workdir / "store-big-1",
                                    root_file)
        trainer.put(pointer_key(channel), pointer_body)
        cases.append(_case("100 MB pointer", f"refused, peak RSS < {PEAK_RSS_LIMIT_MB} MB, < 64 KiB read",
                           f"{big_pointer['status']}, {big_pointer['peak_rss_mb']} MB, "
                           f"{big_pointer['bytes_received']:,} B read",
                           big_pointer["status"] == "refused" and big_pointer["peak_rss_mb"] < PEAK_RSS_LIMIT_MB
                           and big_pointer["bytes_received"] < 64 * 1024))
        claimed = b"\0" * 4680
        manifest = make_manifest(claimed, name=name, version="6", input_spec=spec.to_dict())
        trainer.put(model_key(name, "6"), b"\1" * (150 * MB))
        trainer.put(manifest.key, manifest.to_json())
        head = Pointer.from_json(pointer_body)
        pointer = Pointer(channel, name, "6", manifest.sha256, manifest.bytes, head.seq + 1, "big", head.moved_at,
                          "promote", "fault-matrix")
        trainer.put(pointer_key(channel), pointer.to_json())
        signer.sign_targets(move_targets(trainer, pointer_key(channel), pointer.to_json(), manifest))
        big_model = sync_in_child(url, LOCAL_BUCKET, LOCAL_KEYS["store"], channel, workdir / "store-big-2", root_file)
        cases.append(_case("150 MB model behind a manifest claiming 4,680 bytes",
                           f"refused, peak RSS < {PEAK_RSS_LIMIT_MB} MB, < 4,681 + 64 KiB read",
                           f"{big_model['status']}, {big_model['peak_rss_mb']} MB, "
                           f"{big_model['bytes_received']:,} B read",
                           big_model["status"] == "refused" and big_model["peak_rss_mb"] < PEAK_RSS_LIMIT_MB
                           and big_model["bytes_received"] < 4681 + 64 * 1024))
    finally:
        server.stop()
    return cases


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="shelfcast-faults-") as folder:
        results = run(Path(folder))
    for case in results:
        print(("PASS " if case["passed"] else "FAIL ") + json.dumps(case))
    raise SystemExit(0 if all(case["passed"] for case in results) else 1)
