"""Least privilege on paper: the committed access files match the roles, the IAM policies and the Terraform for
AWS grant what the roles say (no server; the same roles against SeaweedFS are in
tests/integration/delivery/test_access.py)."""

import fnmatch
import json
from pathlib import Path

import pytest

from shelfcast.delivery import access

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def test_committed_access_files_match_the_roles():
    assert access.main(["--root", str(ROOT)]) == 0, "run: python -m shelfcast.delivery.access --write"


def _allows(policy: dict, action: str, resource: str) -> bool:
    """IAM evaluation for identity policies made of Allow statements (all ours are): any match allows."""
    return any(
        statement["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action, pattern) for pattern in statement["Action"])
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement["Resource"])
        for statement in policy["Statement"]
    )


def _policy(role: str) -> dict:
    text = (ROOT / "infra" / "aws" / "iam" / f"{role}-policy.json").read_text()
    return json.loads(text.replace("${bucket_arn}", "arn:aws:s3:::shelfcast-prod")
                      .replace("${kms_key_arn}", "arn:aws:kms:eu-west-1:1:key/k"))


@pytest.mark.parametrize("role, action, key, allowed", [
    ("store", "s3:GetObject", "channels/stable/latest.json", True),
    ("store", "s3:GetObject", "models/demand/7/model.tflite", True),
    ("store", "s3:GetObject", "landing/sales.csv", False),
    ("store", "s3:GetObject", "sales/date=2026-01-01/part.parquet", False),
    ("store", "s3:GetObject", "promotions/stable/log/0000000001.json", False),
    ("store", "s3:PutObject", "channels/stable/latest.json", False),
    ("store", "s3:PutObject", "models/demand/7/model.tflite", False),
    ("store", "s3:DeleteObject", "models/demand/7/model.tflite", False),
    ("store", "s3:ListBucket", "", False),
    ("uploader", "s3:PutObject", "landing/sales.csv", True),
    ("uploader", "s3:GetObject", "landing/sales.csv", False),
    ("uploader", "s3:PutObject", "channels/stable/latest.json", False),
    ("uploader", "s3:DeleteObject", "landing/sales.csv", False),
    ("uploader", "s3:PutObject", "archive/sales.csv/000001~0~e.csv", False),
    ("trainer", "s3:DeleteObject", "landing/sales.csv", True),  # ingest moves each recorded file to archive/
    ("trainer", "s3:PutObject", "archive/sales.csv/000001~0~e.csv", True),
    ("trainer", "s3:DeleteObject", "archive/sales.csv/000001~0~e.csv", False),
    ("trainer", "s3:GetObject", "landing/sales.csv", True),
    ("trainer", "s3:PutObject", "models/demand/7/model.tflite", True),
    ("trainer", "s3:DeleteObject", "sales/date=2026-01-01/part.parquet", True),
    ("trainer", "s3:DeleteObject", "tables/sales/part-00001.parquet", True),  # vacuum of the sales table
    ("trainer", "s3:DeleteObject", "ledger/files/a.csv/000001~0~e.json", False),
    ("store", "s3:GetObject", "tables/sales/part-00001.parquet", False),
    ("trainer", "s3:DeleteObject", "models/demand/7/model.tflite", False),
    ("store", "s3:GetObject", "metadata/timestamp.json", True),
    ("store", "s3:PutObject", "metadata/timestamp.json", False),
])
def test_iam_policies_grant_the_same_least_privilege(role, action, key, allowed):
    resource = "arn:aws:s3:::shelfcast-prod" + (f"/{key}" if key else "")
    assert _allows(_policy(role), action, resource) is allowed


def test_store_can_decrypt_but_not_encrypt_with_the_bucket_key():
    kms = "arn:aws:kms:eu-west-1:1:key/k"
    assert _allows(_policy("store"), "kms:Decrypt", kms) and not _allows(_policy("store"), "kms:GenerateDataKey", kms)
    assert _allows(_policy("uploader"), "kms:GenerateDataKey", kms) and not _allows(_policy("uploader"), "kms:Decrypt", kms)


def test_terraform_builds_the_bucket_and_roles_from_these_policies():
    main = (ROOT / "infra" / "aws" / "main.tf").read_text()
    for needle in ('status = "Enabled"', 'sse_algorithm     = "aws:kms"', "block_public_acls       = true",
                   "restrict_public_buckets = true", 'templatefile("${path.module}/iam/${each.key}-policy.json"',
                   '"s3:if-none-match"', '"s3:if-match"', '"aws:SecureTransport"'):
        assert needle in main, needle
    roles = main.split('roles  = toset(["', 1)[1].split('"])', 1)[0].split('", "')
    assert sorted(roles) == sorted(r.name for r in access.ROLES)
