output "bucket" {
  value = aws_s3_bucket.shelfcast.bucket
}

output "role_arns" {
  description = "Role per identity: trainer (nightly pipeline), store (devices, via the IoT credential provider), uploader (sales export)"
  value       = { for name, role in aws_iam_role.shelfcast : name => role.arn }
}

output "kms_key_arn" {
  value = aws_kms_key.shelfcast.arn
}
