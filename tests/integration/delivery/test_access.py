"""Least privilege, shown against a SeaweedFS server started with the committed identity configuration
(`infra/seaweedfs/s3-identities.json`), and checked on the committed IAM policies and Terraform for AWS."""

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from tests.unit.delivery.test_access import _allows, _policy

from shelfcast.delivery import access
from shelfcast.delivery.channels import move_pointer
from shelfcast.device.sync import StoreClient
from shelfcast.delivery.publish import make_manifest, publish_model
from shelfcast.delivery.signing import KeyRing, SignedRepository
from shelfcast.stack.seaweedfs import Identity, start_seaweedfs
from shelfcast.contract.objects import ObjectStore, make_s3_client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "infra" / "seaweedfs" / "s3-identities.json"
BUCKET = access.LOCAL_BUCKET


@pytest.fixture(scope="module")
def local_s3(tmp_path_factory):
    """A private SeaweedFS running exactly the committed identity file; yields {role: ObjectStore}."""
    config = json.loads(CONFIG.read_text())
    identities = [Identity(i["name"], i["credentials"][0]["accessKey"], i["credentials"][0]["secretKey"],
                           tuple(i["actions"])) for i in config["identities"]]
    server = start_seaweedfs(tmp_path_factory.mktemp("least-privilege"), identities)
    try:
        stores = {i.name: ObjectStore(make_s3_client(server.urls["s3"], i.access_key, i.secret_key, max_attempts=1),
                                      BUCKET, attempts=1) for i in identities}
        stores["trainer"].ensure_bucket(wait_s=15)
        access.apply_local_policy(stores["trainer"])  # as `shelfcast stack up` does
        stores["url"] = server.urls["s3"]
        stores["urls"] = server.urls
        yield stores
    finally:
        server.stop()


def _denied(call) -> str:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def test_store_key_reads_channels_and_models_and_nothing_else(local_s3, tiny_tflite, tmp_path):
    trainer, store = local_s3["trainer"], local_s3["store"]
    data = tiny_tflite["v1"]
    manifest = publish_model(trainer, data, make_manifest(data, name="demand", version="1",
                                                          input_spec=tiny_tflite["spec"].to_dict()))
    signer = SignedRepository(trainer, KeyRing(tmp_path / "keys"))
    signer.init()
    move_pointer(trainer, "stable", manifest, action="promote", actor="test", signer=signer)
    trainer.put("landing/sales-2026-01-01.csv", b"date,store,item,sales\n")
    trainer.put("sales/date=2026-01-01/part-0.parquet", b"PAR1")

    # What a store needs works with its key alone: a full sync.
    root = signer.root_bytes()
    assert StoreClient(store, "stable", tmp_path / "store", trusted_root=root).sync().serving == "1"

    assert _denied(lambda: store.get("landing/sales-2026-01-01.csv")) == "AccessDenied"
    assert _denied(lambda: store.get("sales/date=2026-01-01/part-0.parquet")) == "AccessDenied"
    assert _denied(lambda: store.get("promotions/stable/log/0000000001.json")) == "AccessDenied"
    assert _denied(lambda: store.put("channels/stable/latest.json", b"{}")) == "AccessDenied"
    assert _denied(lambda: store.put("models/demand/666/model.tflite", b"evil")) == "AccessDenied"
    assert _denied(lambda: store.put("landing/x.csv", b"evil")) == "AccessDenied"
    assert _denied(lambda: store.put("metadata/timestamp.json", b"evil")) == "AccessDenied"
    assert _denied(lambda: store.delete("models/demand/1/model.tflite")) == "AccessDenied"
    assert _denied(lambda: list(store.list("models/"))) == "AccessDenied"
    assert trainer.get("models/demand/1/model.tflite").body == data  # nothing was damaged


def test_uploader_delivers_to_landing_but_reads_nothing(local_s3):
    uploader, trainer = local_s3["uploader"], local_s3["trainer"]
    uploader.put("landing/sales-2026-01-02.csv", b"date,store,item,sales\n")
    assert trainer.get("landing/sales-2026-01-02.csv").body == b"date,store,item,sales\n"
    assert _denied(lambda: uploader.get("landing/sales-2026-01-02.csv")) == "AccessDenied"
    assert _denied(lambda: uploader.put("channels/stable/latest.json", b"{}")) == "AccessDenied"
    assert _denied(lambda: uploader.get("channels/stable/latest.json")) == "AccessDenied"


