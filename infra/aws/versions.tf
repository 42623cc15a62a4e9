terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Conditional-write condition keys (s3:if-none-match, s3:if-match) need a recent provider only for
      # validation; the API has accepted them since 2024.
      version = ">= 5.70"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ project = "shelfcast" }, var.tags)
  }
}
