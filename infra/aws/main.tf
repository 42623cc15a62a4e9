# The bucket stores pull models from, and the three roles that touch it.
# Identity policies live in iam/*.json, generated from shelfcast.edge.access (the same roles the local SeaweedFS
# runs with: infra/seaweedfs/s3-identities.json). The bucket policy below adds what no identity may bypass:
# TLS only, versions and promotion log written once, channel pointers moved only by compare-and-swap, and no
# deletion of published models or log entries.

locals {
  roles  = toset(["trainer", "store", "uploader"])
  bucket = aws_s3_bucket.shelfcast
}

resource "aws_kms_key" "shelfcast" {
  description             = "Encrypts the shelfcast bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_alias" "shelfcast" {
  name          = "alias/${var.bucket_name}"
  target_key_id = aws_kms_key.shelfcast.key_id
}

resource "aws_s3_bucket" "shelfcast" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "shelfcast" {
  bucket = local.bucket.id
  rule {
    object_ownership = "BucketOwnerEnforced" # no ACLs: access is IAM and the bucket policy only
  }
}

resource "aws_s3_bucket_public_access_block" "shelfcast" {
  bucket                  = local.bucket.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "shelfcast" {
  bucket = local.bucket.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "shelfcast" {
  bucket = local.bucket.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.shelfcast.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "shelfcast" {
  bucket     = local.bucket.id
  depends_on = [aws_s3_bucket_versioning.shelfcast]

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "landing-old-versions"
    status = "Enabled"
    filter {
      prefix = "landing/"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.landing_noncurrent_days
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = [local.bucket.arn, "${local.bucket.arn}/*"]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid     = "VersionsAndLogWrittenOnce"
    effect  = "Deny"
    actions = ["s3:PutObject"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = ["${local.bucket.arn}/models/*", "${local.bucket.arn}/promotions/*"]
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
  }

  statement {
    sid     = "PointersMovedByCompareAndSwap"
    effect  = "Deny"
    actions = ["s3:PutObject"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = ["${local.bucket.arn}/channels/*", "${local.bucket.arn}/metadata/*"]
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
    condition {
      test     = "Null"
      variable = "s3:if-match"
      values   = ["true"]
    }
  }

  statement {
    sid     = "PublishedModelsAndLogAreKept"
    effect  = "Deny"
    actions = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = ["${local.bucket.arn}/models/*", "${local.bucket.arn}/promotions/*", "${local.bucket.arn}/channels/*",
    "${local.bucket.arn}/metadata/*"]
  }
}

resource "aws_s3_bucket_policy" "shelfcast" {
  bucket     = local.bucket.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.shelfcast]
}

data "aws_iam_policy_document" "assume" {
  for_each = local.roles

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = each.key == "store" ? "Service" : "AWS"
      identifiers = each.key == "store" ? [var.store_trusted_service] : (each.key == "trainer" ? var.trainer_principal_arns : var.uploader_principal_arns)
    }
  }
}

resource "aws_iam_role" "shelfcast" {
  for_each             = local.roles
  name                 = "${var.bucket_name}-${each.key}"
  description          = "shelfcast ${each.key}: see infra/aws/iam/${each.key}-policy.json"
  assume_role_policy   = data.aws_iam_policy_document.assume[each.key].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "shelfcast" {
  for_each = local.roles
  name     = "${each.key}-bucket-access"
  role     = aws_iam_role.shelfcast[each.key].id
  policy = templatefile("${path.module}/iam/${each.key}-policy.json", {
    bucket_arn  = local.bucket.arn
    kms_key_arn = aws_kms_key.shelfcast.arn
  })
}