def test_unknown_keys_and_anonymous_requests_are_refused(local_s3):
    import urllib.error
    import urllib.request

    stranger = ObjectStore(make_s3_client(local_s3["url"], "nobody", "nothing", max_attempts=1), BUCKET, attempts=1)
    assert _denied(lambda: stranger.get("channels/stable/latest.json")) == "InvalidAccessKeyId"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{local_s3['url']}/{BUCKET}/channels/stable/latest.json", timeout=5)
    assert anonymous.value.code == 403


PREFIXES = ("landing/", "archive/", "sales/", "models/", "channels/", "promotions/", "metadata/", "mlflow/")


@pytest.mark.parametrize("role", [r.name for r in access.ROLES])
def test_local_identities_allow_and_deny_exactly_what_iam_does(local_s3, role):
    """Both ways, for reads, writes and deletes under every prefix of the bucket: what the role's IAM policy
    allows works on the local server, what it denies is AccessDenied. Batch deletes (DeleteObjects) are checked
    for the roles without bucket-wide writes; for the trainer see the next test."""
    trainer, identity = local_s3["trainer"], local_s3[role]
    mismatches = []
    for prefix in PREFIXES:
        key = f"{prefix}probe-{role}.bin"
        for action, how, call in (("s3:PutObject", "PutObject", lambda: identity.put(key, b"probe")),
                                  ("s3:GetObject", "GetObject", lambda: identity.get(key)),
                                  ("s3:DeleteObject", "DeleteObject", lambda: identity.delete(key)),
                                  ("s3:DeleteObject", "DeleteObjects", lambda: _batch_delete(identity, key))):
            if how == "DeleteObjects" and role == "trainer":
                continue
            trainer.put(key, b"probe")
            try:
                call()
                local = True
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "AccessDenied", exc
                local = False
            if action == "s3:DeleteObject" and local:
                local = not trainer.exists(key)
            iam = _allows(_policy(role), action, f"arn:aws:s3:::shelfcast-prod/{key}")
            if local is not iam:
                mismatches.append(f"{role} {how} {key}: local {'allows' if local else 'denies'}, IAM "
                                  f"{'allows' if iam else 'denies'}")
    assert not mismatches, mismatches


def test_a_batch_delete_by_the_trainer_loses_nothing(local_s3):
    """SeaweedFS 4.48 does not apply the bucket policy to DeleteObjects (measured here: the trainer's batch delete
    in models/ succeeds, where IAM denies it). Versioning is on, so the delete only adds a delete marker and the
    version is still there to restore; a store meanwhile finds the model missing and keeps serving its own."""
    trainer = local_s3["trainer"]
    key = "models/demand/batch/model.tflite"
    trainer.put(key, b"model")
    _batch_delete(trainer, key)
    assert not trainer.exists(key)
    versions = trainer.client.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    restored = trainer.client.get_object(Bucket=BUCKET, Key=key, VersionId=versions[0]["VersionId"])
    assert restored["Body"].read() == b"model"


def _batch_delete(objects, key):
    """DeleteObjects reports refusals per key instead of failing the request."""
    response = objects.client.delete_objects(Bucket=objects.bucket, Delete={"Objects": [{"Key": key}]})
    errors = response.get("Errors", [])
    if errors:
        raise ClientError({"Error": {"Code": errors[0]["Code"], "Message": errors[0]["Message"]}}, "DeleteObjects")


def test_the_filer_and_volume_ports_refuse_writes_without_credentials(local_s3):
    """SeaweedFS's filer HTTP port wrote straight into the bucket; now it and the volume port demand a token."""
    import urllib.error
    import urllib.request

    urls = local_s3["urls"]
    for method, url in (("POST", f"{urls['filer']}/buckets/{BUCKET}/channels/side-door/latest.json"),
                        ("PUT", f"{urls['filer']}/buckets/{BUCKET}/channels/side-door/latest.json"),
                        ("GET", f"{urls['filer']}/buckets/{BUCKET}/")):
        request = urllib.request.Request(url, data=None if method == "GET" else b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401, (method, url)
    assert not local_s3["trainer"].exists("channels/side-door/latest.json")
    with urllib.request.urlopen(f"{urls['master']}/dir/assign", timeout=5) as assigned:
        fid = json.loads(assigned.read())["fid"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{urls['volume']}/{fid}", data=b"blob", method="PUT"), timeout=5)
    assert refused.value.code == 401
