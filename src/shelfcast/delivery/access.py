"""Who may touch which prefix of the bucket, written once and rendered two ways: the SeaweedFS S3 identity
configuration used locally (`infra/seaweedfs/s3-identities.json`) and the AWS IAM policies used in production
(`infra/aws/iam/*.json`, loaded by the Terraform in `infra/aws/`).

    trainer   reads and writes the whole bucket (ingest, sales store, MLflow artifacts, models, channels, log);
              deletes only in landing/ (ingest moves each recorded file to archive/), nights/ (a night's inputs
              for its task-runner workers, removed when it ends), tables/ (files the sales
              table's compaction and vacuum retire) and sales/ (the Parquet parts of the store before the table,
              after `ingest migrate --delete-old`); archive/, models/ and the log are never deleted
    store     reads metadata/ (the signed delivery metadata), channels/ and models/ only: no listing, no writing
    uploader  writes landing/ only (the stores' daily sales export): it cannot read or delete anything

Nobody but the trainer reads landing/ or the sales store. SeaweedFS identities fold deletes into Write, so locally
a bucket policy (`local_bucket_policy`) denies every delete outside the prefixes where some role may delete, and
denies each role the deletes its writes would allow inside them where its IAM policy does not (the uploader's in
landing/); every identity can delete exactly what its IAM role can. `python -m shelfcast.delivery.access --write` regenerates
the committed files; a test fails when they drift from this module.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

LOCAL_BUCKET = "shelfcast"


@dataclass(frozen=True)
class Role:
    name: str
    read: tuple[str, ...] = ()  # key prefixes; "" is the whole bucket
    write: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()  # SeaweedFS folds deletes into Write; IAM names them
    list_bucket: bool = False
    admin: bool = False  # create the bucket and set versioning (local stack only; Terraform does it on AWS)
    description: str = ""


ROLES = (
    Role("trainer", read=("",), write=("",), delete=("landing/", "nights/", "sales/", "tables/"), list_bucket=True,
         admin=True,
         description="nightly pipeline: ingest, sales store, MLflow artifacts, publish and promote"),
    Role("store", read=("channels/", "models/", "metadata/"),
         description="store devices: pull the signed metadata, the channel pointer and models"),
    Role("uploader", write=("landing/",), description="the stores' sales export: deliver daily files"),
)
ROLE_BY_NAME = {role.name: role for role in ROLES}
# Keys of throwaway servers that benchmarks and tests start, and of the committed example configuration. The local
# stack never uses them: it generates every secret per installation (`shelfcast.config.local_secret`).
LOCAL_KEYS = {
    "trainer": ("shelfcast-trainer", "shelfcast-trainer-secret"),
    "store": ("shelfcast-store", "shelfcast-store-secret"),
    "uploader": ("shelfcast-uploader", "shelfcast-uploader-secret"),
}


def seaweedfs_actions(role: Role, bucket: str) -> list[str]:
    actions = []
    if role.admin:
        actions.append(f"Admin:{bucket}")
    for verb, prefixes in (("Read", role.read), ("Write", role.write)):
        actions += [f"{verb}:{bucket}" if prefix == "" else f"{verb}:{bucket}/{prefix}*" for prefix in prefixes]
    if role.list_bucket:
        actions.append(f"List:{bucket}")
    if role.admin:
        actions.append(f"Tagging:{bucket}")
    return actions


def seaweedfs_config(bucket: str = LOCAL_BUCKET, keys: dict[str, tuple[str, str]] | None = None) -> dict:
    """The `-s3.config` document for `weed`: one identity per role."""
    keys = keys or LOCAL_KEYS
    return {"identities": [
        {"name": role.name, "credentials": [{"accessKey": keys[role.name][0], "secretKey": keys[role.name][1]}],
         "actions": seaweedfs_actions(role, bucket)}
        for role in ROLES if role.name in keys
    ]}



def _covers(prefixes: tuple[str, ...], prefix: str) -> bool:
    return any(prefix.startswith(p) for p in prefixes)


def check_deletes_exact(roles: tuple[Role, ...] = ROLES) -> None:
    """A role deletes only where it writes: locally its deletes come with its writes. Raises `ValueError`."""
    for role in roles:
        for prefix in role.delete:
            if not _covers(role.write, prefix):
                raise ValueError(f"role {role.name} deletes in {prefix!r} but cannot write there")


def local_bucket_policy(bucket: str = LOCAL_BUCKET, roles: tuple[Role, ...] = ROLES) -> dict:
    """The SeaweedFS bucket policy: no delete outside the delete prefixes, and none by a role in a delete prefix
    (of another role) that its writes cover but its own deletes do not (see the module docstring)."""
    check_deletes_exact(roles)
    union = [p for role in roles for p in role.delete]
    actions = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    statements = [{"Sid": "DeleteOnlyWhereIamAllows", "Effect": "Deny", "Principal": "*", "Action": actions,
                   "NotResource": [f"arn:aws:s3:::{bucket}/{p}*" for p in union]}]
    for role in roles:
        denied = [p for p in union if _covers(role.write, p) and not _covers(role.delete, p)]
        if denied:
            statements.append({"Sid": f"No{role.name.capitalize()}Deletes", "Effect": "Deny",
                               "Principal": {"AWS": [f"arn:aws:iam::*:user/{role.name}"]}, "Action": actions,
                               "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in denied]})
    return {"Version": "2012-10-17", "Statement": statements}


def apply_local_policy(objects) -> None:
    """Put `local_bucket_policy` on the bucket of `objects` (a trainer `ObjectStore`, which holds Admin)."""
    objects.client.put_bucket_policy(Bucket=objects.bucket, Policy=json.dumps(local_bucket_policy(objects.bucket)))


def _objects(bucket_arn: str, prefixes: tuple[str, ...]) -> list[str]:
    return [f"{bucket_arn}/{prefix}*" for prefix in prefixes]


def iam_policy(role: Role, bucket_arn: str = "${bucket_arn}", kms_key_arn: str = "${kms_key_arn}") -> dict:
    """The role's identity policy. The placeholders are Terraform `templatefile` variables."""
    statements = []
    if role.list_bucket:
        statements.append({"Sid": "ListTheBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions",
                           "s3:GetBucketVersioning", "s3:GetBucketLocation"], "Resource": [bucket_arn]})
    if role.read:
        statements.append({"Sid": "ReadObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                           "Resource": _objects(bucket_arn, role.read)})
    if role.write:
        statements.append({"Sid": "WriteObjects", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                           "Resource": _objects(bucket_arn, role.write)})
    if role.delete:
        statements.append({"Sid": "DeleteObjects", "Effect": "Allow", "Action": ["s3:DeleteObject"],
                           "Resource": _objects(bucket_arn, role.delete)})
    kms = (["kms:Decrypt"] if role.read else []) + (["kms:GenerateDataKey"] if role.write else [])
    if kms:
        statements.append({"Sid": "UseTheBucketKey", "Effect": "Allow", "Action": kms, "Resource": [kms_key_arn]})
    return {"Version": "2012-10-17", "Statement": statements}


def render(root: Path) -> dict[Path, str]:
    """Every generated file under the repository root, path -> text."""
    files = {root / "infra/seaweedfs/s3-identities.json": seaweedfs_config()}
    files.update({root / f"infra/aws/iam/{role.name}-policy.json": iam_policy(role) for role in ROLES})
    return {path: json.dumps(doc, indent=2) + "\n" for path, doc in files.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--write", action="store_true", help="write the files (default: check they are current)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render(args.root).items():
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path))
    if stale:
        print("out of date (run with --write):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
